# mpyset_swap.py: imported by boot.py, before anything imports the agent, at a start that finds mpy/KEY/ for the running
# MicroPython's key (the usual start finds none and compiles none of this). It brings to the root the agent and role
# modules built for the .mpy version of the MicroPython that runs (docs/flashing.md, "Different .mpy versions").
# The root's agent/ and caps/ are the set the running MicroPython loads; agent/_mpy says which (its key:
# sys.implementation._mpy & 1023, version and sub-version). Before an update to a MicroPython of another .mpy version
# the master pushes that version's set into mpy/KEY/ (agent/sets.py); the first start of that MicroPython parks the
# root's set as mpy/OLD/ and moves the waiting one in — caps first, agent/ (with its record) last, so a power cut
# between two renames is finished at the next start. A rollback to the old image finds its set in mpy/OLD/ and swaps
# back the same way. Source, not .mpy: every MicroPython compiles it. It forgets itself (sys.modules).
import os
import sys

key = "%d" % (sys.implementation._mpy & 1023)
try:
    with open("agent/_mpy") as f:
        old = f.read().strip()
except OSError:
    old = None  # the root has no agent: a power cut came between its two renames
for name in ("caps", "agent"):
    try:
        os.stat("mpy/%s/%s" % (key, name))
    except OSError:
        continue  # moved in before a power cut
    if old and old != key:
        try:
            os.mkdir("mpy/" + old)
        except OSError:
            pass
        try:
            os.rename(name, "mpy/%s/%s" % (old, name))
        except OSError:
            pass  # parked before a power cut
    os.rename("mpy/%s/%s" % (key, name), name)
os.rmdir("mpy/" + key)
print("mpyset_swap: the agent and role modules for .mpy", key, "moved in; those for", old, "kept in mpy/" + str(old))
del sys.modules["mpyset_swap"]
