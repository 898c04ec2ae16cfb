"""What a board prints reaches the master (agent/log.py): POST /l?ep=ID with text/plain batches, kept on the board
until the master took them. The master here is a small aiocoap server: a resource directory and /l."""

import asyncio

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code

from pifleet.sim import VirtualBoard
from tests.board.conftest import free_udp_port


class Master:
    def __init__(self, refuse_first=0):
        self.batches = []  # (query dict, text, content format) of every /l the master took
        self.refused = 0
        self.refuse_first = refuse_first  # answer the first N batches 5.03: the board must keep their lines
        self.changed = asyncio.Event()

    def site(self):
        master = self

        class Rd(resource.Resource):
            async def render_post(self, request):
                return aiocoap.Message(code=Code.CREATED, location_path=("rd", "r1"))

        class Update(resource.Resource):
            async def render_post(self, request):
                return aiocoap.Message(code=Code.CHANGED)

        class Log(resource.Resource):
            async def render_post(self, request):
                if master.refused < master.refuse_first:
                    master.refused += 1
                    return aiocoap.Message(code=Code.SERVICE_UNAVAILABLE)
                query = dict(q.split("=", 1) for q in request.opt.uri_query)
                master.batches.append((query, request.payload.decode(), request.opt.content_format))
                master.changed.set()
                return aiocoap.Message(code=Code.CHANGED)

        site = resource.Site()
        site.add_resource(["rd"], Rd())
        site.add_resource(["rd", "r1"], Update())
        site.add_resource(["l"], Log())
        return site

    def text(self):
        return "".join(text for _, text, _ in self.batches)

    async def until(self, predicate, timeout=15.0):
        async def wait():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


async def _serve(master):
    port = free_udp_port()
    context = await aiocoap.Context.create_server_context(
        master.site(), bind=("127.0.0.1", port), transports=["oscore", "udp6"]
    )
    return port, context


async def test_what_the_board_prints_reaches_the_master_in_order(tmp_path):
    master = Master()
    port, context = await _serve(master)
    board = VirtualBoard("t-log", tmp_path, role="blind", master=("127.0.0.1", port))
    board.start()
    try:
        await master.until(lambda: "rd: registered as rd/r1" in master.text())
        query, _, content_format = master.batches[0]
        assert query["ep"] == "esp-" + board.mac.hex() and "lost" not in query
        assert content_format == 0  # text/plain; charset=utf-8
        text = master.text()
        # the board's own console, line for line, from its first lines on
        assert text.index("agent: listening on") < text.index("rd: registered as rd/r1")
        assert all(line in board.console_text() for line in text.splitlines())
        assert all(len(batch.encode()) <= 384 and batch.endswith("\n") for _, batch, _ in master.batches)
    finally:
        await board.stop_async()
        await context.shutdown()


async def test_a_master_that_refuses_batches_gets_the_lines_later(tmp_path):
    master = Master(refuse_first=2)
    port, context = await _serve(master)
    board = VirtualBoard("t-log2", tmp_path, role="blind", master=("127.0.0.1", port))
    board.start()
    try:
        await master.until(lambda: "rd: registered as rd/r1" in master.text())
        assert master.refused == 2
        assert "agent: listening on" in master.text()  # kept on the board while the master said no
    finally:
        await board.stop_async()
        await context.shutdown()


async def test_a_traceback_on_the_board_reaches_the_master(tmp_path):
    master = Master()
    port, context = await _serve(master)
    broken = {"blind": {"up_pin": 25, "down_pin": 25}}  # the blind refuses to set up: one motor, one pin
    board = VirtualBoard("t-log3", tmp_path, role="blind", caps=broken, master=("127.0.0.1", port))
    board.start()
    try:
        await master.until(lambda: "ValueError: up_pin and down_pin must differ" in master.text())
        text = master.text()
        assert text.index("caps: cannot load blind") < text.index("Traceback (most recent call last):")
    finally:
        await board.stop_async()
        await context.shutdown()
