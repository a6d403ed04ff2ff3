"""Event feed: commit-to-subscriber latency on a saturated line, and the drain rate of a
backlog against a bare aiomqtt loop.

Run: ``.venv/bin/python bench/event_feed.py [--measure 20] [--backlog 100000] [--postgres]``
(``--skip-line`` / ``--skip-drain`` run one part only). Needs the ``mosquitto`` binary: the
bench starts a broker of its own on a free port of 127.0.0.1 (no persistence, its log in the
scratch directory) and stops it at the end.

1. Latency. ``bench/line_throughput.py``'s line: the example line (13 tools) simulated with
   time scale 0 by ``pkgline sim`` in another process, ``--per-flow`` lots of each flow kept in
   progress, the line controller in THIS process with the event relay beside it, as ``pkgline
   serve`` runs them: the relay on a thread and event loop of its own with an engine of its
   own, woken by the commits of the controller's units of work (``--same-loop``: on the
   controller's event loop; ``--no-wake``: polling only, every ``poll_interval_s``); the
   example's secure configuration (certificates made for both sides, as the demo does); tool
   poll interval 0.2 s, the example's, unless ``--poll``. The broker runs with
   ``set_tcp_nodelay true``, as docs/events.md advises. A subscriber in a
   third process writes down the wall-clock time each lot event arrives; a fourth reads the
   outbox's highest id every 5 ms and writes down when each id became visible (committed).
   Latency of an event: arrival minus the last read before it was seen (an upper bound, at
   most 5 ms long). Printed: events per second, p50, p99 and max over the events of the
   ``--measure`` window after ``--warmup``; goal p99 < 50 ms; and the same from the move's own
   timestamp (taken inside its transaction, before the group commit: it adds the commit).

2. Drain. A fresh SQLite file whose outbox holds ``--backlog`` unpublished events (the real
   events of part 1, or of lots just started, repeated). Then, on the same broker: a bare
   aiomqtt loop publishing the same payloads to the same topics at QoS 1, ``batch_size``
   messages sent and their PUBACKs awaited together per round (the relay's own shape: the
   fastest a client can go at QoS 1 with 100 messages in flight); the relay draining the
   backlog from the database (read, publish, lot states, mark published); the bare loop again.
   ``--rounds N``: relay and bare loop alternate N times (each relay run drains a fresh copy
   of the backlog), for a shared machine whose load moves between runs. Printed: events per
   second of each, each relay run / the mean of the bare runs either side of it, and the
   median of those ratios; goal >= 0.7.

Figures only: nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import line_throughput as lt
from common import load_printed, pct, print_verdict

from drivers.factory import DriverFactory
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.outbox import OutboxReader, OutboxSignal, OutboxStore
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.bootstrap import flow_library, seed_flow_versions
from pkgline.config import LineConfig
from pkgline.controller.line import LineController, connections_needed
from pkgline.events import payloads
from pkgline.events.config import EventsConfig
from pkgline.events.relay import Relay
from pkgline.events.thread import RelayThread, on_loop
from pkgline.events.topics import Topics
from pkgline.logs import configure_logging
from pkgline.mqtt import PENDING_CALLS_WARNING
from pkgline.security import secure_demo_line
from simulators.line import with_free_ports, write_line_config

GOAL_P99_MS = 50.0
GOAL_DRAIN_RATIO = 0.7


# -- the broker -----------------------------------------------------------------------------------


@contextlib.contextmanager
def mosquitto(directory: Path) -> Any:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise SystemExit("no mosquitto binary (apt-get install mosquitto)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 100\n"
        "set_tcp_nodelay true\n"  # as docs/events.md advises
        f"user {getpass.getuser()}\n"
        f"max_queued_messages 0\nlog_dest file {directory / 'mosquitto.log'}\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdin=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


# -- part 1: latency --------------------------------------------------------------------------------

SUBSCRIBER = """
import asyncio, json, sys, time
import aiomqtt
async def main(port, topic, out):
    with open(out, "w") as f:
        async with aiomqtt.Client("127.0.0.1", int(port), identifier="bench-sub") as c:
            await c.subscribe(topic, qos=1)
            print("subscribed", flush=True)
            async for m in c.messages:
                e = json.loads(m.payload)
                f.write(f"{time.time()} {e['id']} {e['time']}\\n")
