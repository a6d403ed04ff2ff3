"""Lot moves per second and ``lot show`` latency through the pkgline server, against the same
operations called in-process on the service layer, in the same run (issue 14).

The server is the real ``pkgline api`` as a child process on a Unix socket in a scratch
directory, on a SQLite file of its own; its clients are 1 and 8 threads of this process, each
request a new connection with the CLI's own client (``pkgline.cli.remote``: http.client over
the socket). In-process: the same calls on ``LotService`` (1 and 8 tasks) on another SQLite
file. A move is a track-in of the client's own lot or the abort of that step: one
transaction that reads the lot, checks the flow, updates it and appends one history and one
outbox row, with the principal's role checked (a release would need an electronic signature,
which the server does not take yet). ``lot show`` is GET /lots/{id} against ``LotService.report``,
of a lot with 401 history entries moved before the rounds. Then ``pkgline lot show X --json``
of that lot end to end, through the server and in direct mode, against
``python -c pass`` from the same venv.

Goal: 8 clients through the server at 0.5 of in-process moves/s or better; the CLI's
``lot show --json`` p50 under 0.25 s.

    .venv/bin/python bench/api.py [--moves N] [--shows N] [--cli-runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_seconds, load_printed, pct, print_verdict

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.passwords import Argon2Passwords
from mes.adapters.sql_identity import SqlIdentityStore
from mes.domain import commands as cmd
from mes.domain.authority import Principal, Role
from mes.identity import IdentityService
from pkgline.bootstrap import os_account, seed_flow_versions, services_for
from pkgline.cli.remote import Server, _UnixConnection, request

OWNER = Principal.file_owner("bench")
FLOW = {"flow": "fo-organic", "params": {"layers": "3"}}
SHOWN = "SHOW-1"
"""The lot ``lot show`` reads: moved 200 times before the rounds, never during them."""


async def prepare(url: str, lots: int) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)  # as ``pkgline db upgrade``: the schema, the flows published
        await seed_flow_versions(engine)  # and approved as version 1 (lots read versions)
        identity = IdentityService(SqlIdentityStore(engine), Argon2Passwords())
        await identity.add_user(OWNER, os_account(), "Bench", [Role.OPERATOR, Role.QUALITY])
        service = services_for(engine, OWNER).lots
        for n in range(lots):
            await service.start(
                cmd.StartLot(f"B{n}", FLOW["flow"], "bench", params={"layers": "3"})
            )
        # the lot that lot show reads: 401 history entries, whatever the rounds of moves do
        await service.start(cmd.StartLot(SHOWN, FLOW["flow"], "bench", params={"layers": "3"}))
        for _ in range(200):
            await service.track_in(cmd.TrackIn(SHOWN, "SUBSTRATE_PREP", "bench"))
            await service.abort(cmd.AbortStep(SHOWN, "bench", "bench"))
    finally:
        await engine.dispose()


def kept_alive(server: Server) -> Callable[[str, str, dict[str, Any]], int]:
    """A client program's requests: one connection kept open (HTTP/1.1 keep-alive) for all
    of them, the body and answer as JSON; each call gives the answer's status."""
    assert server.socket_path is not None
    conn = _UnixConnection(server.socket_path, 30.0)
    headers = {"accept": "application/json", "content-type": "application/json"}

    def send(method: str, path: str, body: dict[str, Any]) -> int:
        conn.request(method, path, body=json.dumps(body).encode(), headers=headers)
        response = conn.getresponse()
        json.loads(response.read())
        return response.status

    return send


def through_server(
    server: Server, clients: int, moves: int, *, keep_alive: bool = False
) -> tuple[float, list[float]]:
    """moves/s and per-move latencies (s) of ``clients`` threads, ``moves`` in all: each
    request on a connection of its own, as the CLI makes them, or with ``keep_alive`` on one
    connection per client, as a program talking to the server makes them."""
    latencies: list[float] = []
    lock = threading.Lock()
    each = moves // clients

    def client(n: int) -> None:
        mine: list[float] = []
        send = kept_alive(server) if keep_alive else None
        for i in range(each):
            op = "track-in" if i % 2 == 0 else "abort"
            body = {"step": "SUBSTRATE_PREP"} if op == "track-in" else {"reason": "bench"}
            t0 = time.perf_counter()
            if send is not None:
                status = send("POST", f"/lots/B{n}/{op}", body)
            else:
                answer = request(server, "POST", f"/lots/B{n}/{op}", body)
                status = answer.status
            mine.append(time.perf_counter() - t0)
            assert status == 200, (op, status)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.perf_counter() - start), latencies


async def in_process(url: str, clients: int, moves: int) -> tuple[float, list[float]]:
    engine = create_engine(url, pool_size=max(5, clients))
    lots = services_for(engine, OWNER).lots
    who = Principal(os_account(), frozenset({Role.OPERATOR, Role.QUALITY}), OWNER.method)
    latencies: list[float] = []
    each = moves // clients

    async def client(n: int) -> None:
        for i in range(each):
            t0 = time.perf_counter()
            if i % 2 == 0:
                await lots.track_in(cmd.TrackIn(f"B{n}", "SUBSTRATE_PREP", who.name), by=who)
            else:
                await lots.abort(cmd.AbortStep(f"B{n}", who.name, "bench"), by=who)
            latencies.append(time.perf_counter() - t0)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        return len(latencies) / (time.perf_counter() - start), latencies
    finally:
        await engine.dispose()


