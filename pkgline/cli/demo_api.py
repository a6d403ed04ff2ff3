"""The demo's pkgline server: ``pkgline api`` as a child on a socket beside the demo's
database, the OS account running the demo made a pkgline user of it, and the demo's lots
started through the server as an operator's CLI would (docs/api.md)."""

from __future__ import annotations

import asyncio
import http.client
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mes.domain.authority import Principal, Role
from mes.domain.durables import KINDS as DURABLE_KINDS
from mes.domain.durables import DurableKind
from mes.domain.materials import KINDS as MATERIAL_KINDS
from mes.domain.materials import MaterialKind
from pkgline.bootstrap import os_account
from pkgline.cli.remote import Server, Unreachable, request

if TYPE_CHECKING:
    from drivers.config import ToolConfig


def socket_path(database: Path) -> Path:
    return database.with_name(f"{database.stem}.api.sock")


@dataclass(frozen=True, slots=True)
class DemoUser:
    name: str
    password: str = field(repr=False)
    """Made for this run, shown once on the demo's terminal; only its argon2id hash is
    stored (no default password: every demo database has its own)."""


async def add_demo_user(url: str) -> DemoUser:
    """Make the OS account running the demo a pkgline user (operator, engineer, quality) of
    the demo's fresh database, so that the server knows it on its socket, with a password
    generated for this run for the operator station's login."""
    from pkgline.bootstrap import open_identity

    account = os_account()
    password = secrets.token_urlsafe(12)
    async with open_identity(url) as identity:
        roles = [Role.OPERATOR, Role.ENGINEER, Role.QUALITY]
        await identity.add_user(
            Principal.file_owner(account), account, account, roles, password=password
        )
    return DemoUser(account, password)


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the station's; the server binds it right after)."""
    from simulators.ports import free_loopback_ports

    return free_loopback_ports(1)[0]


async def wait_for_server(server: Server, within_s: float, alive: Any) -> None:
    """Until the server answers /health (``alive()`` false: it exited; TimeoutError)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the pkgline server exited")
        try:
            answer = await asyncio.to_thread(request, server, "GET", "/health")
        except Unreachable:
            answer = None
        if answer is not None and answer.status == 200:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the pkgline server did not answer")


async def wait_for_station(port: int, within_s: float, alive: Any) -> None:
    """Until the server answers /health on the station's port of 127.0.0.1 (``alive()``
    false: it exited; TimeoutError). Its socket answering is not enough: the server exits
    when another process took the station's port, maybe after its socket answered."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the pkgline server exited")
        if await asyncio.to_thread(_answers_health, port):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the pkgline server did not answer on 127.0.0.1:{port}")