asyncio.run(main(*sys.argv[1:]))
"""


WATCHER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
last, before = 0, time.time()
with open(sys.argv[2], "w") as f:
    while True:
        now = time.time()
        try:
            top = db.execute("SELECT max(seq) FROM outbox").fetchone()[0] or 0
        except sqlite3.OperationalError:
            top = last
        if top > last:
            f.write(f"{before} {last} {top}\\n")
            f.flush()
            last = top
        before = now
        time.sleep(0.005)
"""


@contextlib.asynccontextmanager
async def commit_watcher(database: Path, out: Path) -> AsyncIterator[None]:
    """Another process that reads the outbox's highest id every 5 ms: an event committed
    between two reads is written down with the time of the earlier one (a commit time that is
    at most 5 ms early, so the latency from it is an upper bound)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WATCHER, str(database), str(out)
    )
    try:
        yield
    finally:
        proc.terminate()
        await proc.wait()


def committed_at(out: Path) -> Any:
    """id -> the watcher's time before it saw the id committed."""
    ranges = []
    for row in out.read_text().splitlines():
        before, low, high = row.split()
        ranges.append((int(low), int(high), float(before)))

    def find(event_id: int) -> float | None:
        for low, high, before in ranges:
            if low < event_id <= high:
                return before
        return None

    return find


@contextlib.asynccontextmanager
async def subscriber(port: int, topic: str, out: Path) -> AsyncIterator[None]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUBSCRIBER, str(port), topic, str(out), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            await proc.stdout.readline()
        yield
    finally:
        proc.terminate()
        await proc.wait()


async def latency(args: argparse.Namespace, tmp: Path, port: int, url: str) -> Path:
    config = lt.example_config()
    if args.poll is not None:
        config = lt.with_poll(config, args.poll)
    events = EventsConfig(url=f"mqtt://127.0.0.1:{port}", root="bench")
    # The secure configuration, as the demo runs it (certificates for both sides, trusted).
    config = secure_demo_line(with_free_ports(config), tmp / "pki")
    line: LineConfig = config.model_copy(update={"events": events})
    config_path = write_line_config(line, tmp / "line.toml")
    topics = Topics.of(events.root, events.site, events.area, line.name)
    arrivals = tmp / "arrivals.txt"
    commits = tmp / "commits.txt"
    engine = create_engine(url, pool_size=connections_needed(line) + 1)
    factory = DriverFactory()
    try:
        await upgrade(engine)  # as ``pkgline db upgrade``: the schema, and the flows
        await seed_flow_versions(engine)  # published and approved as version 1
        committed = OutboxSignal()
        uow = SqlUnitOfWorkFactory(engine, outbox=committed)
        lots = LotService(uow, flow_library())
        equipment = EquipmentService(uow)
        with (tmp / "sim.log").open("w") as sim_log, (tmp / "controller.log").open("w") as clog:
            async with (
                lt.simulated_line(config_path, sim_log),
                subscriber(port, topics.all_lot_events, arrivals),
                commit_watcher(Path(url.removeprefix("sqlite:///")), commits),
            ):
                await lt.start_lots(lots, {}, args.per_flow)
                configure_logging("info", json=True, stream=clog)

                async def own_tools() -> Any:
                    return await equipment.tools(line.name)

                # As pkgline serve: the relay on a thread of its own with an engine of its own,
                # or (--same-loop) on the controller's event loop.
                relay_engine = engine if args.same_loop else create_engine(url, pool_size=2)
                relay = Relay(
                    events,
                    OutboxStore(relay_engine),
                    controller=line.name,
                    tools=own_tools
                    if args.same_loop
                    else on_loop(own_tools, asyncio.get_running_loop()),
                    committed=None if args.no_wake else committed,
                )
                controller = LineController(
                    line,
                    lots,
                    equipment,
                    factory.create_all(line.tools),
                    status_of_parts=[relay.status_line],
                )
                thread = None if args.same_loop else RelayThread(relay, relay_engine)
                if thread is None:
                    relaying = asyncio.create_task(relay.run())
                else:
                    thread.start()
                running = asyncio.create_task(controller.run())
                await controller.ready.wait()
                topping = asyncio.create_task(lt.keep_topped_up(lots, args.per_flow))
                try:
                    await asyncio.sleep(args.warmup)
                    window = (time.time(), time.time() + args.measure)
                    await asyncio.sleep(args.measure + 2.0)
                finally:
                    topping.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await topping
                    controller.request_stop()
                    await running
                    if thread is None:
                        relay.request_stop()
                        await relaying
                    else:
                        await thread.stop(30)
                    configure_logging("warning", stream=sys.stderr)
    finally:
        await factory.aclose()
        await engine.dispose()
    seen: dict[int, float] = {}
    from_commit: list[float] = []
    commit_of = committed_at(commits)
    for row in arrivals.read_text().splitlines():
        at, event_id, when = row.split(" ", 2)
        stamped = datetime.fromisoformat(when).timestamp()
        if window[0] <= stamped < window[1] and int(event_id) not in seen:
            seen[int(event_id)] = (float(at) - stamped) * 1000
            committed = commit_of(int(event_id))
            if committed is not None:
                from_commit.append((float(at) - committed) * 1000)
    lat = list(seen.values())
    if not lat or not from_commit:
        print("  latency: no event in the window")
        return Path(url.removeprefix("sqlite:///"))
    p99 = pct(from_commit, 0.99)
    print(
        f"  latency, commit to subscriber ({len(from_commit)} events, "
        f"{len(lat) / args.measure:.0f}/s): p50 {pct(from_commit, 0.5):.1f} ms, "
        f"p99 {p99:.1f} ms, max {max(from_commit):.1f} ms"
    )
    print_verdict(
        f"latency commit to subscriber: p99 < {GOAL_P99_MS:.0f} ms",
        p99 < GOAL_P99_MS,
        f"p99 {p99:.1f} ms",
    )
    print(
        f"  (from the move's timestamp, taken in its transaction before the commit: "
        f"p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms)"
    )
    return Path(url.removeprefix("sqlite:///"))


