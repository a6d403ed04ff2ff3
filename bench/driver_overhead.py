"""Driver overhead: a tool's status read through our driver vs. the same read done bare.

Run: ``.venv/bin/python bench/driver_overhead.py [--reads 2000] [--rounds 6]``

For each transport, a simulator runs in another process (so that its work does not share
this process's event loop), and this process reads the tool's status N times through our
driver and N times with the transport library alone (same registers / nodes, same server),
interleaved in rounds so that drift on a busy machine hits both alike. It prints, per read,
the median and 99th percentile of the wall time, the CPU time of this process, and the ratio
driver / bare (goal: 1.25 or less). Figures only: nothing here asserts on timings.

Each transport is a function in ``BENCHMARKS`` returning a :class:`Comparison`
(:func:`bench_modbus`, :func:`bench_opcua`); add one for another transport next to them.
Each runs plain and secure (``--secure``: only the secure variants): Modbus/TCP Security
(TLS, both certificates) against a bare pymodbus TLS client, and OPC UA Basic256Sha256 with
SignAndEncrypt and a user against a bare asyncua client with the same policy, mode and user.
The PKIs are made in a temporary directory, each side trusting the other.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pymodbus
from common import load_printed, print_verdict
from pymodbus.client import AsyncModbusTcpClient

from drivers import certificates as C
from drivers import pki as P
from drivers import tls as T
from drivers.config import INSECURE, ConnectionPolicy, ModbusEndpoint, ModbusTls, ToolConfig
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.mapfile import packaged_map
from drivers.model import EquipmentClass

Read = Callable[[], Awaitable[object]]
GOAL = 1.25


@dataclass
class Series:
    """Per-read wall times (ns) and the CPU time (ns) this process spent on them."""

    label: str
    wall_ns: list[int] = field(default_factory=list)
    cpu_ns: int = 0

    def median_us(self) -> float:
        return statistics.median(self.wall_ns) / 1000

    def p99_us(self) -> float:
        ordered = sorted(self.wall_ns)
        return ordered[min(len(ordered) - 1, round(0.99 * len(ordered)))] / 1000

    def cpu_us(self) -> float:
        return self.cpu_ns / len(self.wall_ns) / 1000


@dataclass
class Comparison:
    transport: str
    what: str
    ours: Series
    bare: Series

    def print(self) -> None:
        print(f"\n{self.transport}: {self.what}")
        print(f"  {'':24} {'median µs':>10} {'p99 µs':>10} {'CPU µs':>10} {'reads':>7}")
        for series in (self.ours, self.bare):
            print(
                f"  {series.label:24} {series.median_us():10.1f} {series.p99_us():10.1f} "
                f"{series.cpu_us():10.1f} {len(series.wall_ns):7d}"
            )
        median = self.ours.median_us() / self.bare.median_us()
        p99 = self.ours.p99_us() / self.bare.p99_us()
        cpu = self.ours.cpu_us() / self.bare.cpu_us()
        print(f"  ratio ours / bare: median {median:.2f}, p99 {p99:.2f}, CPU {cpu:.2f}")
        print_verdict(
            f"{self.transport}: median ours / bare <= {GOAL}", median <= GOAL, f"{median:.2f}"
        )


async def _measure(read: Read, series: Series, reads: int) -> None:
    perf, cpu = time.perf_counter_ns, time.process_time_ns
    cpu_before = cpu()
    for _ in range(reads):
        began = perf()
        await read()
        series.wall_ns.append(perf() - began)
    series.cpu_ns += cpu() - cpu_before


async def _compare(ours: Read, bare: Read, result: Comparison, reads: int, rounds: int) -> None:
    for _ in range(max(1, reads // 10)):  # warm up both paths
        await ours()
        await bare()
    for round_number in range(rounds):
        pairs = [(ours, result.ours), (bare, result.bare)]
        if round_number % 2:
            pairs.reverse()
        for read, series in pairs:
            await _measure(read, series, reads)


# -- the secure variants' certificates ----------------------------------------------------------


@dataclass
class Pkis:
    controller: P.Pki
    simulator: P.Pki
    credentials: Path


def _cross_trusted(root: Path) -> Pkis:
    """A controller PKI and a simulator PKI trusting each other, and an operator's
    credentials file (what the demo makes)."""
    from pkgline.security import controller_uri
    from simulators.certificate import simulator_pki

    controller = P.Pki(root / "controller")
    C.init_own(controller, common_name="bench controller", application_uri=controller_uri())
    simulator = simulator_pki(root / "simulator")
    controller.store(simulator.own()[0], controller.trusted)
    simulator.store(controller.own()[0], simulator.trusted)
    credentials = root / "user.toml"
    P.write_private(credentials, b'username = "bench"\npassword = "bench-Pa55"\n')
    return Pkis(controller, simulator, credentials)


# -- Modbus TCP ------------------------------------------------------------------------------


def _start_simulator(
    module: str, equipment_class: EquipmentClass, *extra: str
) -> tuple[subprocess.Popen[str], str]:
    """``python -m simulators.<module> CLASS --port 0 --time-scale 0 EXTRA...`` in another
    process: the process and the line it says it listens with."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            f"simulators.{module}",
            equipment_class.value,
            "--port",
            "0",
            "--time-scale",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    while line.startswith("certificate "):  # a secure simulator says where its PKI is first
        line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"the simulator did not start: {line!r}")
    return process, line.strip()


