-- pifleet 0011: login for the dashboard and the REST API — people, their sessions, API tokens for scripts.
-- Nothing secret is stored in the clear: passwords as argon2id hashes, session ids and API tokens as SHA-256
-- digests (they are 256-bit random values, so a fast hash is enough). docs/security.md, "Login and sessions".

create table users (
    id              bigint generated always as identity primary key,
    name            text not null unique,
    role            text not null check (role in ('admin', 'viewer')),
    password_hash   text not null,                 -- argon2id, PHC string (parameters inside)
    created_at      timestamptz not null default now()
);

create table sessions (
    id_hash         bytea primary key,             -- SHA-256 of the cookie's session id
    user_id         bigint not null references users (id) on delete cascade,
    created_at      timestamptz not null default now(),
    last_seen_at    timestamptz not null default now(),   -- idle timeout counts from here
    expires_at      timestamptz not null,          -- absolute lifetime
    address         text                           -- the peer that logged in (for the log, not for checks)
);
create index sessions_user on sessions (user_id);

create table api_tokens (
    id              bigint generated always as identity primary key,
    name            text not null,
    scope           text not null check (scope in ('read', 'write')),
    token_hash      bytea not null unique,         -- SHA-256 of pft_…; the token itself is shown once
    created_by      bigint references users (id) on delete cascade,  -- a person's tokens leave with them
    created_at      timestamptz not null default now(),
    last_used_at    timestamptz
);

-- Only the role the master connects as (the tables' owner) may read these; no grant to anyone else.
revoke all on users, sessions, api_tokens from public;
