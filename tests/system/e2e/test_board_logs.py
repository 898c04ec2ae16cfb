"""Logs from the boards (issue 13, item 5), the master's side: a board's batches over CoAP (POST /l, protected by
its own OSCORE context) are kept — the last 10,000 lines per board — and read back through
GET /api/devices/NAME/logs and `pifleet logs`, also live (-f, over the event stream); what does not come from the
registered board itself is refused. The board is a stand-in paired by adoption (tests/support/logboards.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta

import pytest
from aiocoap.numbers.codes import Code

from tests.support.logboards import LogBoard, exchange, request
from tests.support.waits import wait_until


@pytest.fixture(scope="module")
def board(module_master) -> LogBoard:
    board = LogBoard(module_master, "printer-1", "24:0a:7f:10:00:01")
    # paired, not registered yet: its log is refused like its telemetry would be
    answer = board.log("too early\n")
    assert answer.code == Code.NOT_FOUND, (answer, answer.payload)
    board.register()
    return board


def logs(master, name: str, **params) -> list[dict]:
    r = master.request("GET", f"/api/devices/{name}/logs", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_protected_batch_is_stored_in_order_and_others_are_refused(module_master, board):
    before = logs(module_master, "printer-1", limit=10_000)
    answer = board.log('agent: up\nblind: move down 3 s\nTraceback (most recent call last):\n  File "blind.py"')
    assert answer.code == Code.CHANGED and answer.payload == b""
    answer = board.log(b"bad \xff\xfe utf-8\n\x00nul\r\n", lost=312)
    assert answer.code == Code.CHANGED

    lines = logs(module_master, "printer-1")[len(before) :]
    assert [x["line"] for x in lines] == [
        "agent: up",
        "blind: move down 3 s",
        "Traceback (most recent call last):",
        '  File "blind.py"',  # the payload did not end in "\n": the line ends there
        "… 312 bytes of this board's log were lost (its buffer was full)",
        "bad \ufffd\ufffd utf-8",
        "\ufffdnul",
    ]
    seqs = [x["seq"] for x in lines]
    assert seqs == list(range(seqs[0], seqs[0] + 7))
    assert all(
        abs(datetime.fromisoformat(x["time"]) - datetime.now().astimezone()) < timedelta(minutes=1) for x in lines
    )

    # not text: refused and counted; unprotected (the board is paired), or from no paired board at all: 4.01
    assert board.log("x\n", content_format=50).code == Code.BAD_REQUEST
    plain = exchange(module_master.coap, request("l", ("ep=" + board.device_id,), b"forged\n", content_format=0))
    assert plain.code == Code.UNAUTHORIZED
    stranger = exchange(module_master.coap, request("l", ("ep=nobody-here",), b"forged\n", content_format=0))
    assert stranger.code == Code.UNAUTHORIZED
    assert board.log("x\n", lost="-1").code == Code.BAD_REQUEST  # type: ignore[arg-type]
    too_large = board.log("x" * 1100 + "\n")  # more than a board ever sends in one batch
    assert too_large.code == Code.REQUEST_ENTITY_TOO_LARGE and too_large.opt.size1 == 1024
    assert [x["line"] for x in logs(module_master, "printer-1")[len(before) :]] == [x["line"] for x in lines]

    counts = module_master.get("/api/metrics")
    assert counts["logs"] >= 2 and counts["logs_refused"] >= 4, counts
    metrics = module_master.request("GET", "/metrics").text
    assert any(
        m.startswith("pifleet_board_log_lines_total ") and float(m.split()[1]) >= 7 for m in metrics.splitlines()
    )


def test_since_limit_and_refusals_of_the_api(module_master, board):
    board.log("old line\n")
    mark = logs(module_master, "printer-1", limit=1)[-1]
    board.log("new line 1\nnew line 2\n")
    since = logs(module_master, "printer-1", since=mark["time"])
    assert [x["line"] for x in since] == ["old line", "new line 1", "new line 2"]  # at or after: that batch too
    later = datetime.fromisoformat(mark["time"]) + timedelta(microseconds=1)
    assert [x["line"] for x in logs(module_master, "printer-1", since=later.isoformat())] == [
        "new line 1",
        "new line 2",
    ]
    assert [x["line"] for x in logs(module_master, "printer-1", limit=2)] == ["new line 1", "new line 2"]

    for params, field in (
        ({"since": "yesterday"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "many"}, "limit"),
    ):
        r = module_master.request("GET", "/api/devices/printer-1/logs", params=params)
        assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)
    r = module_master.request("GET", "/api/devices/no-such-board/logs")
    assert r.status_code == 404, r.text


def test_the_master_keeps_the_last_10000_lines(module_master):
    board = LogBoard(module_master, "chatty-1", "24:0a:7f:10:00:02")
    board.register()
    total, n = 10_050, 0
    while n < total:  # batches as a board sends them: whole lines, at most 900 bytes
        batch = []
        while n < total and sum(map(len, batch)) + 7 <= 900:
            n += 1
            batch.append(f"L{n:05d}\n")
        assert board.log("".join(batch)).code == Code.CHANGED
    kept = logs(module_master, "chatty-1", limit=10_000)
    assert len(kept) == 10_000
    assert kept[0]["line"] == "L00051" and kept[-1]["line"] == "L10050"
    assert len(logs(module_master, "chatty-1")) == 200  # the default: the newest 200


def test_what_a_virtual_board_prints_reaches_the_api(module_master, board_factory):
    """End to end: the agent on a virtual ESP32 (real MicroPython), flashed through the master, prints; its ring
    sends the lines once the board is registered; GET /api/devices/NAME/logs has them, in the board's order."""
    board = board_factory("logger-1", module_master, role="blind")

    def printed() -> list[str]:
        text = [x["line"] for x in logs(module_master, "logger-1")]
        return text if any(line.startswith("rd: registered as") for line in text) else []

    text = wait_until(
        printed,
        timeout=60,
        what="the board's registration line in its log on the master",
        explain=lambda: board.console_text() + module_master.log_tail(40),
    )
    listening = next(i for i, line in enumerate(text) if line.startswith("agent: listening on"))
    assert listening < next(i for i, line in enumerate(text) if line.startswith("rd: registered as"))
    console = board.console_text()
    assert all(line in console for line in text), (text, console)