async def bench_modbus(reads: int, rounds: int, pkis: Pkis | None = None) -> Comparison:
    """ModbusDriver.status() vs. AsyncModbusTcpClient.read_input_registers of the same
    status block, against one simulator process (``pkis``: both over Modbus/TCP Security)."""
    from pymodbus.client import AsyncModbusTlsClient

    equipment_class = EquipmentClass.MOLDER
    block = packaged_map(equipment_class).status
    extra = ("--tls-pki", str(pkis.simulator.root)) if pkis else ()
    process, listening = _start_simulator("modbus_server", equipment_class, *extra)
    port = int(listening.rsplit(":", 1)[1])  # "<class> listening on 127.0.0.1:<port>"
    # A long poll interval: the driver's own supervision stays out of the measurement.
    policy = ConnectionPolicy(timeout_s=2.0, poll_interval_s=60.0)
    tls = ModbusTls(pki=pkis.controller.root) if pkis else None
    config = ToolConfig(
        id="BENCH-1",
        equipment_class=equipment_class,
        endpoint=ModbusEndpoint(host="127.0.0.1", port=port, tls=tls),
        policy=policy,
    )
    driver = ModbusDriver(config)
    client: AsyncModbusTcpClient
    if pkis:
        client = AsyncModbusTlsClient(
            "127.0.0.1",
            port=port,
            sslctx=T.tls_client_context(pkis.controller),
            timeout=2.0,
            retries=0,
            reconnect_delay=0,
        )
    else:
        client = AsyncModbusTcpClient(
            "127.0.0.1", port=port, timeout=2.0, retries=0, reconnect_delay=0
        )
    try:
        await driver.start()
        if not await client.connect():
            raise RuntimeError("the bare client cannot connect")

        async def bare() -> object:
            return await client.read_input_registers(block.start, count=block.count, device_id=1)

        result = Comparison(
            "Modbus/TCP Security (TLS)" if pkis else "Modbus TCP",
            f"status, one read of {block.count} input registers (pymodbus {pymodbus.__version__})",
            Series("ModbusDriver.status()"),
            Series("bare pymodbus read"),
        )
        await _compare(driver.status, bare, result, reads, rounds)
        return result
    finally:
        client.close()
        await driver.close()
        process.terminate()
        process.wait(timeout=10)


# -- OPC UA ----------------------------------------------------------------------------------


