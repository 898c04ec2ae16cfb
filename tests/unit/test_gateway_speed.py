"""gateway/speed.py: aiocoap's message copies and address answers, made cheaper, stay what aiocoap's own give."""

from __future__ import annotations

import copy

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption
from aiocoap.transports.udp6 import UDP6EndpointAddress

from pifleet.gateway import speed


class _Interface:
    """What an address refers to its socket through (a weak reference)."""


def a_request() -> aiocoap.Message:
    msg = aiocoap.Message(code=Code.PUT, uri="coap://127.0.0.9:5683/m/blind_ab?sha=00", payload=b"x" * 40)
    msg.opt.block1 = BlockOption.BlockwiseTuple(3, True, 5)
    msg.opt.size1 = 4000
    return msg


def test_a_copy_is_the_same_message_and_changes_to_either_stay_their_own():
    speed.install()
    speed.install()  # idempotent
    original = a_request()
    duplicate = original.copy(uri_host=None)
    assert duplicate.opt.encode() == original.opt.encode() and duplicate.payload == original.payload
    # the copy's options are its own: setting, adding or removing one leaves the original as it was
    duplicate.opt.block1 = BlockOption.BlockwiseTuple(4, False, 5)
    duplicate.opt.uri_path = ("other",)
    duplicate.opt.size1 = None
    duplicate.opt.add_option(aiocoap.optiontypes.StringOption(aiocoap.OptionNumber.URI_QUERY, "v=1"))
    assert original.opt.block1 == BlockOption.BlockwiseTuple(3, True, 5)
    assert original.opt.uri_path == ("m", "blind_ab") and original.opt.uri_query == ("sha=00",)
    assert original.opt.size1 == 4000
    assert copy.deepcopy(original.opt).encode() == original.opt.encode()


def test_address_answers_are_aiocoaps():
    speed.install()
    for text, multicast in (
        ("::ffff:127.0.0.3", False),
        ("::ffff:224.0.1.187", True),
        ("ff02::fd", True),
        ("::1", False),
    ):
        address = UDP6EndpointAddress((text, 5683, 0, 0), interface=_Interface())
        assert address.is_multicast is multicast
        assert address._plainaddress() == (text[7:] if text.startswith("::ffff:") else text)
        assert address.hostinfo == (text[7:] if text.startswith("::ffff:") else f"[{text}]")