# -- part 2: drain --------------------------------------------------------------------------------


async def fill_backlog(url: str, source: Path | None, n: int) -> None:
    """``n`` unpublished events in a fresh database: the source's events repeated."""
    engine = create_engine(url)
    source = source if source is not None and source.exists() else None  # noqa: ASYNC240
    try:
        await upgrade(engine)  # as ``pkgline db upgrade``: the schema, and the flows
        await seed_flow_versions(engine)  # published and approved as version 1
        if source is None:
            lots = LotService(SqlUnitOfWorkFactory(engine), flow_library())
            await lt.start_lots(lots, {}, 10)
    finally:
        await engine.dispose()
    import sqlite3

    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        if source is not None:
            db.execute("ATTACH DATABASE ? AS src", (str(source),))
            rows = db.execute("SELECT lot_id, kind, payload, created_at FROM src.outbox").fetchall()
        else:
            rows = db.execute("SELECT lot_id, kind, payload, created_at FROM outbox").fetchall()
            db.execute("DELETE FROM outbox")
        now = datetime.now(UTC).isoformat(sep=" ")
        db.executemany(
            "INSERT INTO outbox (lot_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
            ((r[0], r[1], r[2], now) for r in (rows[i % len(rows)] for i in range(n))),
        )
        db.commit()
    finally:
        db.close()


async def bare_loop(port: int, messages: list[tuple[str, bytes]], batch: int) -> float:
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"bare-{uuid.uuid4().hex[:6]}", max_inflight_messages=100
    ) as client:
        client.pending_calls_threshold = PENDING_CALLS_WARNING  # as the relay's client
        t0 = time.perf_counter()
        for start in range(0, len(messages), batch):
            async with asyncio.TaskGroup() as group:
                for topic, body in messages[start : start + batch]:
                    group.create_task(client.publish(topic, body, qos=1))
        return len(messages) / (time.perf_counter() - t0)


