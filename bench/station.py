"""The operator station under viewers (issue 18): server time of the line page and of a lot
page with 4 carriers of 8x32 sites and 200 history entries, p50/p99 under 20 concurrent
viewers, against the same data as JSON from the API in the same run; and event-to-screen
latency (a lot is held through the API, the open line page in a real browser shows it), p99,
measured in the browser.

The server is the real ``pkgline api`` as a child process serving plain HTTP on a free
127.0.0.1 port, on a scratch SQLite file seeded here: 13 tools, 60 lots in several states,
and the big lot. Server time is the ``Server-Timing`` each answer carries (request in to
headers out); the client's round trip is printed beside it. The line as JSON is ``GET
/tools`` plus ``GET /lots?state=...`` (what the line page reads), the lot as JSON ``GET
/lots/BIG-1``. Event-to-screen: headless Debian chromium (``chromium-driver``) on the line
page, a MutationObserver stamping when each lot appears among the held lots (the page's
clock, the same machine's), while ``--streams`` other viewers keep line streams open.

Goals: line page p99 under 50 ms; event to screen p99 under 500 ms.

    .venv/bin/python bench/station.py [--viewers 20] [--requests 25] [--events 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from argon2 import PasswordHasher
from common import load, pct, print_verdict

from mes.adapters.passwords import Argon2Passwords
from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER, Principal, Role
from mes.domain.equipment import ControllerRecord, ToolRegistration, ToolSnapshot
from pkgline.api.server import open_state

OWNER = Principal.file_owner("bench")
USER, PASSWORD = "viewer", "viewer-Pa55word-bench"
BIG = "BIG-1"
TOOL_CLASSES = (
    ("PREP", "substrate_prep", "SUBSTRATE_PREP"),
    ("DA", "die_bonder", "DIE_ATTACH"),
    ("FILL", "molding", "FILL"),
    ("COAT", "coater", "DIELECTRIC_COAT"),
    ("LITHO", "lithography", "VIA_PATTERN"),
    ("VIA", "via_fill", "VIA_FILL"),
    ("SPUT", "sputter", "SPUTTER"),
    ("PLATE", "electroplate", "ELECTROPLATE"),
    ("EPLATE", "electroless", "ELECTROLESS_PLATE"),
    ("PASS", "passivation", "PASSIVATION"),
    ("BALL", "ball_mount", "BALL_MOUNT"),
    ("DICE", "dicing", "DICE"),
    ("WB", "wire_bonder", "WIRE_BOND"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def seed(url: str, lots: int, events: int) -> None:
    from mes.adapters.database import create_engine
    from mes.adapters.migrate import upgrade
    from pkgline.bootstrap import seed_flow_versions

    engine = create_engine(url)
    try:
        await upgrade(engine)  # as ``pkgline db upgrade``: the schema, the flows published
        await seed_flow_versions(engine)  # and approved as version 1 (lots read versions)
    finally:
        await engine.dispose()
    fast = Argon2Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    async with open_state(url, passwords=fast) as state:
        await state.identity.add_user(
            OWNER, USER, "Bench Viewer", [Role.OPERATOR, Role.QUALITY], password="initial-Pa55"
        )
        await state.identity.change_own_password(USER, "initial-Pa55", PASSWORD)
        services = state.services
        equipment = services.equipment.acting_as(CONTROLLER)
        tools = [
            ToolRegistration(f"{p}-1", c, f"127.0.0.1:{1500 + i}", (s,))
            for i, (p, c, s) in enumerate(TOOL_CLASSES)
        ]
        await equipment.register("line-1", tools)
        now = datetime.now(UTC)
        ids = tuple(t.id for t in tools)
        await equipment.heartbeat(
            ControllerRecord("line-1", "bench", os.getpid(), now, now, "running", ids)
        )
        for i, t in enumerate(tools):
            await equipment.report(
                t.id,
                ToolSnapshot(
                    connected=True,
                    e10=("productive", "standby", "unscheduled_down")[i % 3],
                    process_state=("EXECUTING", "IDLE", "ALARM")[i % 3],
                    mode="PRODUCTION",
                    alarm={"code": 7, "text": "door open"} if i % 3 == 2 else None,
                ),
            )
        service = services.lots.acting_as(OWNER)
        for n in range(lots):
            lot = f"L-{n}"
            await service.start(cmd.StartLot(lot, "fo-organic", "bench", params={"layers": 3}))
            if n % 3 == 1:
                await service.track_in(cmd.TrackIn(lot, "SUBSTRATE_PREP", "bench"))
            elif n % 3 == 2:
                await service.hold(cmd.HoldLot(lot, "bench", "incoming inspection"))
        for n in range(events):
            await service.start(cmd.StartLot(f"E-{n}", "fo-organic", "bench"))
        # the big lot: 4 carriers of 8x32, 200 history entries, rejected sites
        await service.start(
            cmd.StartLot(BIG, "fo-organic", "bench", carriers=4, site_rows=8, site_cols=32)
        )
        await service.track_in(cmd.TrackIn(BIG, "SUBSTRATE_PREP", "bench"))
        rejects = tuple(
            cmd.SiteRejectGiven(str(1 + k % 4), 1 + k % 8, 1 + k, ("VOID", "CRACK")[k % 2])
            for k in range(31)
        )
        await service.track_out(cmd.TrackOut(BIG, "bench", {}, rejects))
        for _ in range(98):  # 1 start + 2 + 2 x 98 + 1 = 200 entries
            await service.track_in(cmd.TrackIn(BIG, "DIE_ATTACH", "bench"))
            await service.abort(cmd.AbortStep(BIG, "bench", "bench"))
        await service.hold(cmd.HoldLot(BIG, "bench", "review the map"))
        report = await service.report(BIG)
        assert len(report.history) == 200, len(report.history)


def station_client(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    form = client.get("/station/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post(
        "/station/login", data={"csrf": csrf[1], "username": USER, "password": PASSWORD}
    )
    assert answer.status_code == 303, answer.text
    return client


def api_client(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    answer = client.post("/session", json={"username": USER, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    client.headers["authorization"] = f"Bearer {answer.json()['token']}"
    return client


def server_ms(answer: httpx.Response) -> float:
    timing = answer.headers["server-timing"]
    return float(timing.split("dur=")[1])


Fetch = Callable[[httpx.Client], tuple[float, float]]


def get(path: str) -> Fetch:
    def fetch(client: httpx.Client) -> tuple[float, float]:
        t0 = time.perf_counter()
        answer = client.get(path)
        wall = (time.perf_counter() - t0) * 1000
        assert answer.status_code == 200, (path, answer.status_code)
        return server_ms(answer), wall

    return fetch


def line_json(client: httpx.Client) -> tuple[float, float]:
    t0 = time.perf_counter()
    tools = client.get("/tools", params={"limit": 1000})  # every tool: one page of 1,000
    lots = client.get("/lots", params={"state": ["WAITING", "RUNNING", "HOLD"], "limit": 1000})
    wall = (time.perf_counter() - t0) * 1000
    assert tools.status_code == 200, tools.text
    assert lots.status_code == 200, lots.text
    return server_ms(tools) + server_ms(lots), wall


def under_viewers(
    clients: list[httpx.Client], fetch: Fetch, requests: int
) -> tuple[list[float], list[float]]:
    """Every client fetching ``requests`` times at once, each in its own thread."""
    server: list[float] = []
    wall: list[float] = []
    lock = threading.Lock()
    go = threading.Barrier(len(clients))

    def viewer(client: httpx.Client) -> None:
        go.wait()
        mine = [fetch(client) for _ in range(requests)]
        with lock:
            server.extend(s for s, _ in mine)
            wall.extend(w for _, w in mine)

    threads = [threading.Thread(target=viewer, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return server, wall


def row(name: str, server: list[float], wall: list[float]) -> str:
    return (
        f"  {name:<26} server p50 {statistics.median(server):6.1f} ms  p99 {pct(server, 0.99):6.1f} ms"
        f"   round trip p50 {statistics.median(wall):6.1f} ms  p99 {pct(wall, 0.99):6.1f} ms"
    )


OBSERVER = """
window.__seen = {};
const line = document.getElementById('line');
const stamp = () => {
  const at = performance.timeOrigin + performance.now();
  for (const tr of line.querySelectorAll('#held tr[data-lot]')) {
    const lot = tr.dataset.lot;
    if (!(lot in window.__seen)) window.__seen[lot] = at;
  }
};
stamp();
new MutationObserver(stamp).observe(line, {childList: true, subtree: true});
"""


def event_to_screen(base: str, events: int, api: httpx.Client) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,800",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"{base}/station/login")
        driver.find_element(By.ID, "username").send_keys(USER)
        driver.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
        wait = WebDriverWait(driver, 10)
        wait.until(lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live")
        driver.execute_script(OBSERVER)
        out = []
        for n in range(events):
            lot = f"E-{n}"
            sent = time.time() * 1000
            answer = api.post(f"/lots/{lot}/hold", json={"reason": "bench event"})
            assert answer.status_code == 200, answer.text
            seen = WebDriverWait(driver, 10, poll_frequency=0.01).until(
                lambda d, lot=lot: d.execute_script(f"return window.__seen['{lot}'];")
            )
            out.append(float(seen) - sent)
            time.sleep(0.05)
        return out
    finally:
        driver.quit()


def open_streams(base: str, count: int, stop: threading.Event) -> list[threading.Thread]:
    """``count`` other viewers with the line stream open (read and dropped)."""

    def viewer() -> None:
        client = station_client(base)
        try:
            with client.stream("GET", "/station/line/events") as s:
                for _ in s.iter_bytes():
                    if stop.is_set():
                        return
        finally:
            client.close()

    threads = [threading.Thread(target=viewer, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--requests", type=int, default=25, help="per viewer and page")
    parser.add_argument("--lots", type=int, default=60)
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--streams", type=int, default=20, help="open line streams meanwhile")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    print(f"station: {load()} (start)")
    where = Path(tempfile.mkdtemp(prefix="pkgline-bench-station-"))
    url = f"sqlite:///{where / 'bench.db'}"
    t0 = time.perf_counter()
    asyncio.run(seed(url, args.lots, args.events))
    print(
        f"seeded in {time.perf_counter() - t0:.1f} s: 13 tools, {args.lots + args.events + 1} lots, "
        f"{BIG} with 4 carriers of 8x32 and 200 history entries"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("PKGLINE_SERVER", "PKGLINE_DB")}
    log = (where / "api.log").open("w")
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pkgline",
            "api",
            "--db",
            url,
            "--socket",
            str(where / "api.sock"),
            "--http-port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert child.poll() is None, (where / "api.log").read_text()
            assert time.monotonic() < deadline, "the server did not answer in 30 s"
            time.sleep(0.1)
        stations = [station_client(base) for _ in range(args.viewers)]
        apis = [api_client(base) for _ in range(args.viewers)]
        for c in stations:  # warm up: templates compiled, flows built
            get("/station/")(c)
            get(f"/station/lots/{BIG}")(c)
        alone = under_viewers(stations[:1], get("/station/"), args.requests)
        print(f"1 viewer, {args.requests} requests:")
        print(row("line page (HTML)", *alone))
        print(f"{args.viewers} concurrent viewers, {args.requests} requests each:")
        results = {}
        for name, clients, fetch in (
            ("line page (HTML)", stations, get("/station/")),
            ("line as JSON (2 requests)", apis, line_json),
            (f"lot page {BIG} (HTML)", stations, get(f"/station/lots/{BIG}")),
            (f"lot {BIG} as JSON", apis, get(f"/lots/{BIG}")),
        ):
            results[name] = under_viewers(clients, fetch, args.requests)
            print(row(name, *results[name]))
        line_p99 = pct(results["line page (HTML)"][0], 0.99)
        print_verdict("line page server p99 < 50 ms", line_p99 < 50, f"p99 {line_p99:.1f} ms")
        for c in stations + apis:
            c.close()
        if not args.no_browser:
            stop = threading.Event()
            open_streams(base, args.streams, stop)
            api = api_client(base)
            try:
                latencies = event_to_screen(base, args.events, api)
            finally:
                api.close()
            stop.set()
            p99 = pct(latencies, 0.99)
            print(
                f"event to screen ({args.events} holds through the API, {args.streams} other "
                f"line streams open): p50 {statistics.median(latencies):.0f} ms  p99 {p99:.0f} ms"
                f"  max {max(latencies):.0f} ms"
            )
            print_verdict("event to screen p99 < 500 ms", p99 < 500, f"p99 {p99:.0f} ms")
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()
    print(f"station: {load()} (end)")


if __name__ == "__main__":
    main()