async def shows_in_process(url: str, shows: int) -> list[float]:
    engine = create_engine(url)
    lots = services_for(engine, OWNER).lots
    out = []
    try:
        for _ in range(shows):
            t0 = time.perf_counter()
            await lots.report(SHOWN, by=OWNER)
            out.append(time.perf_counter() - t0)
    finally:
        await engine.dispose()
    return out


def timed(run: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        run()
        out.append(time.perf_counter() - t0)
    return out


def line(what: str, rate: float | None, lat: list[float], cpu: float | None = None) -> str:
    """One printed row; ``cpu``: the server's (or in-process) CPU seconds per move."""
    rate_s = f"{rate:8.1f}" if rate is not None else " " * 8
    cpu_s = f"  CPU/move {cpu * 1000:5.2f} ms" if cpu is not None else ""
    return (
        f"  {what:<40} {rate_s}  p50 {pct(lat, 0.5) * 1000:7.1f} ms"
        f"  p99 {pct(lat, 0.99) * 1000:7.1f} ms{cpu_s}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=400, help="moves per configuration")
    parser.add_argument("--shows", type=int, default=100)
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of moves")
    args = parser.parse_args()
    if args.moves < 16 or args.moves % 16:
        # 8 clients, each alternating track-in and abort on a lot of its own: each must end
        # with an abort, its lot waiting again for the next configuration
        parser.error(
            f"--moves must be a multiple of 16 (8 clients, an even count each), not {args.moves}"
        )
    with load_printed("api"), tempfile.TemporaryDirectory(prefix="pkgline-bench-api-") as tmp:
        served, local = f"sqlite:///{tmp}/served.db", f"sqlite:///{tmp}/local.db"
        asyncio.run(prepare(served, 8))
        asyncio.run(prepare(local, 8))
        sock = Path(tmp) / "api.sock"
        child = subprocess.Popen(
            [sys.executable, "-m", "pkgline", "api", "--db", served, "--socket", str(sock),
             "--log-level", "warning"],
        )  # fmt: skip
        try:
            server = Server(f"unix://{sock}", socket_path=str(sock))
            deadline = time.monotonic() + 60
            while not sock.exists():
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("pkgline api did not start")
                time.sleep(0.05)
            print(
                f"lot moves (track-in/abort) and lot show, SQLite, {args.moves} moves each, "
                f"{args.rounds} rounds of in-process, then the API with connections kept alive, "
                "then one connection per request"
            )
            print(f"  {'':<40} {'moves/s':>8}")
            ratios: dict[tuple[str, int], list[float]] = {}
            for round_ in range(1, args.rounds + 1):
                for clients in (1, 8):
                    before = time.process_time()
                    base, lat = asyncio.run(in_process(local, clients, args.moves))
                    spent = (time.process_time() - before) / len(lat)
                    print(line(f"{round_}: in-process, {clients} task(s)", base, lat, spent))
                    for how, keep in (("kept-alive", True), ("one per request", False)):
                        before = cpu_seconds(child.pid)
                        rate, lat = through_server(server, clients, args.moves, keep_alive=keep)
                        spent = (cpu_seconds(child.pid) - before) / len(lat)
                        print(line(f"{round_}: API, {clients} client(s), {how}", rate, lat, spent))
                        ratios.setdefault((how, clients), []).append(rate / base)
            for (how, clients), found in ratios.items():
                print(
                    f"  ratio API / in-process, {clients} client(s), {how}: median "
                    f"{statistics.median(found):.2f} (each round: "
                    f"{', '.join(f'{r:.2f}' for r in found)})"
                )
            ratio8 = statistics.median(ratios[("kept-alive", 8)])
            print_verdict(
                "8 clients >= 0.5 of in-process moves/s (kept-alive, median of the rounds)",
                ratio8 >= 0.5,
                f"{ratio8:.2f}",
            )
            show_local = asyncio.run(shows_in_process(local, args.shows))
            show_api = timed(lambda: request(server, "GET", f"/lots/{SHOWN}"), args.shows)
            print(line("lot show, in-process", None, show_local))
            print(line("lot show, API (Unix socket)", None, show_api))

            env = {**os.environ}
            env.pop("PKGLINE_SERVER", None)
            env.pop("PKGLINE_DB", None)
            venv = [sys.executable]

            def cli(*extra: str) -> None:
                subprocess.run([*venv, "-m", "pkgline", "lot", "show", SHOWN, "--json", *extra],
                               check=True, capture_output=True, env=env)  # fmt: skip

            bare = timed(lambda: subprocess.run([*venv, "-c", "pass"], check=True), args.cli_runs)
            via = timed(lambda: cli("--server", f"unix://{sock}"), args.cli_runs)
            direct = timed(lambda: cli("--db", served), args.cli_runs)
            print(
                f"pkgline lot show {SHOWN} --json (401 entries), end to end ({args.cli_runs} runs)"
            )
            print(line("python -c pass", None, bare))
            print(line("through the server", None, via))
            print(line("direct mode", None, direct))
            for what, lat in (("through the server", via), ("direct mode", direct)):
                p50 = pct(lat, 0.5)  # as printed above
                times = p50 / pct(bare, 0.5)
                print_verdict(f"lot show --json {what}: p50 < 0.25 s", p50 < 0.25, f"{p50:.3f} s")
                print_verdict(
                    f"lot show --json {what}: <= 8x python -c pass", times <= 8, f"{times:.1f}x"
                )
        finally:
            child.terminate()
            child.wait(30)


if __name__ == "__main__":
    main()
