-- pifleet 0018: several sites on one database (docs/operations.md, "Scaling out"). Each master is a site
-- (`pifleet serve --site NAME`; without it the site is `default`). A board belongs to the site it was paired
-- through, which holds its OSCORE context; a run belongs to the site of its device and only that site's master
-- claims it. A run without a device (a role's or group's run, before it fans out) belongs to no site: the first
-- master to claim it fans it out.

-- the site of this session: each master's connections say it (the `pifleet.site` setting, sent at connect)
create function pifleet_site() returns text language sql stable as
$$ select coalesce(nullif(current_setting('pifleet.site', true), ''), 'default') $$;

-- the masters, each heartbeating every few seconds; a site not heard of for a while (or stopped) is unreachable
create table sites (
    name          text primary key,
    http_url      text,                                 -- where its API and dashboard are
    coap          text,                                 -- where its boards reach it
    host          text,                                 -- the machine it runs on, its process id
    pid           integer,
    started_at    timestamptz not null default now(),
    heartbeat_at  timestamptz not null default now(),
    stopped_at    timestamptz                           -- an orderly stop; null while it runs
);

-- down: its master stopped, or has not heartbeated for 10 s (sites/ heartbeats every 2 s). A site without a row
-- has never had a master since sites exist: not down (its boards are offline or online by their own lifetime).
-- A master never finds its own site down (it is asking: it is up, even before its first heartbeat after a restart
-- or when a loaded machine delays one)
create function pifleet_site_down(site_name text) returns boolean language sql stable as
$$ select site_name <> pifleet_site() and exists (select 1 from sites where name = site_name
                  and (stopped_at is not null or heartbeat_at < now() - interval '10 seconds')) $$;

-- boards known before sites existed belong to the site that had them all: `default`
alter table devices add column site text not null default 'default';
alter table devices alter column site set default pifleet_site();
create index devices_by_site on devices (site);

-- pairing (flashing, adoption) writes the board's secret: the site that wrote it owns the board from now on
create function pifleet_board_paired() returns trigger language plpgsql as $$
begin
    update devices set site = pifleet_site() where id = new.device_id and site is distinct from pifleet_site();
    return new;
end $$;
create trigger device_secrets_site after insert or update of secret on device_secrets
    for each row execute function pifleet_board_paired();

alter table job_executions add column site text;
update job_executions e set site = d.site from devices d where d.id = e.device_id;
create index job_executions_by_site on job_executions (site, state);

-- a run belongs to its device's site, fixed when it is written
create function pifleet_execution_site() returns trigger language plpgsql as $$
begin
    if new.device_id is not null then
        select site into new.site from devices where id = new.device_id;
    end if;
    return new;
end $$;
create trigger job_executions_site before insert on job_executions
    for each row execute function pifleet_execution_site();

-- a board paired again through another site takes its planned runs along
create function pifleet_board_moved() returns trigger language plpgsql as $$
begin
    update job_executions set site = new.site where device_id = new.id and state = 'scheduled';
    return new;
end $$;
create trigger devices_site_moved after update of site on devices
    for each row when (old.site is distinct from new.site) execute function pifleet_board_moved();

-- an exchange with a board of another site, relayed through its master (sites/relay.py): the caller writes
-- the request and notifies the owner; the owner writes the answer and notifies the caller
create table site_calls (
    id           uuid primary key,
    from_site    text not null,
    to_site      text not null,
    method       text not null,
    args         jsonb not null,
    data         bytea,                                 -- a module's bytes (put_module)
    created_at   timestamptz not null default now(),
    answered_at  timestamptz,
    answer       jsonb                                  -- {"result": …} or {"error": kind, "detail", "field"}
);
create index site_calls_by_age on site_calls (created_at);
