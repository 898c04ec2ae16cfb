"""The board's own timed runs for when the master is away (docs/jobs.md, "When the master is away").

Layer: device side, application. Loaded only when the master pushes a plan (PUT /plan, through agent/admin.py) or a
planned run's grace has passed (agent/app.py's pulse, which keeps nothing of the plan but the time to look
again, `resources.due`); forgotten after. The plan lives in plan, what the board ran itself in done,
both surviving a reboot.

A plan entry is [eid, due, grace_s, until, capability, command, params] (due and until in whole unix seconds, soonest
first). When `due + grace_s` has passed, the board has the master's time (agent/boots.py), the master has not
sent that execution (its id is not among the commands the board remembers) and the master does not answer now
(a command under way on the board counts as its answer: the master is there, and this run's move would cut that
one short), the board runs it itself — unless it is past `until` (the job's misfire window) — and remembers it in
done until the master acknowledges it (PUT /plan's "ack"). A run the board did is answered as a duplicate if the master
sends it later ("by": "board" in the answer): its effect happens once.
"""

from agent import boots
from agent.port import const, forget, json, os, print_exception, wait_for_ms

forget("boots")  # held by this module alone: it goes when this one is forgotten

# Names: this module is loaded after every registration (the plan push), and every name of its own the board does
# not have yet stays interned in its heap; a dozen of them grew the pool by 4.6 KB (docs/agent.md, "Heap"). So its
# private functions take names the firmware has (read, update, step, poll), its files' names are literals the board
# has ("plan", "done"), and the fields it adds to JSON are split from one literal longer than 10 characters (such a
# literal is not interned, and neither are the locals they go to).
_CHANGED = const(68)
_BAD_REQUEST = const(128)
_METHOD_NOT_ALLOWED = const(133)
_PUT = const(3)
_POST = const(2)
_URI_PATH = const(11)
_CONTENT_FORMAT = const(12)
_REACH_MS = const(2000)  # how long the master has to answer before the board runs a run itself
_REPORT = const(4)  # runs done by the board per answer (one datagram)


def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []


def _save(path, items):
    if not items:
        try:
            os.remove(path)
        except OSError:
            pass
        return
    with open(path + ".new", "w") as f:  # a power cut while writing leaves the old file whole
        json.dump(items, f)
    os.rename(path + ".new", path)


def _answer(code, obj):
    return code, [(_CONTENT_FORMAT, b"\x32")], json.dumps(obj).encode()


def handle(res, msg):
    """PUT /plan {"time": unix seconds, "us": µs, "plan": [entry …], "ack": [eid …]}: the master's time, the new plan,
    and the runs done by the board that the master has recorded. The answer lists (some of) the runs done by the
    board that it has not acknowledged yet: {"done": [{"eid", "at", "code", "answer"}], "more": n}."""
    if msg.code != _PUT:
        return _METHOD_NOT_ALLOWED, [], b""
    ack, planned = "ack planned".split()
    try:
        body = json.loads(msg.payload)
        plan = body["plan"]
        ack = body.get(ack) or []
        boots.start(body["time"], body.get("us", 0))
    except (ValueError, KeyError, TypeError) as exc:
        return _answer(_BAD_REQUEST, {"ok": False, "error": "plan payload: " + repr(exc), "field": "plan"})
    done = [d for d in read("done") if d["eid"] not in ack]
    _save("done", done)
    ran = [d["eid"] for d in done]
    plan = sorted((e for e in plan if e[0] not in ran), key=lambda e: e[1])
    _save("plan", plan)
    if res.due is not None:  # None: a round of due runs is under way, and looks at this plan when it ends
        update(res, plan)
    print("plan: %d runs planned, %d done by myself to report" % (len(plan), len(done)))
    return _answer(_CHANGED, {planned: len(plan), "done": done[:_REPORT], "more": max(len(done) - _REPORT, 0)})


def update(res, plan):
    """When the pulse looks again (board time): the first entry's due time plus its grace; 0 for never."""
    res.due = min(e[1] + e[2] for e in plan) - boots.EPOCH if plan else 0


async def poll(agent):
    reg = agent.registration
    if reg.master is None:
        return False
    from agent import coap

    path = reg.location or "rd"
    try:
        await wait_for_ms(agent.endpoint.request(reg.master, _POST, coap.path_options(_URI_PATH, path)), _REACH_MS)
        return True  # any answer, even a refusal: the master is there, and decides
    except Exception:  # noqa: BLE001 — timeout, RequestError: nobody answers
        return False


async def due(agent):
    """The pulse saw a planned run's grace pass: run what the master did not send and cannot, keep the rest (a task
    of its own; this module is forgotten when it ends)."""
    try:
        await step(agent)
    except Exception as exc:  # noqa: BLE001 — the board serves on; the plan is looked at again when pushed
        print_exception(exc)
    finally:
        if agent.resources.due is None:
            agent.resources.due = 0
        forget("plan")


async def step(agent):
    """One round (res.due is None while it runs, so the pulse starts no second one: a plan pushed meanwhile made
    two rounds run the same entry, the second cutting the first's move)."""
    res = agent.resources
    now = boots.now()
    if now is None:
        print("plan: no time from the master since the power came: running nothing by myself")
        res.due = 0
        return
    handled = []
    reachable = None
    for entry in read("plan"):
        eid, at, grace, until, cap, command, params = entry
        if now < at + grace:
            continue
        handled.append(eid)
        if eid in res.executions:
            print("plan: %s came from the master" % eid)
            continue  # done (or under way) by its command
        if now > until:
            print("plan: %s %s.%s is past its window: not run" % (eid, cap, command))
            continue
        if reachable is None:
            reachable = await poll(agent)
        # a command under way (looked at after that try, which takes up to 2 s) came from the master, which is there
        # then; and this run's move would cut it short
        if reachable or None in res.executions.values():
            print("plan: %s %s.%s not sent, but the master answers: it decides" % (eid, cap, command))
            continue
        await _run(res, eid, cap, command, params, now)
    # the plan as it is now (the master may have pushed one while this round ran), without what this round handled
    keep = [e for e in read("plan") if e[0] not in handled]
    _save("plan", keep)
    update(res, keep)


async def _run(res, eid, cap, command, params, now):
    payload = json.dumps({"eid": eid, "ep": res.device_id, "params": params}).encode()
    code, _, data = await res._command(cap, command, payload)
    answer = json.loads(data)
    print("plan: ran %s %s.%s myself (the master does not answer): %s" % (eid, cap, command, code == _CHANGED))
    by, board, at = "by board at".split()
    answer[by] = board
    if eid in res.executions:  # a later send of it by the master gets this answer, and nothing moves again
        res.executions[eid] = (code, json.dumps(answer).encode())
    done = read("done")
    done.append({"eid": eid, at: now, "code": code, "answer": answer})
    _save("done", done)
