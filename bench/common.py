"""What the benchmarks here share: the machine's load, printed at start and end of every run;
one verdict line per goal, worded alike everywhere; percentiles and the spread of repeated
runs; CPU seconds from /proc; scratch PostgreSQL databases.

A bench script imports it as a sibling (``bench/`` is on ``sys.path`` when a script in it
runs; each script puts it there too, for ``tests/bench``).
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


# -- the machine ------------------------------------------------------------------------------


def load() -> str:
    """The machine's load average (1, 5 and 15 minutes) and its CPU count, as printed."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return f"load average {one} {five} {fifteen} on {os.cpu_count()} CPUs"


@contextlib.contextmanager
def load_printed(title: str = "") -> Iterator[None]:
    """Print the machine's load before and after the block (after it also when it fails):
    on a shared machine, a figure is read with the load it was measured under."""
    print(f"{title}{': ' if title else ''}{load()} (start)", flush=True)
    try:
        yield
    finally:
        print(f"{title}{': ' if title else ''}{load()} (end)", flush=True)


def stat_cpu(stat: str) -> tuple[str, float]:
    """A process's name and its CPU seconds (utime + stime, every thread), from the text of
    /proc/PID/stat (the name may hold spaces and parentheses: the last ')' ends it)."""
    head, _, tail = stat.rpartition(")")
    fields = tail.split()
    ticks = int(fields[11]) + int(fields[12])
    return head.partition("(")[2], ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) of process ``pid`` so far (Linux /proc)."""
    return stat_cpu(Path(f"/proc/{pid}/stat").read_text())[1]


# -- figures ----------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank, no interpolation: a value that was
    measured); NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Spread:
    """Repeated runs of one figure: its median and the lowest and highest run."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def format(self, spec: str = ".2f") -> str:
        """``median (low-high over N runs)``."""
        return f"{self.median:{spec}} ({self.low:{spec}}-{self.high:{spec}} over {self.runs} runs)"


def verdict(goal: str, met: bool, measured: str = "") -> str:
    """One goal's verdict line: ``goal <goal>: met`` or ``NOT met``, with what was measured.
    Every bench prints its goals this way, so that a reader (or grep) finds them alike."""
    return f"  goal {goal}: {'met' if met else 'NOT met'}" + (f" ({measured})" if measured else "")


def print_verdict(goal: str, met: bool, measured: str = "") -> None:
    print(verdict(goal, met, measured), flush=True)


# -- PostgreSQL -------------------------------------------------------------------------------


def postgres_admin() -> str:
    """The PostgreSQL database the benches create their scratch databases from:
    $PKGLINE_BENCH_POSTGRES, else the test server's."""
    return os.environ.get("PKGLINE_BENCH_POSTGRES", DEFAULT_POSTGRES)


async def pg_admin(admin_dsn: str, sql: str) -> None:
    """Run one statement (CREATE or DROP DATABASE) on the admin connection."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_postgres(admin_dsn: str, prefix: str = "pkgline_bench") -> AsyncIterator[str]:
    """A new, empty database for the block (dropped after it, connections and all): its
    URL, on the admin's server."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await pg_admin(admin_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        await pg_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
