"""Malformed CoAP is the peer's fault: two places where aiocoap (0.4.17) lets a bad datagram raise, found by
tests/fuzz/test_coap_master.py, made into the refusals RFC 7252 and RFC 8613 ask for.

Layer: gateway (aiocoap adapter). Nothing here decides anything about boards.

- A string option (Uri-Path, Uri-Query, Uri-Host, …) that is not UTF-8 raised UnicodeDecodeError out of the
  datagram handler (an ERROR with a traceback in asyncio's log, and nothing counted). It is now an unparsable
  message: dropped, logged by aiocoap as such and counted in the metrics (`malformed_dropped`).
- An OSCORE option with reserved bits or a kid context that is announced but absent raised out of
  OscoreSiteWrapper before it could answer (5.00 and an ERROR). It is now 4.02 "Failed to decode COSE"
  (RFC 8613 §8.2), logged at WARNING with the peer and counted (`oscore_refused`).
"""

from __future__ import annotations

import logging
from collections import Counter

import aiocoap
from aiocoap import error, optiontypes, oscore
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

log = logging.getLogger(__name__)


def _decode_utf8(self, rawdata: bytes) -> None:
    try:
        self.value = rawdata.decode("utf-8")
    except UnicodeDecodeError:
        raise error.UnparsableMessage(f"option {int(self.number)} is not UTF-8") from None


def refuse_undecodable_string_options() -> None:
    """Make a string option that is not UTF-8 an unparsable message (process-wide; idempotent)."""
    optiontypes.StringOption.decode = _decode_utf8


class StrictOscoreSiteWrapper(OscoreSiteWrapper):
    """aiocoap's OSCORE site wrapper, refusing a malformed OSCORE option with 4.02 instead of failing on it."""

    def __init__(self, inner_site, server_credentials, counters: Counter) -> None:
        super().__init__(inner_site, server_credentials)
        self.counters = counters

    async def render_to_pipe(self, pipe) -> None:
        request = pipe.request
        if request.opt.oscore is not None:
            try:
                oscore.verify_start(request)
            except (oscore.DecodeError, IndexError) as exc:
                self.counters["oscore_refused"] += 1
                remote = getattr(request.remote, "sockaddr", ("?",))
                log.warning("refused a request from %s: malformed OSCORE option (%s)", remote[0], exc)
                if request.mtype == aiocoap.CON:
                    raise error.BadOption("Failed to decode COSE") from None
                return
        await super().render_to_pipe(pipe)
