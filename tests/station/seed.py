"""A line for the station's tests: a migrated SQLite database with two tools (one running
a lot, one with an alarm and a die attach job done), lots in several states, rejected sites,
and five people with passwords (an operator, a technician, an admin, a quality engineer, a
process engineer)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.passwords import Argon2Passwords
from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER, Principal, Role
from mes.domain.equipment import (
    ControllerRecord,
    DispatchMode,
    ToolRegistration,
    ToolSnapshot,
)
from pkgline.api.auth import ApiState
from simulators.ports import free_loopback_ports

OWNER = Principal.file_owner("test-owner")
PASSWORDS = {
    "olga": "olga-Pa55word-1",
    "tom": "tom-Pa55word-2",
    "ada": "ada-Pa55word-3",
    "quinn": "quinn-Pa55word-4",
    "erin": "erin-Pa55word-5",
}
"""The test people's passwords (made up for the tests, hashed in the database)."""


def fast_passwords() -> Argon2Passwords:
    """argon2id at a small cost: the tests hash and check passwords."""
    return Argon2Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def free_port() -> int:
    return free_loopback_ports(1)[0]


def _running_controller() -> ControllerRecord:
    """line-1's controller, running, its heartbeat now."""
    now = datetime.now(UTC)
    return ControllerRecord(
        "line-1", "test", os.getpid(), now, now, "running", ("PREP-1", "DA-1", "WB-1")
    )


async def beat(db: str) -> None:
    """line-1's controller's heartbeat, now: the seed's goes stale after STALE_AFTER_S
    (15 s), and a loaded machine can take longer than that to start the server or to reach
    a test of the module's; then the line shows its tools as last recorded, not live. A
    test that checks what a running controller's tools show beats first."""
    from pkgline.bootstrap import open_services

    async with open_services(db) as services:
        await services.equipment.acting_as(CONTROLLER).heartbeat(_running_controller())


