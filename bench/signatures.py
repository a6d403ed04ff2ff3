"""What an electronic signature costs a hold + release, on SQLite (one writer, in-process).

Three ways of releasing, each after a hold of the same lot, in the same run:

- unsigned: a service acting for nobody (code embedding the lot tracker; no signature asked);
- ``os``: direct mode, the OS account signs (the signature recorded in the entry and one
  more INSERT in the same transaction);
- ``password``: a person signs with their password, checked by the identity service with
  argon2id at argon2-cffi's default cost (what pkgline stores), before the transaction.

Prints holds + releases per second and the p50/p99 of one release for each, and the machine's
load at start and end. Figures only: no goal is set for them (so no verdict).

    .venv/bin/python bench/signatures.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_printed, pct

from flows import load_library
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.passwords import Argon2Passwords
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.sql_identity import SqlIdentityStore, SqlSecurityLog
from mes.domain import commands as cmd
from mes.domain.authority import AuthMethod, Principal, Role
from mes.domain.signatures import SignatureGiven
from mes.identity import IdentityService
from mes.service import LotService
from pkgline.bootstrap import seed_flow_versions

PASSWORD = "a long enough secret"


async def run(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/bench.db")
        try:
            await upgrade(engine)  # as ``pkgline db upgrade``: the schema, and the flows
            await seed_flow_versions(engine)  # published and approved as version 1
            identity = IdentityService(SqlIdentityStore(engine), Argon2Passwords())
            owner = Principal.file_owner("bench-owner", "Bench Owner")
            await identity.add_user(
                owner, "qa1", "Quinn Quality", [Role.QUALITY], password="x" * 12
            )
            await identity.change_own_password("qa1", "x" * 12, PASSWORD)
            factory = SqlUnitOfWorkFactory(engine)
            log = SqlSecurityLog(engine)
            library = load_library()
            plain = LotService(factory, library)
            direct = LotService(factory, library, principal=owner, security=log)
            qa1 = Principal("qa1", frozenset({Role.QUALITY}), AuthMethod.SESSION)
            person = LotService(factory, library, principal=qa1, security=log, verifier=identity)
            await plain.start(cmd.StartLot("B1", "fo-organic", "bench"))

            async def unsigned(version: int) -> None:
                await plain.release(cmd.ReleaseLot("B1", "bench"))

            async def by_os(version: int) -> None:
                signed = (SignatureGiven("bench-owner", "approved release"),)
                await direct.release(cmd.ReleaseLot("B1", "bench"), signatures=signed)

            async def by_password(version: int) -> None:
                signed = (
                    SignatureGiven(
                        "qa1", "approved release", password=PASSWORD, lot_version=version
                    ),
                )
                await person.release(cmd.ReleaseLot("B1", "qa1"), signatures=signed)

            for _ in range(10):  # warm-up (connections, compiled statements), not measured
                held = await plain.hold(cmd.HoldLot("B1", "bench", "warm-up"))
                await by_os(held.lot.version)
            print(f"SQLite, one writer, {rounds} hold + release each (release latency in ms)")
            print(f"{'release':<10} {'moves/s':>8} {'p50':>8} {'p99':>8}")
            for name, release in (("unsigned", unsigned), ("os", by_os), ("password", by_password)):
                latencies = []
                start = time.perf_counter()
                for _ in range(rounds):
                    held = await plain.hold(cmd.HoldLot("B1", "bench", "bench"))
                    t0 = time.perf_counter()
                    await release(held.lot.version)
                    latencies.append((time.perf_counter() - t0) * 1000)
                elapsed = time.perf_counter() - start
                p99 = pct(latencies, 0.99)
                print(
                    f"{name:<10} {2 * rounds / elapsed:>8.1f} "
                    f"{statistics.median(latencies):>8.1f} {p99:>8.1f}"
                )
        finally:
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    rounds = parser.parse_args().rounds
    with load_printed("signatures"):
        asyncio.run(run(rounds))


if __name__ == "__main__":
    main()
