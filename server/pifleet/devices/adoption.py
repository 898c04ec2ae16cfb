"""Adoption: a board that runs the agent but has no identity here gets one only after a person confirms it.

Layer: service (no litestar, no aiocoap). The board prints a short code on its console and announces itself
with its MAC, a fresh nonce and proof = SHA-256("proof" ‖ K), where K is stretched from the nonce and the code
(the code itself never travels). The dashboard lists it as waiting; a person types the code read off the
console; the master recomputes the proof. A wrong code is refused and counted (MAX_ATTEMPTS, then the adoption
is locked until the board reboots with a new code). The right code creates the identity — device id from the
MAC and a fresh secret (identity.py's one scheme and secret maker), the name and role given — and the board's
next announcement gets it sealed under keys derived from K: AES-128-CBC, then HMAC-SHA-256 over IV ‖ ciphertext.
The board's agent (agent/adopt.py) does the same derivation in MicroPython. Threat model and sizes: docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re

import asyncpg
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import ConflictError, InvalidError, NotFoundError, PifleetError
from ..events import EventHub
from ..model import AdoptionRead
from ..storage import adoptions as q
from ..storage import devices as devices_q
from .identity import device_id_for, new_secret
from .link import Paired

log = logging.getLogger(__name__)

# Crockford's base32: no I, L, O, U, so what a person reads off a console is what they type.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8  # 40 bits (docs/security.md says why)
ROUNDS = 10000  # key stretching: a guess costs this many SHA-256 blocks, on the board ~0.3 s once
NONCE_LENGTH = 16
MAX_ATTEMPTS = 5  # wrong codes per announcement before the adoption is locked
MAX_WAITING = 32  # boards waiting at once; more announcements are refused until some are decided
WAITING_FRESH_S = 600  # a waiting board not heard from for this long no longer counts against MAX_WAITING
POLL_S = 3  # how often a waiting board asks again

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class AdoptionBusyError(PifleetError):
    """Too many boards are waiting for adoption."""

    status = 503
    title = "Too many boards waiting"


def normalize_code(text: str) -> str:
    """What a person typed, as the board printed it: case and dashes ignored, O/I/L read as 0/1/1."""
    code = text.upper().replace("-", "").replace(" ", "").translate(str.maketrans("OIL", "011"))
    if len(code) != CODE_LENGTH or any(c not in ALPHABET for c in code):
        raise InvalidError(f"the code has {CODE_LENGTH} characters from {ALPHABET}", field="code")
    return code


def stretch(code: str, nonce: bytes, rounds: int = ROUNDS) -> bytes:
    """K: the key both sides derive from the code and the board's nonce."""
    k = hashlib.sha256(b"pifleet-adopt\x00" + nonce + code.encode()).digest()
    for _ in range(rounds):
        k = hashlib.sha256(k + nonce).digest()
    return k


def proof_of(k: bytes) -> bytes:
    return hashlib.sha256(b"proof" + k).digest()


def seal(k: bytes, identity: dict) -> dict[str, str]:
    """Encrypt-then-MAC the identity for the board that knows K."""
    enc_key = hashlib.sha256(b"enc" + k).digest()[:16]
    mac_key = hashlib.sha256(b"mac" + k).digest()
    plain = json.dumps(identity, separators=(",", ":")).encode()
    pad = 16 - len(plain) % 16
    plain += bytes([pad]) * pad
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
    box = encryptor.update(plain) + encryptor.finalize()
    tag = hmac.new(mac_key, iv + box, hashlib.sha256).digest()
    return {"iv": iv.hex(), "box": box.hex(), "tag": tag.hex()}


class Announcement:
    """What a board says in POST /pair (decoded and checked by the gateway)."""

    def __init__(
        self,
        *,
        mac: str,
        chip: str,
        nonce: bytes,
        proof: bytes,
        firmware: str | None = None,
        mpy: int | None = None,
        agent_version: str | None = None,
    ) -> None:
        if not _MAC.match(mac):
            raise InvalidError("mac must look like aa:bb:cc:dd:ee:ff", field="mac")
        if len(nonce) != NONCE_LENGTH:
            raise InvalidError(f"nonce must be {NONCE_LENGTH} bytes", field="nonce")
        if len(proof) != 32:
            raise InvalidError("proof must be 32 bytes", field="proof")
        self.mac, self.chip, self.nonce, self.proof = mac, chip[:40], nonce, proof
        self.firmware, self.mpy, self.agent_version = firmware, mpy, agent_version


