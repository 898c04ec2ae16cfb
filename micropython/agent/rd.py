"""Registration with the master, in the style of a CoRE Resource Directory (RFC 9176).

Layer: device side, application. It registers (POST /rd?ep=…&lt=…), keeps the registration alive with an
update every lifetime/3 seconds (each given lifetime/3 to be answered, then a fresh one), registers anew when
the master answers 4.04 (it forgot us), retries failures with capped exponential backoff, and removes the
registration on an orderly stop. It never raises into the agent's loop: a master that is away is normal, not an
error.
"""

import asyncio
import sys

from agent import coap
from agent.endpoint import RequestError
from agent.port import const, forget, print_exception, sleep_ms, wait_for_ms

# CoAP numbers (RFC 7252, 7959), inlined: agent/coap.py keeps only what the tests use by name
_CHANGED = const(68)
_NOT_FOUND = const(132)
_POST = const(2)
_URI_PATH = const(11)

_BACKOFF_MIN_MS = const(1000)
_BACKOFF_MAX_MS = const(60000)


class Registration:
    def __init__(self, endpoint, lifetime, query, links, locator):
        self.endpoint = endpoint
        # where the master is (agent/register.py's Locator, copied: the class stays out of the heap); looked for
        # again before each new registration when mdns is true
        self.ip, self.configured, self.mdns, self.found = locator.ip, locator.configured, locator.mdns, locator.found
        self.master = self.configured
        self.lookup = True  # look for the master before the next new registration (at boot, after it was silent)
        self.lifetime = lifetime
        self.query = query  # [(key, value)] of POST /rd (agent/register.py's query())
        self.links = links
        self.location = None  # 'rd/REG_ID' while registered
        self.relink = False  # the links changed in place (a role switch): the next update carries them
        self._wake = None  # set while run() sleeps between updates
        self.registrations = 0  # how often we registered anew (shown in /stats)

    async def _register(self):
        from agent import register  # registering is rare: its code is loaded for it, forgotten after

        try:
            return await register.register(self)
        finally:
            forget("register")

    async def _update(self):
        options = coap.path_options(_URI_PATH, self.location)
        response = await self.endpoint.request(self.master, _POST, options)
        if response.code == _NOT_FOUND:
            print("rd: master forgot", self.location, "- registering anew")
            self.location = None
            return True  # not a failure: register at once
        if response.code != _CHANGED:
            print("rd: update refused:", coap.code_str(response.code))
            return False
        return True

    async def run(self):
        """Stay registered for as long as the board runs."""
        backoff = _BACKOFF_MIN_MS
        while True:
            try:
                if self.location is None or self.relink:  # agent/register.py: a registration or the links
                    ok = await self._register()
                else:
                    # not while a module upload is open (agent/modules.py is loaded only then): an update's exchange
                    # beside a block took a plain ESP32's heap past 64 KiB (heap32: +2.7 KB); lifetime/3 at most
                    n = self.lifetime * 4 // 3
                    while n and "agent.modules" in sys.modules:
                        n -= 1
                        await sleep_ms(250)
                    # an update gets lifetime/3: the master takes only its first copy as heard, so one whose answer
                    # is lost is followed by a fresh one, not retransmitted for up to 93 s while our registration
                    # lapses there (a 30 % loss link: 3.5 % of updates, then a minute and a half offline)
                    ok = await wait_for_ms(self._update(), self.lifetime * 1000 // 3)
            except (RequestError, asyncio.TimeoutError) as exc:
                print("rd: master did not answer:", type(exc).__name__, exc)
                # it may have moved: find it again and register anew (updates: once they failed all through the
                # backoff, as long as one exchange did before)
                if self.mdns and (backoff == _BACKOFF_MAX_MS or not isinstance(exc, asyncio.TimeoutError)):
                    self.location = None
                    self.lookup = True
                ok = False
            except Exception as exc:  # noqa: BLE001 — registration must never stop the board
                print_exception(exc)
                ok = False
            if not ok:
                await sleep_ms(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_MS)
                continue
            backoff = _BACKOFF_MIN_MS
            if self.location is not None and not self.relink:  # new links while an update was on its way: at once
                self._wake = asyncio.Event()
                try:
                    await wait_for_ms(self._wake.wait(), self.lifetime * 1000 // 3)
                except asyncio.TimeoutError:
                    pass
                self._wake = None

    async def deregister(self, timeout_ms=3000):
        """DELETE our registration; give up quietly after timeout_ms (we are shutting down)."""
        from agent import register

        await register.deregister(self, timeout_ms)
