"""The board's clock from the master's plan push (PUT /plan, agent/plan.py and agent/boots.py), in the real
MicroPython unix port: the time arrives as whole seconds and microseconds, integers, because the ESP32 port's
floats are single precision (a Unix time of 1.7e9 s as a float is 128 s apart from the next one), and the RTC is
set with its subseconds, so boards' clocks agree to the millisecond, not to the second (docs/jobs.md, "In step")."""

import json
import os
import subprocess

import pytest

from pifleet import resources
from pifleet.sim.board import SHIMS, micropython_binary

SCRIPT = """
import json, machine
from agent import plan

class Msg:
    code = 3  # PUT
    payload = %r

class Res:
    due = 0

res = Res()
code, options, payload = plan.handle(res, Msg())
print(json.dumps({"code": code, "rtc": machine.RTC._set, "due": res.due, "answer": json.loads(payload)}))
"""


@pytest.mark.skipif(micropython_binary() is None, reason="the MicroPython unix port (micropython) is not installed")
def test_the_plan_push_sets_the_rtc_to_the_microsecond_and_the_plan_in_whole_seconds(tmp_path):
    body = {
        "time": 1796299199,  # 2026-12-03 11:59:59 UTC, a Thursday
        "us": 987654,
        "plan": [["e-1", 1796300000, 30, 1796303600, "blind", "move", {"direction": "down", "seconds": 5}]],
        "ack": [],
    }
    script = tmp_path / "clock.py"
    script.write_text(SCRIPT % json.dumps(body).encode())
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(["", ".frozen", str(SHIMS), str(resources.agent())]))
    done = subprocess.run(
        [micropython_binary(), str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["code"] == 68 and seen["answer"]["planned"] == 1  # 2.04 Changed
    # (year, month, day, weekday, hours, minutes, seconds, subseconds in µs), as machine.RTC.datetime() takes it
    assert seen["rtc"] == [2026, 12, 3, 3, 11, 59, 59, 987654]
    assert seen["due"] == 1796300000 + 30 and isinstance(seen["due"], int)  # when the pulse looks: an int to the s
