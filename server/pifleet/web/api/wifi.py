"""JSON API of the fleet's Wi-Fi (pifleet/wifi.py): the networks (keys are written, never read back), the push of
new credentials to every board, each board's network, and a paired board's access point.

Layer: web adapter over pifleet.wifi.WifiService. Reading needs a login, changing needs a writer (the guard in
app.py); the access point's password is a credential: writers only, like the keys.
"""

from __future__ import annotations

from litestar import Controller, get, post, put
from litestar.connection import ASGIConnection

from ...auth.errors import ForbiddenError
from ...auth.model import Principal
from ...errors import BoardError, InvalidError, NotFoundError
from ...wifi import AccessPointRead, BoardWifiRead, PushRead, WifiRead, WifiService, WifiWrite
from ..contract import problems


def writers_only(connection: ASGIConnection, _handler: object) -> None:
    principal = connection.state.get("principal")
    if principal is None or not principal.may_write:
        raise ForbiddenError("only a writer may see a board's access point password")


class WifiController(Controller):
    path = "/api/wifi"
    tags = ["settings"]

    @get("/", operation_id="getWifi", summary="The fleet's Wi-Fi networks (keys never shown) and each board's network")
    async def get_wifi(self, wifi_service: WifiService) -> WifiRead:
        return await wifi_service.get()

    @put(
        "/",
        operation_id="putWifi",
        summary="Set the Wi-Fi networks in order of preference (a network without psk keeps its stored key)",
    )
    async def put_wifi(self, wifi_service: WifiService, principal: Principal, data: WifiWrite) -> WifiRead:
        return await wifi_service.put(data, principal.name)

    @post(
        "/push",
        operation_id="pushWifi",
        status_code=202,
        opt=problems(InvalidError),
        summary="A new router: send the networks to every board online; each keeps its old ones until it joined",
    )
    async def push_wifi(self, wifi_service: WifiService) -> PushRead:
        return await wifi_service.push()

    @post(
        "/boards/{name:str}/refresh",
        operation_id="refreshBoardWifi",
        opt=problems(NotFoundError, BoardError),
        summary="Ask a board which network it uses now",
    )
    async def refresh_board(self, wifi_service: WifiService, name: str) -> BoardWifiRead:
        return await wifi_service.refresh(name)

    @get(
        "/ap/{name:str}",
        operation_id="getAccessPoint",
        guards=[writers_only],
        opt=problems(NotFoundError),
        summary="The access point a paired board opens when it joins no network: its SSID and WPA2 password",
    )
    async def access_point(self, wifi_service: WifiService, name: str) -> AccessPointRead:
        return await wifi_service.access_point(name)