async def bench_opcua(reads: int, rounds: int, pkis: Pkis | None = None) -> Comparison:
    """OpcUaDriver.status() vs. a bare asyncua Client reading the same status nodes with one
    Read request (``Client.read_values``), against one simulator process (``pkis``: both
    with Basic256Sha256, SignAndEncrypt and a user)."""
    import asyncua
    from asyncua.client.client import Client
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
    from asyncua.ua import MessageSecurityMode

    from drivers.config import OpcUaEndpoint, OpcUaSecurity
    from drivers.opcua import OpcUaDriver, OpcUaSessionPool
    from drivers.opcua.nodemap import STATUS_SIGNALS, load_node_map

    equipment_class = EquipmentClass.MOLDER
    extra = (
        ("--pki", str(pkis.simulator.root), "--credentials", str(pkis.credentials)) if pkis else ()
    )
    process, listening = _start_simulator(
        "opcua_server", equipment_class, *(extra or ("--insecure",))
    )
    print(f"  OPC UA simulator {listening}")
    url = listening.split()[2]  # "listening on opc.tcp://127.0.0.1:<port> (...)"
    tool_id = f"{equipment_class.value.upper()}-1"
    # The default publishing interval (0.2 s): the driver's subscription and keep-alives run
    # during the measurement, as they would on the line (the tool is idle: keep-alives only).
    policy = ConnectionPolicy(timeout_s=2.0)
    config = ToolConfig(
        id=tool_id,
        equipment_class=equipment_class,
        endpoint=OpcUaEndpoint(
            url=url,
            security=OpcUaSecurity(pki=pkis.controller.root, credentials=pkis.credentials)
            if pkis
            else INSECURE,
        ),
        policy=policy,
    )
    sessions = OpcUaSessionPool()
    driver = OpcUaDriver(config, sessions)
    client = Client(url, timeout=2.0)
    client.session_timeout = 30_000  # as the driver asks (the server would cut 1 h to 10 min)
    try:
        await driver.start()
        if not driver.connected:
            raise RuntimeError("the driver did not connect")
        if pkis:
            own, cert_path, key_path = pkis.controller.own()
            client.application_uri = P.application_uris(own)[0]
            client.set_user("bench")
            client.set_password("bench-Pa55")
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                str(cert_path),
                str(key_path),
                mode=MessageSecurityMode.SignAndEncrypt,
            )
        await client.connect()
        # The same nodes, found by the bare client itself through the packaged node map.
        node_map = load_node_map()
        namespace = await client.get_namespace_index(node_map.namespaces["pk"])
        tool = await client.nodes.objects.get_child(
            [f"{namespace}:Tools", f"{namespace}:{tool_id}"]
        )
        nodes = [
            await tool.get_child([f"{namespace}:{q.name}" for q in node_map.signals[s].browse_path])
            for s in STATUS_SIGNALS
        ]

        async def bare() -> object:
            return await client.read_values(nodes)

        result = Comparison(
            "OPC UA Basic256Sha256 SignAndEncrypt" if pkis else "OPC UA",
            f"status, one Read of {len(nodes)} values (asyncua {asyncua.__version__}, "
            "server in another process)",
            Series("OpcUaDriver.status()"),
            Series("bare asyncua Read"),
        )
        await _compare(driver.status, bare, result, reads, rounds)
        return result
    finally:
        await client.disconnect()
        await driver.close()
        await sessions.aclose()
        process.terminate()
        process.wait(timeout=10)


BENCHMARKS: list[Callable[[int, int, Pkis | None], Coroutine[object, object, Comparison]]] = [
    bench_modbus,
    bench_opcua,
]
"""One function per transport; each starts its own simulator and cleans up."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000, help="reads per round and path")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--secure", action="store_true", help="the secure variants only")
    args = parser.parse_args(argv)
    print(
        f"driver overhead: {args.rounds} rounds x {args.reads} reads per path; "
        f"Python {platform.python_version()} on {platform.machine()}"
    )
    with (
        load_printed("driver overhead"),
        tempfile.TemporaryDirectory(prefix="pkgline-bench-") as tmp,
    ):
        pkis = _cross_trusted(Path(tmp))
        for benchmark in BENCHMARKS:
            if not args.secure:
                asyncio.run(benchmark(args.reads, args.rounds, None)).print()
            asyncio.run(benchmark(args.reads, args.rounds, pkis)).print()


if __name__ == "__main__":
    main()