def _answers_health(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


async def start_lot(server: Server, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """POST /lots through the server: the lot as it answers, and who it took the demo for;
    a refusal raises RuntimeError with the server's message."""
    answer = await asyncio.to_thread(request, server, "POST", "/lots", body)
    if answer.status != 201:
        message = answer.body.get("message") if isinstance(answer.body, dict) else answer.body
        raise RuntimeError(f"the server refused to start {body['lot']}: {message}")
    started: dict[str, Any] = answer.body
    return started, answer.principal


DURABLES: dict[DurableKind, tuple[str, int]] = {
    DurableKind.CAPILLARY: ("CAP", 1_500_000),
    DurableKind.SAW_BLADE: ("BLADE", 20_000),
    DurableKind.MOLD_CHASE: ("CHASE", 2_000),
    DurableKind.STENCIL: ("STENCIL", 50_000),
    DurableKind.NOZZLE: ("NOZZLE", 200_000),
}
"""The demo's durables: the prefix of their ids and their life in their kind's unit, of the
order a line sets (a capillary 1.5 million touchdowns, a saw blade 20,000 cuts, a mold
chase cleaned every 2,000 shots, a stencil 50,000 prints, a nozzle 200,000)."""

MATERIALS: dict[MaterialKind, str] = {
    MaterialKind.MOLD_COMPOUND: "EMC",
    MaterialKind.DIE_ATTACH_FILM: "DAF",
    MaterialKind.ADHESIVE: "ADH",
    MaterialKind.SOLDER_BALLS: "SB",
    MaterialKind.WIRE: "WIRE",
}
"""The prefix of the demo's material lots' ids, by kind."""

MATERIAL_SHELF_LIFE = timedelta(days=180)


@dataclass(frozen=True, slots=True)
class Equipped:
    durables: int
    materials: int


def material_kinds_by_tool(tools: Sequence[ToolConfig]) -> dict[str, list[MaterialKind]]:
    """Which material kinds the demo loads on each tool: those of its class, spread over the
    class's tools in turn where it has several (a die attach film on DB-1, an adhesive on
    DB-2), all of them on a class's only tool."""
    by_class: dict[str, list[str]] = {}
    for tool in tools:
        by_class.setdefault(str(tool.equipment_class), []).append(tool.id)
    loads: dict[str, list[MaterialKind]] = {}
    for equipment_class, ids in by_class.items():
        kinds = [k for k, spec in MATERIAL_KINDS.items() if spec.equipment_class == equipment_class]
        if not kinds:
            continue
        for i, tool_id in enumerate(sorted(ids)):
            loads[tool_id] = kinds if len(ids) == 1 else [kinds[i % len(kinds)]]
    return loads


@dataclass(frozen=True, slots=True)
class DemoReason:
    """A reason code of the demo's catalogue (``pkgline reason add CODE --kind K --text T
    [--release-by ROLE]``)."""

    code: str
    kind: str
    text: str
    release_by: tuple[str, ...] = ()

    def body(self) -> dict[str, Any]:
        """The code as ``POST /reasons`` takes it."""
        return {
            "code": self.code,
            "kind": self.kind,
            "text": self.text,
            "release_by": list(self.release_by),
        }


REASON_CODES = (
    DemoReason("VOID", "hold", "voids at X-ray inspection", ("engineer",)),
    DemoReason("CONTAM", "hold", "contamination or foreign material on the strip", ("quality",)),
    DemoReason("RECALL", "hold", "material recall (a quarantined material lot)", ("quality",)),
    DemoReason("CUSTOMER", "hold", "customer request"),
    DemoReason("DROP", "scrap", "dropped carrier"),
    DemoReason("CRACK", "scrap", "cracked die or substrate"),
)
"""The demo's hold and scrap reason codes, added through the server as quality would before
the first shift, so that a hold, a scrap and a material lot's quarantine can be tried on the
demo's line with a code (``lot hold --code``, ``material quarantine --code RECALL``) without
making a catalogue first. A hold with VOID is released by an engineer, one with CONTAM or
RECALL by quality (``release_by``: contamination, as a recall, is quality's to judge before the
lot goes on), one with CUSTOMER by anyone who may release a hold."""


@dataclass(frozen=True, slots=True)
class DemoChart:
    """The SPC chart the demo sets, with limits given (``pkgline spc chart STEP VALUE --tool
    T --center C --sigma S``)."""

    step: str
    value: str
    tool: str
    center: float
    sigma: float

    def body(self) -> dict[str, Any]:
        """The chart as ``POST /spc/charts`` takes it: a lot chart, rules 1-4."""
        return {
            "step": self.step,
            "value": self.value,
            "tool": self.tool,
            "center": self.center,
            "sigma": self.sigma,
        }


SPC_CHART = DemoChart("FILL", "mold_temperature_c", "MOLD-1", center=150.0, sigma=1.6)
"""The molder's temperature at FILL, charted so that the station's SPC page shows a chart
with the demo's points. It is fitted to the simulators, so no demo lot is held by a rule:
the center is the FILL recipe's 150 degC, which the simulated molder measures with a noise of
0.8 degC a carrier (simulators/profiles.yaml), and a lot's point is the mean of its two
carriers (0.57 degC); a sigma of 1.6, twice a carrier's noise, puts rule 1 beyond 8 of the
points' own sigmas and rule 3 beyond 2.8 (a chance of about 1e-9 in a run). The demo's lots
run FILL seven times, fewer than the eight points in a row rule 4 needs
(tests/cli/test_demo_spc.py checks all of this against the flows and the profiles)."""


async def _post(server: Server, path: str, body: dict[str, Any], expect: int = 200) -> None:
    answer = await asyncio.to_thread(request, server, "POST", path, body)
    if answer.status != expect:
        message = answer.body.get("message") if isinstance(answer.body, dict) else answer.body
        raise RuntimeError(f"the server refused POST {path}: {message}")


async def equip_line(server: Server, tools: Sequence[ToolConfig]) -> Equipped:
    """Through the server, as an engineer would before a shift: on every tool a durable of
    each kind its class takes (``durable add`` and ``mount``), and material lots of its
    class's kinds (``material add``, ``thaw`` for frozen kinds, ``load``), so the lots'
    track-ins check them, their track-outs count on the durables and each lot records the
    material lots that went into it (``lot genealogy``). The frozen kinds are given a thaw
    time of 0: the demo's compound and films are taken as thawed ahead of the run. A refusal
    raises RuntimeError with the server's message."""
    durables = materials = 0
    expires = (datetime.now(UTC) + MATERIAL_SHELF_LIFE).isoformat()
    loads = material_kinds_by_tool(tools)
    for tool in sorted(tools, key=lambda t: t.id):
        for kind, spec in DURABLE_KINDS.items():
            if spec.equipment_class != tool.equipment_class:
                continue
            prefix, life = DURABLES[kind]
            durable = f"{prefix}-{tool.id}"[:32]
            body = {"durable": durable, "kind": kind.value, "life": life}
            await _post(server, "/durables", body, 201)
            await _post(server, f"/durables/{durable}/mount", {"tool": tool.id})
            durables += 1
        for mkind in loads.get(tool.id, []):
            material = f"{MATERIALS[mkind]}-{tool.id}"[:32]
            add: dict[str, Any] = {"material": material, "kind": mkind.value, "expires_at": expires}
            if MATERIAL_KINDS[mkind].frozen:
                add["thaw_minutes"] = 0
            await _post(server, "/materials", add, 201)
            if MATERIAL_KINDS[mkind].frozen:
                await _post(server, f"/materials/{material}/thaw", {})
            await _post(server, f"/materials/{material}/load", {"tool": tool.id})
            materials += 1
    return Equipped(durables, materials)


async def add_reason_codes(server: Server, codes: Sequence[DemoReason] = REASON_CODES) -> None:
    """Add the demo's reason codes through the server, as quality would (``pkgline reason
    add``). A refusal raises RuntimeError with the server's message."""
    for code in codes:
        await _post(server, "/reasons", code.body(), 201)


async def chart_spc(server: Server, chart: DemoChart = SPC_CHART) -> None:
    """Set the demo's SPC chart through the server, as a process engineer would (``pkgline
    spc chart``): each track-out of a lot at the chart's step on its tool adds a point. A
    refusal raises RuntimeError with the server's message."""
    await _post(server, "/spc/charts", chart.body())
