-- pifleet 0021: the fleet's Wi-Fi (issue 17). The networks themselves are a household setting (settings row
-- 'wifi': {"networks": [{"ssid", "psk"}], "fallback_s"}, pifleet/wifi.py); this table is what each board said
-- about its network the last time the master pushed credentials to it or asked (GET /w on the board).

create table board_wifi (
    device_id   text primary key references devices (id) on delete cascade,
    ssid        text,                              -- the network the board said it uses (null: not known)
    took_new    boolean,                           -- after the last push: it joined one of the pushed networks
    state       text not null default 'unknown'
        check (state in ('unknown', 'pushing', 'joined', 'kept_old', 'unreachable', 'refused')),
    error       text,                              -- why the last push did not reach it or was refused
    pushed_at   timestamptz,
    updated_at  timestamptz not null default now()
);
