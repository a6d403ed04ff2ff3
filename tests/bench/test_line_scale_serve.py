"""bench/line_scale_serve.py (``line_scale.py --serve``): the line of N tools it writes, and
how bench/line_scale_figures.py turns what it wrote down into notice delays and step times."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from drivers.config import ModbusEndpoint, OpcUaEndpoint
from drivers.model import Mode, ProcessState, ToolStatus
from pkgline.config import load_line_config
from simulators.line import with_free_ports, write_line_config
from tests.bench.conftest import bench_module

ls = bench_module("line_scale_serve")
figures = bench_module("line_scale_figures")

WINDOW = (100.0, 200.0)


def test_the_scaled_line_copies_the_example_round_robin_with_ids_of_their_own(
    tmp_path: Path,
) -> None:
    example = ls.example_config()
    line = ls.scaled_config(example, 30)
    ids = [t.id for t in line.tools]
    assert len(ids) == 30 == len(set(ids))
    assert ids[0] == f"{example.tools[0].id}.0"
    assert ids[len(example.tools)] == f"{example.tools[0].id}.1"
    assert Counter(t.equipment_class for t in line.tools[: len(example.tools)]) == Counter(
        t.equipment_class for t in example.tools
    )
    # the simulators and the controller read it back from a file, on free ports
    path = write_line_config(with_free_ports(line), tmp_path / "line.toml")
    again = load_line_config(path)
    assert [t.id for t in again.tools] == ids
    modbus_ports = [t.endpoint.port for t in again.tools if isinstance(t.endpoint, ModbusEndpoint)]
    assert len(modbus_ports) == len(set(modbus_ports))


def test_opcua_copies_are_grouped_about_per_gateway_to_a_gateway() -> None:
    example = ls.example_config()
    line = ls.scaled_config(example, 13 * 20, per_gateway=20)
    opcua = [t for t in line.tools if isinstance(t.endpoint, OpcUaEndpoint)]
    per_url = Counter(t.endpoint.url for t in opcua)
    assert max(per_url.values()) <= 20
    assert len(per_url) > 2  # more gateways than the example's
    assert all(t.endpoint.object_name is None for t in opcua)  # each its own object: its id


@pytest.mark.parametrize(("tools", "per_gateway"), [(0, 50), (-1, 50), (10, 0)])
def test_a_line_of_no_tools_or_gateways_of_none_is_refused(tools: int, per_gateway: int) -> None:
    with pytest.raises(ValueError, match="at least one"):
        ls.scaled_config(ls.example_config(), tools, per_gateway)


def test_progress_alone_is_not_a_change_a_state_or_job_is() -> None:
    a = ToolStatus(
        ProcessState.EXECUTING, Mode.PRODUCTION, sites_done=1, sites_total=32, job_id="J1"
    )
    more = ToolStatus(
        ProcessState.EXECUTING, Mode.PRODUCTION, sites_done=2, sites_total=32, job_id="J1"
    )
    done = ToolStatus(
        ProcessState.COMPLETE, Mode.PRODUCTION, sites_done=32, sites_total=32, job_id="J1"
    )
    assert not figures.changed(None, figures.state_key(a))  # the first status is no change
    assert not figures.changed(figures.state_key(a), figures.state_key(more))
    assert figures.changed(figures.state_key(more), figures.state_key(done))


EXEC = ("EXECUTING", "J1")
DONE = ("COMPLETE", "J1")
READY = ("READY", None)


def test_a_change_is_recorded_at_the_first_read_showing_its_state_observed_after_it() -> None:
    changes = [
        ("T1", 101.0, EXEC),  # observed at 101.2, read at 101.5
        ("T1", 102.0, DONE),  # left before the controller looked: READY covers it
        ("T1", 102.5, READY),  # observed 102.9, read 103.0
        ("T1", 150.0, ("SETUP", None)),  # no read shows it: not recorded
        ("T1", 99.0, ("IDLE", None)),  # before the window: left out
        ("T2", 120.0, EXEC),  # a tool never read
    ]
    reads = {
        "T1": [
            (100.5, 100.0, ("IDLE", None)),
            (101.1, 101.05, ("IDLE", None)),  # after the change, but not showing it yet
            (101.5, 101.2, EXEC),
            (103.0, 102.9, READY),
            (160.0, 155.0, READY),  # READY again: not the SETUP before it
        ]
    }
    found = figures.notice_delays(changes, reads, WINDOW)
    assert found.recorded_s == pytest.approx([0.5, 1.0, 0.5])
    assert found.observed_s == pytest.approx([0.2, 0.9, 0.4])
    assert found.unrecorded == 2


def job(job_id: str, started: float, lot: str = "L1", step: str = "S", index: int = 0) -> object:
    return figures.JobRow(job_id, "T1", lot, step, index, started)


def test_a_step_runs_from_the_completion_observed_to_the_next_job_started() -> None:
    jobs = [
        job("J1", 110.0),
        job("J2", 120.03),  # next carrier of the same lot and step: in the goal
        job("J3", 130.5, lot="L2"),  # another lot: apart
        job("J4", 150.0, lot="L2", index=1),  # next step of L2: apart; nothing after: unfinished
        job("J5", 40.0),  # its completion (45) before the window: left out
    ]
    completions = {"T1": [45.0, 120.0, 130.0, 140.0, 160.0]}
    steps = figures.step_times(jobs, completions, WINDOW)
    # J1 done 120.0 -> J2 at 120.03; J2 done 130.0 -> J3 at 130.5; J3 done 140.0 -> J4 at 150
    assert steps.carrier_s == pytest.approx([0.03])
    assert steps.other_s == pytest.approx([0.5, 10.0])
    assert steps.unfinished == 1


def test_a_job_whose_completion_was_never_observed_has_no_step() -> None:
    steps = figures.step_times([job("J1", 110.0), job("J2", 120.0)], {}, WINDOW)
    assert (steps.carrier_s, steps.other_s, steps.unfinished) == ([], [], 0)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--tools", "0"], "--tools: one or more numbers of tools"),
        (["--tools", "20", "--wip", "-1"], "--wip: a number of lots"),
        (["--tools", "20", "--per-gateway", "0"], "--per-gateway: 1 or more"),
        (["--tools", "20", "--db-poll", "0"], "--db-poll: seconds between reads"),
    ],
)
def test_bad_serve_arguments_are_refused_saying_what_was_expected(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    scale = bench_module("line_scale")
    with pytest.raises(SystemExit) as exit_:
        scale.main(["--serve", *argv])
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err


def test_every_tool_is_polled_at_the_interval_asked() -> None:
    line = ls.with_poll(ls.scaled_config(ls.example_config(), 15), 0.1)
    assert {t.policy.poll_interval_s for t in line.tools} == {0.1}
