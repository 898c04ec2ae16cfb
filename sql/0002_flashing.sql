-- pifleet 0002: flashing over USB — the base-image catalog, device identity (MAC), per-device secrets, and
-- flash jobs. A flash that fails is recorded in flash_jobs and changes nothing else: devices and
-- device_secrets rows are written only after esptool has written and verified the board's flash.

create table firmware (
    id         bigserial primary key,
    chip       text not null,                      -- esptool's chip name: ESP32, ESP32-S3, ESP32-C3 …
    version    text not null,                      -- MicroPython version from the app's esp_app_desc (v1.24.1)
    sha256     text not null unique,               -- of the whole file, hex
    size       bigint not null,
    filename   text not null,                      -- under data_dir/firmware/
    offset_    integer not null,                   -- flash offset the image is written at (0x1000 on ESP32)
    project    text not null default '',           -- esp_app_desc project name (micropython)
    source     text not null check (source in ('user', 'official')),
    added_at   timestamptz not null default now()
);

create index firmware_by_chip on firmware (chip, added_at desc);

-- The board's factory MAC (from eFuse, read over USB): how a re-flashed board keeps its identity.
alter table devices add column mac text unique;

-- The per-device secret written into the board's config.json at flash time (the pairing channel is the cable).
-- Never returned by the API, never logged.
create table device_secrets (
    device_id  text primary key references devices (id) on delete cascade,
    secret     bytea not null,
    created_at timestamptz not null default now()
);

create table flash_jobs (
    id            uuid primary key,
    port          text not null,
    name          text not null,                   -- the name and role asked for
    role          text not null,
    firmware_id   bigint references firmware (id) on delete set null,
    factory_reset boolean not null default false,
    device_id     text,                            -- the identity written (known once the chip was probed)
    mac           text,
    chip          text,
    state         text not null check (state in ('queued', 'probing', 'writing', 'verifying', 'done', 'failed')),
    progress      integer not null default 0 check (progress between 0 and 100),
    bytes         bigint,                          -- bytes written to flash (uncompressed)
    bytes_sent    bigint,                          -- bytes sent over the wire (compressed)
    error         text,
    created_at    timestamptz not null default now(),
    started_at    timestamptz,
    finished_at   timestamptz
);

create index flash_jobs_by_time on flash_jobs (created_at desc);
