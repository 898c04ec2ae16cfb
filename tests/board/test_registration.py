"""Registration (RFC 9176 style): a tiny aiocoap resource directory in the test receives the board."""

import asyncio
import json

import aiocoap
import aiocoap.resource as resource
import pytest
from aiocoap.numbers.codes import Code

from pifleet.sim import VirtualBoard
from tests.board.conftest import free_udp_port, request


class Directory:
    """Records what the board sends; can forget a registration to provoke a re-registration."""

    def __init__(self):
        self.registrations = []  # (query dict, payload, content_format)
        self.updates = []
        self.deletes = []
        self.known = set()
        self.changed = asyncio.Event()
        self.hang_first_update = False  # its answer is "lost": it comes only once `release` is set
        self.release = asyncio.Event()

    def site(self):
        directory = self

        class Rd(resource.Resource):
            async def render_post(self, request):
                query = dict(q.split("=", 1) for q in request.opt.uri_query)
                reg = "r%d" % (len(directory.registrations) + 1)
                directory.registrations.append((query, request.payload.decode(), request.opt.content_format))
                directory.known.add(reg)
                directory.changed.set()
                return aiocoap.Message(code=Code.CREATED, location_path=("rd", reg))

        class Registration(resource.Resource):
            def __init__(self, reg):
                super().__init__()
                self.reg = reg

            async def render_post(self, request):
                query = dict(q.split("=", 1) for q in request.opt.uri_query)
                now = asyncio.get_running_loop().time()
                directory.updates.append((self.reg, now, query, request.payload.decode(), request.opt.content_format))
                directory.changed.set()
                if directory.hang_first_update and len(directory.updates) == 1:
                    await directory.release.wait()
                if self.reg not in directory.known:
                    return aiocoap.Message(code=Code.NOT_FOUND)
                return aiocoap.Message(code=Code.CHANGED)

            async def render_delete(self, request):
                directory.deletes.append(self.reg)
                directory.known.discard(self.reg)
                return aiocoap.Message(code=Code.DELETED)

        site = resource.Site()
        site.add_resource(["rd"], Rd())
        for n in range(1, 5):
            site.add_resource(["rd", "r%d" % n], Registration("r%d" % n))
        return site

    async def until(self, predicate, timeout=10.0):
        async def wait():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def directory():
    rd = Directory()
    port = free_udp_port()
    context = await aiocoap.Context.create_server_context(
        rd.site(), bind=("127.0.0.1", port), transports=["oscore", "udp6"]
    )
    rd.port = port
    yield rd
    await context.shutdown()


async def test_registers_updates_reregisters_and_deregisters(directory, tmp_path):
    board = VirtualBoard("t-rd", tmp_path, role="blind", master=("127.0.0.1", directory.port), lifetime=3)
    board.start()
    try:
        await directory.until(lambda: directory.registrations)
        query, links, content_format = directory.registrations[0]
        assert query["ep"] == "esp-02e532b5e9ac" and query["lt"] == "3" and query["et"] == "pifleet.esp32"
        assert query["name"] == "t-rd" and query["role"] == "blind"
        assert int(query["mpy"]) & 0xFF == 6 and query["fw"].count(".") == 2 and query["agent"]
        assert content_format == 40
        assert '</a/blind/move>;rt="pifleet.cmd";ct=50' in links.split(",")

        # An update after lifetime/3 = 1 s.
        await directory.until(lambda: directory.updates)
        assert directory.updates[0][0] == "r1"

        # The master forgets the board: the next update gets 4.04 and the board registers anew at once.
        directory.known.clear()
        await directory.until(lambda: len(directory.registrations) == 2)
        await directory.until(lambda: directory.updates[-1][0] == "r2")
    finally:
        await board.stop_async()  # the directory must keep answering while the board says goodbye
    assert directory.deletes == ["r2"]
    assert "rd: deregistered rd/r2" in board.console_text()


