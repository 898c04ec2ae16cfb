-- pifleet 0010: roles as data (modules and their configuration, job templates), per-board sync state,
-- module rollouts.

alter table roles add column modules jsonb not null default '{}';   -- {capability: configuration}
alter table roles add column jobs jsonb not null default '[]';      -- job templates, targeting the role
alter table roles add column defined boolean not null default false; -- false: only named by a board
alter table roles add column updated_at timestamptz not null default now();

-- a board's own configuration on top of its role's: {capability: {key: value}} (pins differ per board)
alter table devices add column role_config jsonb not null default '{}';

-- the module file a capability runs from, as the board reports it: NAME_HASHPREFIX
alter table device_capabilities add column module text;

-- jobs a role defines are the role's: replaced when the role is applied again, deleted with it
alter table jobs add column role text references roles (name) on delete cascade on update cascade;

create table device_sync (
    device_id   text primary key references devices (id) on delete cascade,
    state       text not null check (state in ('pending', 'updating', 'in_sync', 'failed')),
    reason      text not null default '',
    applied     jsonb,                             -- the role as last applied: {role, caps, modules}
    updated_at  timestamptz not null default now()
);

create table rollouts (
    id          bigserial primary key,
    module_id   bigint not null references modules (id) on delete cascade,
    state       text not null check (state in ('running', 'succeeded', 'halted')),
    devices     text[] not null,                   -- device ids in rollout order: the first one goes alone
    done        text[] not null default '{}',
    skipped     text[] not null default '{}',      -- offline: they sync when they register
    failed      text,                              -- the device that halted it
    reason      text not null default '',
    created_at  timestamptz not null default now(),
    finished_at timestamptz
);
