-- pifleet 0009: role modules uploaded by people, versioned by content, and their compiled builds.

create table modules (
    id          bigserial primary key,
    name        text not null,                     -- the capability's module name: "blind" (blind.py)
    sha256      text not null,                     -- of the source: the version
    source      text not null,
    declared    jsonb not null,                    -- what the module declares: NAME, VERSION, command names
    created_at  timestamptz not null default now(),
    unique (name, sha256)
);

-- builds are cached by (source, .mpy ABI, arch): a board gets the one for its MicroPython
create table module_builds (
    module_id   bigint not null references modules (id) on delete cascade,
    mpy_abi     text not null,                     -- e.g. "6.3"
    arch        text not null default '',          -- only native code needs one: "xtensawin", "rv32imc"
    mpy_cross   text not null,                     -- the compiler used
    mpy         bytea not null,
    created_at  timestamptz not null default now(),
    primary key (module_id, mpy_abi, arch)
);
