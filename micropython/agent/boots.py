"""Boots counted, safe mode decided, the clock the master gave kept: the 7-byte file `boots`.

Layer: device side, top. main.py imports it once at every start (boot()) and forgets it; agent/plan.py (the
master's push after a registration: the agent is up, and the master's time) and agent/admin.py (/stats) load it for
a moment. Nothing of it stays in the heap but its names: it has few, and the file is bytes, not JSON (every name
a loaded module brings is interned for good, and the agent's boot heap is counted in bytes).
The agent is up when the master has answered its registration and pushed its plan (PUT /plan, agent/plan.py,
which the master sends after every registration with its time): start() then.

Bytes: [0] boots in a row that failed (never reached the master), [1] 1 while the RTC holds the master's time,
[2..6] starts by machine.reset_cause() 1..5 (power, hard, watchdog, deepsleep, soft), each up to 255.
- Every boot counts as failed until the agent has registered (start()). A board whose three boots in a row failed
  before that (a role module that hangs at import, resets the board, runs out of memory …) starts in safe mode:
  the agent without role modules, registered and saying why (agent.safe), so the master can push a fix
  (agent/replace.py's changed(): a role that starts ends it). A power-on starts the count afresh: power cuts
  while the master is away are no failure of the board's code.
- The RTC keeps running through soft and watchdog resets, not through a power cut or the EN pin: a boot for
  those reasons drops the clock, and the board runs nothing by itself until the master has given it the time
  again (agent/plan.py).
"""

from agent.port import time

CAUSES = ("unknown", "power", "hard", "watchdog", "deepsleep", "soft")  # the words of /stats' reset_cause
# seconds from 1970-01-01 to the runtime's epoch (the ESP32 port counts from 2000-01-01, the unix port from 1970)
EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0


def record(new=None):
    """The 7 bytes (a bytearray), or write `new`."""
    if new is not None:
        with open("boots", "wb") as f:  # 7 bytes: one flash page, written whole
            f.write(new)
        return new
    try:
        with open("boots", "rb") as f:
            b = bytearray(f.read(7))
    except OSError:
        b = bytearray()
    return b + bytearray(7 - len(b))


def boot():
    """Count this start; the reason for safe mode when the boots before it failed (also set as agent.safe)."""
    b = record()
    try:
        import machine

        why = machine.reset_cause()
    except (ImportError, AttributeError):
        why = 1  # CPython without the shims: a power-on
    if 0 < why < 6:
        b[1 + why] = min(b[1 + why] + 1, 255)
    if why not in (3, 4, 5):
        b[0] = 0  # a power-on or the EN pin: the count starts afresh, and the RTC lost its time
        b[1] = 0
    failed = b[0]
    b[0] = min(failed + 1, 255)
    record(b)
    if failed >= 3:
        import agent

        agent.safe = "%d boots in a row failed before the agent was up (last reset: %s)" % (failed, CAUSES[why])
        print("boot: safe mode:", agent.safe)


def start(seconds=None, us=0):
    """The agent registered and the master pushed its plan: this boot did not fail. `seconds`: the master's time
    (unix seconds, an int: the ESP32 port's floats are single precision, 128 s apart at 1.7e9) and `us` its
    microseconds, for the RTC."""
    b = record()
    old = bytes(b)
    b[0] = 0
    if seconds:
        b[1] = 1
        try:
            import machine

            g = time.gmtime(int(seconds) - EPOCH)
            machine.RTC().datetime((g[0], g[1], g[2], g[6], g[3], g[4], g[5], us))  # the virtual board's: its host's
        except (ImportError, AttributeError):
            pass
    if bytes(b) != old:
        record(b)


def now():
    """Unix seconds by the board's clock, or None while it has not had the master's time since its power came."""
    return time.time() + EPOCH if record()[1] else None


def stats(out):
    """/stats: the starts by their reason, and why the board is in safe mode (None when it is not)."""
    import agent

    b = record()
    reboots, safe = "reboots safe_mode".split()  # not interned: boots.py is loaded at every start (plan.py's note)
    out[reboots] = {CAUSES[i]: b[1 + i] for i in range(1, 6) if b[1 + i]}
    out[safe] = getattr(agent, "safe", None)
