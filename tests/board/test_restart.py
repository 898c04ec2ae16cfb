"""A board restarts when the master asks (POST /restart): outputs safe, machine.reset(), and the virtual chip boots
again as an ESP32 does, registers anew and says why it started (reset_cause in /stats)."""

import json

import aiocoap
from aiocoap.numbers.codes import Code

from pifleet.sim import VirtualBoard
from tests.board.test_logs import Master, _serve


async def test_a_board_asked_to_restart_boots_again_and_registers(tmp_path, coap_client):
    master = Master()
    port, context = await _serve(master)
    board = VirtualBoard("t-restart", tmp_path, role="blind", master=("127.0.0.1", port))
    board.start()
    try:
        await master.until(lambda: "rd: registered as rd/r1" in master.text())
        base = "coap://%s" % board.ip
        stats = await coap_client.request(aiocoap.Message(code=Code.GET, uri=base + "/stats")).response
        assert json.loads(stats.payload)["reset_cause"] == "power"

        get = await coap_client.request(aiocoap.Message(code=Code.GET, uri=base + "/restart")).response
        assert get.code == Code.METHOD_NOT_ALLOWED
        answer = await coap_client.request(aiocoap.Message(code=Code.POST, uri=base + "/restart")).response
        assert answer.code == Code.CHANGED

        # it goes down and comes back by itself: a second start-up, a second registration
        await master.until(lambda: master.text().count("rd: registered as rd/r1") == 2, timeout=20)
        console = board.console_text()
        assert console.index("agent: restarting, as the master asked") < console.index("machine.reset()")
        assert "rst:0xc (SW_CPU_RESET)" in console and console.count("agent: listening on") == 2
        await board.wait_ready_async()
        stats = await coap_client.request(aiocoap.Message(code=Code.GET, uri=base + "/stats")).response
        assert json.loads(stats.payload)["reset_cause"] == "soft"
    finally:
        await board.stop_async()
        await context.shutdown()