async def test_an_update_whose_answer_is_lost_is_followed_by_a_fresh_one(directory, tmp_path):
    # the master takes only an update's first copy as heard (retransmissions are answered from its deduplication
    # cache): a board that waited on one update for up to 93 s let its registration lapse there, as a 30 % loss link
    # showed (tests/system/chaos/test_lossy_link.py); it sends a fresh update once lifetime/3 has passed unanswered
    directory.hang_first_update = True
    board = VirtualBoard("t-rd-lost", tmp_path, role="blind", master=("127.0.0.1", directory.port), lifetime=3)
    board.start()
    try:
        await directory.until(lambda: directory.updates)
        await directory.until(lambda: len(directory.updates) >= 2, timeout=3)
        first, second = directory.updates[0][1], directory.updates[1][1]
        assert second - first < 3, directory.updates  # within the lifetime: the registration never lapsed
        assert len(directory.registrations) == 1 and directory.updates[1][0] == "r1"  # the same registration
    finally:
        directory.release.set()
        await board.stop_async()
    assert "rd: master did not answer: TimeoutError" in board.console_text()


async def test_a_role_switch_in_place_updates_the_registrations_links_and_role(directory, tmp_path, coap_client):
    # RFC 9176 §5.3: an update may carry new links; the board did not restart, so its registration stands
    board = VirtualBoard("t-relink", tmp_path, role="blind", master=("127.0.0.1", directory.port), lifetime=60)
    board.start()
    try:
        await directory.until(lambda: directory.registrations, timeout=20)
        uri = "coap://%s" % board.ip
        described = json.loads((await request(coap_client, Code.GET, uri + "/cap")).payload)
        stem = described["caps"][0]["module"]
        body = {"role": "shutters", "caps": {"blind": {"up_pin": 27, "down_pin": 14}}, "modules": {"blind": stem}}
        answer = await request(coap_client, Code.PUT, uri + "/role", json.dumps(body).encode())
        assert answer.code == Code.CHANGED and json.loads(answer.payload)["role"] == "shutters", answer.payload
        await directory.until(lambda: directory.updates, timeout=20)
        reg, _, query, links, content_format = directory.updates[0]
        assert (reg, query, content_format) == ("r1", {"role": "shutters"}, 40)
        assert '</a/blind/move>;rt="pifleet.cmd";ct=50' in links.split(",")
        for _ in range(100):  # the board says so once it has the answer
            if "rd: links updated (role shutters)" in board.console_text():
                break
            await asyncio.sleep(0.05)
        assert "rd: links updated (role shutters)" in board.console_text()
        assert len(directory.registrations) == 1

        # a master that forgot the registration meanwhile: the links update gets 4.04, the board registers anew
        directory.known.clear()
        body["caps"]["blind"] = {"up_pin": 25, "down_pin": 26}
        body["role"] = "porch"
        answer = await request(coap_client, Code.PUT, uri + "/role", json.dumps(body).encode())
        assert answer.code == Code.CHANGED, answer.payload
        await directory.until(lambda: len(directory.registrations) == 2, timeout=20)
        query, links, _ = directory.registrations[1]
        assert query["role"] == "porch" and '</a/blind/stop>;rt="pifleet.cmd";ct=50' in links.split(",")
        assert [u[2] for u in directory.updates] == [{"role": "shutters"}, {"role": "porch"}]
    finally:
        await board.stop_async()


async def test_sensor_board_reads_temperature(directory, tmp_path, coap_client):
    board = VirtualBoard("t-temp", tmp_path, role="sensor", master=("127.0.0.1", directory.port))
    board.set_input(adc={34: 750_000})  # TMP36: 750 mV = 25.0 °C
    board.start()
    try:
        await board.wait_ready_async()
        uri = "coap://%s/a/temperature/read" % board.ip
        payload = json.dumps({"eid": "t-1", "params": {}}).encode()
        response = await coap_client.request(aiocoap.Message(code=Code.POST, uri=uri, payload=payload)).response
        assert json.loads(response.payload)["result"] == {"celsius": 25.0}
        board.set_input(adc={34: 712_340})
        payload = json.dumps({"eid": "t-2", "params": {}}).encode()
        response = await coap_client.request(aiocoap.Message(code=Code.POST, uri=uri, payload=payload)).response
        assert json.loads(response.payload)["result"] == {"celsius": 21.2}
        assert board.pin_history() == []  # a sensor board drives no outputs
    finally:
        await board.stop_async()
