"""At most once across resets: the execution ids (eid) of the board's last commands with an effect, in a file.

Layer: device side, application. Loaded by agent/resources.py for each command (and forgotten by it at once: the
command's own reference keeps it until it answers). agent/resources.py keeps the last 8 answers in RAM; this file
outlives a power cut and a watchdog reset. Plain reads ("read", "state", "position") are neither written nor looked
up: they have no effect to double, and flash wears.

Write, then act: load() appends "EID\n" to executions.ran before the command acts; save() appends
"EID CODE ANSWER\n" once it has its answer. A command that comes again with an eid found there (the master's retry,
or its retransmission proven fresh by OSCORE's Echo after our reset, RFC 8613 Appendix B.1.2: fresh is not "not
done before") does not act again:
- found with its answer: that answer again, marked "duplicate" (the effect happened once);
- found without one: the board was reset between the write and the answer, so the effect may have happened, been
  cut short by the reset, or not begun. It is not run again (a run is never done twice); the answer is 4.12 with
  "field": "eid", which the master records as the run's final failure, without a retry (jobs/runner.py): a lost
  effect, and the master knows it.
A power cut while a line is written leaves the file as it was (littlefs commits a file when it is closed), so the
worst case is the one above. The file keeps the last _KEEP lines (at least _KEEP / 2 eids); past twice as many it is
rewritten whole (executions.ran.new, then renamed).

Names cost heap: every new name or short string (up to 10 characters) is a qstr, and the qstr pool after boot and a
thousand commands is full to the last entry (tools/bench/board_heap.py): one more grows it by ~4.5 KB. So this
module defines no global name of its own (load and save are FileStore's, the constants are const) and its strings
are the board's existing ones or longer than 10 characters.
"""

from agent.port import const, json, os

_KEEP = const(24)
_PRECONDITION_FAILED = const(140)  # 4.12


def load(eid, command):
    """None: run it (a command with an effect has its eid written first); else the (code, options, payload) to
    answer instead, for a command this board began before a reset."""
    if command in ("read", "state", "position"):
        return None
    found = None  # None: never seen; "": begun, never answered; else "CODE ANSWER"
    count = 0
    try:
        with open("executions.ran") as f:
            for line in f:
                count += 1
                parts = line[:-1].split(" ", 1)
                if parts[0] == eid:
                    found = parts[1] if len(parts) > 1 else ""
    except OSError:  # no file yet
        pass
    if found is None:
        save(eid, None, count, None)
        return None
    if found:
        parts = found.split(" ", 1)
        answer = json.loads(parts[1])
        answer["duplicate"] = True
        print("executions: %s ran before a reset: its answer again" % eid)
        return int(parts[0]), [(12, b"\x32")], json.dumps(answer).encode()
    print("executions: %s was cut by a reset: not run again" % eid)
    answer = {
        "eid": eid,
        "ok": False,
        "field": "eid",
        "duplicate": True,
        "error": "interrupted: the board was reset (power cut or watchdog) while it ran this; not run again",
    }
    return _PRECONDITION_FAILED, [(12, b"\x32")], json.dumps(answer).encode()


def save(eid, command, code, data):
    """Append eid's line: begun (command None: `code` is the file's line count, to keep it short), or answered
    (`code` and the JSON bytes `data`) for a command that is not a plain read."""
    if command is None:
        line = eid + "\n"
        if code >= 2 * _KEEP:
            # the last _KEEP lines copied one at a time: the whole file as one string (and its split and join)
            # was a MemoryError on a board busy with commands
            code -= _KEEP
            with open("executions.ran") as f, open("executions.ran.new", "w") as out:
                for kept in f:
                    if code:
                        code -= 1
                    else:
                        out.write(kept)
                out.write(line)
            os.rename("executions.ran.new", "executions.ran")
            return
    elif command in ("read", "state", "position"):
        return
    else:
        line = eid + " " + str(code) + " " + data.decode() + "\n"
    with open("executions.ran", "a") as f:
        f.write(line)
