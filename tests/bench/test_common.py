"""bench/common.py: what every benchmark prints its load, verdicts and spreads with."""

from __future__ import annotations

import math
import os
import re

import pytest

from tests.bench.conftest import bench_module

common = bench_module("common")


def test_load_names_the_three_averages_and_the_cpus() -> None:
    assert re.fullmatch(
        rf"load average \d+\.\d+ \d+\.\d+ \d+\.\d+ on {os.cpu_count()} CPUs", common.load()
    )


def test_load_is_printed_at_start_and_at_end_even_when_the_run_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run() -> None:
        with common.load_printed("bench"):
            print("measuring")
            raise RuntimeError("failed midway")

    with pytest.raises(RuntimeError, match="failed midway"):
        run()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("bench: load average ") and lines[0].endswith("(start)")
    assert lines[1] == "measuring"
    assert lines[2].startswith("bench: load average ") and lines[2].endswith("(end)")


def test_a_verdict_says_met_or_not_met_with_what_was_measured() -> None:
    assert (
        common.verdict("p99 < 50 ms", True, "p99 41.0 ms")
        == "  goal p99 < 50 ms: met (p99 41.0 ms)"
    )
    assert common.verdict("ratio >= 0.8", False) == "  goal ratio >= 0.8: NOT met"


def test_pct_takes_a_measured_value_by_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert common.pct(values, 0.0) == 1.0
    assert common.pct(values, 0.5) == 3.0
    assert common.pct(values, 0.99) == 5.0
    assert common.pct(values, 1.0) == 5.0
    assert math.isnan(common.pct([], 0.5))


def test_a_spread_is_the_median_and_the_extremes_of_its_runs() -> None:
    spread = common.Spread.of([0.9, 0.5, 0.7])
    assert (spread.median, spread.low, spread.high, spread.runs) == (0.7, 0.5, 0.9, 3)
    assert spread.format() == "0.70 (0.50-0.90 over 3 runs)"
    assert common.Spread.of([1.0, 3.0]).median == 2.0
    with pytest.raises(ValueError, match="at least one"):
        common.Spread.of([])


def test_stat_cpu_reads_a_name_with_spaces_and_parentheses() -> None:
    hz = os.sysconf("SC_CLK_TCK")
    fields = ["S"] + ["0"] * 10 + [str(3 * hz), str(hz)] + ["0"] * 30
    name, seconds = common.stat_cpu(f"42 (odd) name) {' '.join(fields)}")
    assert name == "odd) name"
    assert seconds == pytest.approx(4.0)


def test_cpu_seconds_of_this_process_grow_as_it_works() -> None:
    before = common.cpu_seconds(os.getpid())
    end = before + 0.05
    while common.cpu_seconds(os.getpid()) < end:
        sum(range(10_000))
    assert common.cpu_seconds(os.getpid()) >= end


def test_every_benchmark_prints_the_load_and_its_verdicts_through_this_module() -> None:
    """Each bench script takes the load (and, where it has goals, the verdict line) from
    bench/common.py instead of a copy of its own."""
    from tests.bench.conftest import BENCH

    not_benchmarks = {  # modules the benchmarks share or run
        "common.py",
        "line_scale_figures.py",
        "moves_floor.py",
        "seed.py",
        "seed_walk.py",
    }
    no_goal = {"signatures.py", "soak.py", "seed.py"}
    for script in sorted(BENCH.glob("*.py")):
        if script.name in not_benchmarks:
            continue
        source = script.read_text(encoding="utf-8")
        imported = re.search(r"^from common import (\([^)]*\)|.+)$", source, re.MULTILINE)
        assert imported, f"{script.name} does not import bench/common.py"
        assert re.search(r"\bload(_printed)?\b", imported.group(1)), script.name
        assert "getloadavg" not in source and "/proc/loadavg" not in source, script.name
        if script.name not in no_goal:
            assert "print_verdict" in source, f"{script.name} prints no verdict line"