class AdoptionService:
    def __init__(self, pool: asyncpg.Pool, hub: EventHub, paired: Paired | None = None) -> None:
        self.pool = pool
        self.hub = hub
        # called with the device id once a board got an identity: the gateway learns its OSCORE keys
        self.on_paired = paired

    async def announce(self, a: Announcement, address: str, port: int) -> tuple[str, dict | None]:
        """A board without identity asks; answer (state, sealed identity or None). Only 'adopted' carries one."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await q.get_by_mac(conn, a.mac)
            if row is None or row["nonce"] != a.nonce:
                if row is None or row["state"] != "waiting":
                    if await q.count_waiting(conn, WAITING_FRESH_S) >= MAX_WAITING:
                        raise AdoptionBusyError(f"{MAX_WAITING} boards are waiting for adoption already")
                row = await q.start(
                    conn,
                    mac=a.mac,
                    chip=a.chip,
                    nonce=a.nonce,
                    proof=a.proof,
                    address=address,
                    port=port,
                    firmware=a.firmware,
                    mpy=a.mpy,
                    agent_version=a.agent_version,
                )
                log.info("board %s (%s) at %s waits for adoption", a.mac, a.chip, address)
                self.hub.publish("adoptions")
            elif row["proof"] != a.proof:
                # same nonce, other proof: not the board that announced it
                raise InvalidError("proof does not match this nonce's announcement", field="proof")
            state = row["state"]
            sealed = None
            if state == "adopted":
                sealed = await self._sealed_identity(conn, row)
                if sealed is None:  # the device was deleted meanwhile: wait for a new decision
                    state = "waiting"
                    await q.decide(conn, row["id"], "waiting")
                    self.hub.publish("adoptions")
                elif row["delivered_at"] is None:
                    log.info("board %s fetched its identity %s", a.mac, row["device_id"])
                    self.hub.publish("adoptions")
            await q.seen(conn, row["id"], address, port, delivered=sealed is not None)
        return state, sealed

    async def _sealed_identity(self, conn, row) -> dict | None:
        identity = await q.device_identity(conn, row["device_id"])
        if identity is None or row["key"] is None:
            return None
        return seal(
            row["key"],
            {
                "device_id": identity["id"],
                "name": identity["name"],
                "role": identity["role"] or "",
                "secret": identity["secret"].hex(),
                "oscore_id": identity["oscore_id"].hex(),
            },
        )

    async def list(self, pending_only: bool = False) -> list[AdoptionRead]:
        states = ("waiting",) if pending_only else ("waiting", "adopted", "rejected", "locked")
        return await q.list_adoptions(self.pool, states)

    async def confirm(
        self, adoption_id: int, code: str, name: str | None = None, role: str | None = None
    ) -> AdoptionRead:
        code = normalize_code(code)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await q.get(conn, adoption_id, for_update=True)
            if row is None:
                raise NotFoundError(f"no adoption {adoption_id}", field="id")
            if row["state"] != "waiting":
                raise ConflictError(f"adoption {adoption_id} is {row['state']}, not waiting", field="id")
            k = stretch(code, row["nonce"])
            if not hmac.compare_digest(proof_of(k), row["proof"]):
                row = await q.wrong_code(conn, adoption_id, MAX_ATTEMPTS)
                log.warning("wrong adoption code for board %s (%d of %d)", row["mac"], row["attempts"], MAX_ATTEMPTS)
                self.hub.publish("adoptions")
                left = MAX_ATTEMPTS - row["attempts"]
                wrong = InvalidError(
                    "wrong code; "
                    + (f"{left} attempts left" if left > 0 else "adoption locked: restart the board for a new code"),
                    field="code",
                )
            else:
                wrong = None
                device_id = device_id_for(row["mac"])
                given = await devices_q.record_identity(
                    conn,
                    device_id=device_id,
                    name=name or device_id,
                    role=role,
                    mac=row["mac"],
                    secret=new_secret(),
                    oscore_id=await devices_q.next_oscore_id(conn),
                )
                row = await q.decide(conn, adoption_id, "adopted", device_id, k)
                log.info("board %s adopted as %s (%s)", row["mac"], given, device_id)
        if wrong is not None:
            raise wrong  # after the commit: the attempt stays counted
        self.hub.publish("adoptions")
        self.hub.publish("devices")
        if self.on_paired is not None:
            await self.on_paired(device_id)
        return q._read(row)

    async def reject(self, adoption_id: int) -> AdoptionRead:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await q.get(conn, adoption_id, for_update=True)
            if row is None:
                raise NotFoundError(f"no adoption {adoption_id}", field="id")
            if row["state"] == "adopted":
                raise ConflictError(f"adoption {adoption_id} is adopted already", field="id")
            row = await q.decide(conn, adoption_id, "rejected")
        log.info("board %s rejected", row["mac"])
        self.hub.publish("adoptions")
        return q._read(row)