async def migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def seed(state: ApiState) -> None:
    """The line the tests look at (see the module docstring)."""
    identity = state.identity
    await identity.add_user(
        OWNER, "olga", "Olga Operator", [Role.OPERATOR, Role.QUALITY], password="olga-Initial-0"
    )
    # a password an admin set does not sign: Olga sets her own (pkgline user passwd --own)
    await identity.change_own_password("olga", "olga-Initial-0", PASSWORDS["olga"])
    await identity.add_user(
        OWNER, "tom", "Tom Technician", [Role.TECHNICIAN], password=PASSWORDS["tom"]
    )
    await identity.add_user(OWNER, "ada", "Ada Admin", [Role.ADMIN], password=PASSWORDS["ada"])
    # a second signer where [signatures] two_signers asks for two (her own password)
    await identity.add_user(
        OWNER, "quinn", "Quinn Quality", [Role.QUALITY], password="quinn-Initial-0"
    )
    await identity.change_own_password("quinn", "quinn-Initial-0", PASSWORDS["quinn"])
    # an engineer, who reworks (her own password: she signs)
    await identity.add_user(
        OWNER, "erin", "Erin Engineer", [Role.ENGINEER], password="erin-Initial-0"
    )
    await identity.change_own_password("erin", "erin-Initial-0", PASSWORDS["erin"])
    services = state.services
    equipment = services.equipment.acting_as(CONTROLLER)
    await equipment.register(
        "line-1",
        [
            ToolRegistration("PREP-1", "substrate_prep", "127.0.0.1:1502", ("SUBSTRATE_PREP",)),
            ToolRegistration("DA-1", "die_bonder", "127.0.0.1:1503", ("DIE_ATTACH",)),
            ToolRegistration("WB-1", "wire_bonder", "127.0.0.1:1504", ("WIRE_BOND",)),
        ],
    )
    now = datetime.now(UTC)
    await equipment.heartbeat(_running_controller())
    lots = services.lots.acting_as(OWNER)
    for lot_id in ("S-1", "S-2", "S-3"):
        await lots.start(
            cmd.StartLot(
                lot_id=lot_id,
                flow="fo-organic",
                user="olga",
                carriers=2,
                site_rows=4,
                site_cols=8,
                params={"layers": 3},
                priority=3,
            )
        )
    # S-1: one step done with two rejected sites on carrier 1, waiting for the next
    await lots.track_in(cmd.TrackIn("S-1", "SUBSTRATE_PREP", "olga", None, {}))
    await lots.track_out(
        cmd.TrackOut(
            "S-1",
            "olga",
            {},
            (cmd.SiteRejectGiven("1", 2, 3, "VOID"), cmd.SiteRejectGiven("1", 4, 8, "CRACK")),
        )
    )
    # S-4: die attach done on DA-1 by its jobs, one die missing; DA-1 in manual (by hand)
    await services.equipment.acting_as(OWNER).set_dispatch(
        "DA-1", DispatchMode.MANUAL, "olga", "seeded by hand"
    )
    await lots.start(
        cmd.StartLot(
            lot_id="S-4",
            flow="fo-organic",
            user="olga",
            carriers=2,
            site_rows=4,
            site_cols=8,
            params={"layers": 3},
        )
    )
    await lots.track_in(cmd.TrackIn("S-4", "SUBSTRATE_PREP", "olga", None, {}))
    await lots.track_out(cmd.TrackOut("S-4", "olga", {}, ()))
    idle = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
    await equipment.report("DA-1", idle)
    expires = now + timedelta(days=30)  # the adhesive on DA-1 goes into S-4 (its genealogy)
    await services.materials.add("ADH-7", "adhesive", expires, "tom", thaw_minutes=0, by=OWNER)
    await services.materials.thaw("ADH-7", "tom", by=OWNER)
    await services.materials.load("ADH-7", "DA-1", "tom", by=OWNER)
    # tracked in as DA-1's line controller does: a step tracked in by hand is the operator's
    # to track out, and no tool job runs it (mes.domain.jobs.start_job)
    await lots.track_in(cmd.TrackIn("S-4", "DIE_ATTACH", "olga", "DA-1", {}, dispatched=True))
    await equipment.report(
        "DA-1",
        ToolSnapshot(
            connected=True,
            e10="productive",
            process_state="EXECUTING",
            mode="PRODUCTION",
            lot_id="S-4",
        ),
    )
    # one job per carrier on DA-1 (the tool page's recent jobs); the second tracks S-4 out
    measured = {"xy_offset_um": 4.2, "bond_line_thickness_um": 22.0}
    first, second = (await lots.get("S-4")).carriers
    await lots.start_job(cmd.StartJob("S-4", "S-4-DA-1", "DA-1", first, "olga"))
    await lots.record_job(cmd.RecordJob("S-4-DA-1", "olga", measured, ()))
    await lots.start_job(cmd.StartJob("S-4", "S-4-DA-2", "DA-1", second, "olga"))
    missing = (cmd.SiteRejectGiven(second, 1, 1, "MISSING_DIE"),)
    await lots.record_job(cmd.RecordJob("S-4-DA-2", "olga", measured, missing))
    await equipment.report("DA-1", idle)
    # C-1: a short flow run to its end (completed today: the line's lots per hour)
    await lots.start(
        cmd.StartLot(
            lot_id="C-1", flow="stiffener-bga", user="olga", carriers=1, site_rows=4, site_cols=8
        )
    )
    while steps := lots.next_in_order(await lots.get("C-1")):
        await lots.track_in(cmd.TrackIn("C-1", steps[0], "olga", None, {}))
        await lots.track_out(cmd.TrackOut("C-1", "olga", {}, ()))
    # S-2: running on PREP-1; S-3: held by an operator
    await lots.track_in(cmd.TrackIn("S-2", "SUBSTRATE_PREP", "olga", None, {}))
    await lots.hold(cmd.HoldLot("S-3", "olga", "voids at incoming inspection"))
    await equipment.report(
        "PREP-1",
        ToolSnapshot(
            connected=True,
            e10="productive",
            process_state="EXECUTING",
            mode="PRODUCTION",
            lot_id="S-2",
            job_id="S-2-1",
            sites_done=12,
            sites_total=32,
        ),
    )
    await equipment.report(
        "DA-1",
        ToolSnapshot(
            connected=True,
            e10="unscheduled_down",
            process_state="ALARM",
            mode="PRODUCTION",
            alarm={"code": 17, "text": "bond head vacuum low"},
        ),
    )
    # What is on the tools (the tool page): a capillary and wire on WB-1; on DA-1 the adhesive
    # S-4 got, and, after its jobs, a die attach film taken out of the freezer just now
    # (thawing for its hour: a track-in on DA-1 would be refused for it)
    await services.durables.add("CAP-7", "capillary", 100_000, "tom", by=OWNER)
    await services.durables.mount("CAP-7", "WB-1", "tom", by=OWNER)
    await services.materials.add("WIRE-7", "wire", expires, "tom", by=OWNER)
    await services.materials.load("WIRE-7", "WB-1", "tom", by=OWNER)
    for shelf in ("WIRE-8", "WIRE-9"):  # on the shelf
        await services.materials.add(shelf, "wire", expires, "tom", by=OWNER)
    await services.materials.add("DAF-7", "die_attach_film", expires, "tom", by=OWNER)
    await services.materials.thaw("DAF-7", "tom", by=OWNER)
    await services.materials.load("DAF-7", "DA-1", "tom", by=OWNER)