def cli(master, *args: str, **kw) -> subprocess.Popen:
    """`pifleet logs …` as a person starts it in a terminal: with Ctrl-C working. A test run started in the
    background of a shell inherits SIGINT as ignored, and a process started with SIGINT ignored keeps ignoring it
    (so Ctrl-C would not reach the CLI here, though it does in any terminal)."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "pifleet", "logs", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=master.env(),
            **kw,
        )
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_pifleet_logs_prints_and_follows(module_master, board):
    board.log("cli: before\n")
    follow = cli(module_master, "printer-1", "-f", "--since", "1m", "--limit", "1")
    seen: list[str] = []
    said: list[str] = []  # its stderr, read as it comes: a pipe nobody reads can stop a process when it fills
    reader = threading.Thread(target=lambda: seen.extend(iter(follow.stdout.readline, "")), daemon=True)
    reader.start()
    threading.Thread(target=lambda: said.extend(iter(follow.stderr.readline, "")), daemon=True).start()
    wait_until(
        lambda: any(line.endswith(" cli: before\n") for line in seen),
        timeout=30,
        what="the line printed before",
        explain=lambda: (seen, said),
    )
    assert len(seen) == 1  # --limit 1: the newest line only
    datetime.strptime(seen[0][:23], "%Y-%m-%d %H:%M:%S.%f")  # "TIME line", in local time
    board.log("cli: while following\n")
    wait_until(
        lambda: any(line.endswith(" cli: while following\n") for line in seen),
        timeout=30,
        what="the followed line",
        explain=lambda: (seen, module_master.log_tail(30)),
    )
    follow.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        code = follow.wait(timeout=30)
    except subprocess.TimeoutExpired:
        follow.kill()
        raise AssertionError(f"pifleet logs -f did not stop on Ctrl-C; it said: {''.join(said)}") from None
    assert code == 0, "".join(said)
    assert [line.split(" ", 2)[2] for line in seen] == ["cli: before\n", "cli: while following\n"]
