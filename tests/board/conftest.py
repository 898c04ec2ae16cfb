"""Fixtures for the device suite: virtual boards running the real agent in the real MicroPython unix port."""

from pathlib import Path

import aiocoap
import pytest

from pifleet.runtime import free_udp_port
from pifleet.sim import VirtualBoard

REPO = Path(__file__).resolve().parents[2]
MICROPYTHON_DIR = REPO / "micropython"


@pytest.fixture(scope="module")
def blind_board(tmp_path_factory):
    """A blind board whose master is absent (it keeps trying to register, harmlessly)."""
    board = VirtualBoard(
        "t-blind", tmp_path_factory.mktemp("blind"), role="blind", master=("127.0.0.1", free_udp_port())
    )
    board.start()
    board.wait_ready()
    yield board
    board.stop()


@pytest.fixture
async def coap_client():
    context = await aiocoap.Context.create_client_context()
    yield context
    await context.shutdown()


async def request(context, method, uri, payload=b""):
    message = aiocoap.Message(code=method, uri=uri, payload=payload)
    return await context.request(message).response
