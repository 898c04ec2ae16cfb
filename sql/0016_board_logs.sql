-- pifleet 0016: what the boards print (their agent, their role modules' print, tracebacks), as they send it over
-- CoAP (POST /l, docs/protocol.md "Logs from the boards"). The master keeps the last 10,000 lines per board.

-- each board's newest line number: a batch takes its numbers here in one row update, which also orders two
-- batches of one board that arrive at once
create table board_log_heads (
    device_id  text primary key references devices (id) on delete cascade,
    last_seq   bigint not null default 0
);

-- one line as the board printed it, without its "\n"; a batch's lines share the time the master received them.
-- Trimming deletes a board's lines below (last_seq - 10,000) by the primary key as each batch arrives.
create table board_logs (
    device_id  text not null references devices (id) on delete cascade,
    seq        bigint not null,                    -- the board's own order: 1, 2, 3 … without gaps
    at         timestamptz not null default now(),
    line       text not null,
    primary key (device_id, seq)
);