async def relay_drain(port: int, url: str, n: int) -> float:
    events = EventsConfig(url=f"mqtt://127.0.0.1:{port}", root="drain")
    engine = create_engine(url)
    relay = Relay(events, OutboxStore(engine), controller="bench")
    try:
        t0 = time.perf_counter()
        task = asyncio.create_task(relay.run())
        while relay.status.published < n:  # noqa: ASYNC110 - polling a counter, 10 ms is fine
            await asyncio.sleep(0.01)
        rate = n / (time.perf_counter() - t0)
        relay.request_stop()
        await task
        return rate
    finally:
        await engine.dispose()


async def drain(args: argparse.Namespace, tmp: Path, port: int, source: Path | None) -> None:
    url = f"sqlite:///{tmp}/backlog.db"
    await fill_backlog(url, source, args.backlog)
    engine = create_engine(url)
    try:
        reader = OutboxReader(engine)
        backlog = await reader.backlog()
        topics = Topics.of("drain", "site", "packaging", "bench")
        messages = []
        after = 0
        while batch := await reader.events(after=after, limit=5000):
            for event in batch:
                _, body = payloads.lot_event(event, 1 << 20)
                messages.append((topics.lot_events(event.lot_id), body))
            after = batch[-1].id
    finally:
        await engine.dispose()
    size = statistics.mean(len(b) for _, b in messages)
    print(f"  drain: {backlog.events} events waiting, {size:.0f} bytes each on average")
    # Interleaved on a shared machine: bare, relay, bare, relay, ..., bare; each relay run
    # drains a fresh copy of the backlog and is compared with the bare runs on either side.
    clean = tmp / "backlog-clean.db"
    shutil.copy(tmp / "backlog.db", clean)
    bares = [await bare_loop(port, messages, EventsConfig().batch_size)]
    ratios = []
    for round_ in range(args.rounds):
        for suffix in ("-wal", "-shm"):
            (tmp / f"backlog.db{suffix}").unlink(missing_ok=True)
        shutil.copy(clean, tmp / "backlog.db")
        relay = await relay_drain(port, url, backlog.events)
        bares.append(await bare_loop(port, messages, EventsConfig().batch_size))
        ratio = relay / statistics.mean(bares[-2:])
        ratios.append(ratio)
        print(
            f"  round {round_ + 1}: bare aiomqtt loop {bares[-2]:.0f} then {bares[-1]:.0f} "
            f"events/s; relay from the outbox {relay:.0f} events/s; ratio {ratio:.2f}"
        )
    ratio = statistics.median(ratios)
    print(
        f"  drain ratio, median of {len(ratios)}: {ratio:.2f} "
        f"(all: {' '.join(f'{r:.2f}' for r in ratios)})"
    )
    print_verdict(
        f"drain: relay >= {GOAL_DRAIN_RATIO} of the bare loop's events/s (median of rounds)",
        ratio >= GOAL_DRAIN_RATIO,
        f"{ratio:.2f}",
    )


async def bench(args: argparse.Namespace) -> None:
    print("event feed: broker: mosquitto of its own on 127.0.0.1")
    with load_printed("event feed"), tempfile.TemporaryDirectory(prefix="pkgline-feed-") as name:
        tmp = Path(name)
        with mosquitto(tmp) as port:
            source = None
            if not args.skip_line:
                print(
                    f"  line: the example line at time scale 0, {args.per_flow} lots per flow in "
                    f"progress, SQLite; warm-up {args.warmup:.0f} s, window {args.measure:.0f} s"
                )
                source = await latency(args, tmp, port, f"sqlite:///{tmp}/line.db")
            if not args.skip_drain:
                await drain(args, tmp, port, source)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--per-flow", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--measure", type=float, default=20.0)
    parser.add_argument("--poll", type=float)
    parser.add_argument(
        "--no-wake", action="store_true", help="the relay polls only (not woken by commits)"
    )
    parser.add_argument(
        "--same-loop",
        action="store_true",
        help="the relay on the controller's event loop (not on a thread of its own)",
    )
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument(
        "--rounds", type=int, default=1, help="drain runs, each between two bare loop runs"
    )
    parser.add_argument("--skip-line", action="store_true")
    parser.add_argument("--skip-drain", action="store_true")
    asyncio.run(bench(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
