"""The spool file: tool states appended in order, durable, bounded, and read back whatever a
SIGKILL or the disk left in it (a torn last line, a damaged line), never crashing."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.domain.equipment import ToolSnapshot
from pkgline.config import ConfigError, ControllerConfig, load_line_config
from pkgline.controller.spool import Report, Spool, SpoolError, encode
from tests.controller.conftest import line_config
from tests.controller.test_daemon import _spawn, _wait_exit

T0 = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)


def reports(n: int, tool: str = "DB-1", start: int = 0) -> list[Report]:
    return [
        (
            tool,
            ToolSnapshot(
                connected=True,
                e10="productive" if i % 2 else "standby",
                process_state="EXECUTING" if i % 2 else "READY",
                alarm={"code": 7, "text": "lid open", "severity": "warning"} if i == 3 else None,
                sites_done=i,
            ),
            T0 + timedelta(seconds=i),
        )
        for i in range(start, start + n)
    ]


def opened(path: Path, max_bytes: int = 1_000_000) -> Spool:
    spool = Spool(path, max_bytes)
    spool.open()
    return spool


def test_appended_states_read_back_in_order_with_their_times(tmp_path: Path) -> None:
    spool = opened(tmp_path / "spool" / "line-1.jsonl")
    try:
        written = reports(5)
        assert spool.append(written[:2]) == [] and spool.append(written[2:]) == []
        assert spool.records == 5 and spool.size_bytes == spool.path.stat().st_size
        found, end, lines = spool.read(0, 3)
        assert found == written[:3] and lines == 3
        rest, end, lines = spool.read(end, 100)
        assert rest == written[3:] and lines == 2 and end == spool.size_bytes
    finally:
        spool.close()


def test_what_a_previous_run_spooled_is_found_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "line-1.jsonl"
    first = opened(path)
    first.append(reports(4))
    first.close()
    second = opened(path)
    try:
        assert second.records == 4
        assert second.read(0, 100)[0] == reports(4)
    finally:
        second.close()


def test_the_directory_is_created_private_and_the_file_is_not_world_readable(
    tmp_path: Path,
) -> None:
    spool = opened(tmp_path / "state" / "spool" / "line-1.jsonl")
    spool.close()
    assert stat.S_IMODE((tmp_path / "state" / "spool").stat().st_mode) == 0o700
    assert stat.S_IMODE(spool.path.stat().st_mode) & 0o077 == 0


def test_a_torn_last_line_is_cut_off_with_a_log_line_and_the_spool_goes_on(
    tmp_path: Path,
) -> None:
    """A SIGKILL in the middle of a write leaves a last line without its newline: it is cut
    off (never read as a record, never glued to the next one)."""
    path = tmp_path / "line-1.jsonl"
    whole = b"".join(encode(r) for r in reports(3))
    path.write_bytes(whole + encode(reports(1, start=3)[0])[:25])
    with capture_logs() as logs:
        spool = opened(path)
    try:
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
            "spool: torn last record cut off (the controller was stopped while writing it)"
        ]
        assert spool.records == 3 and path.stat().st_size == len(whole)
        spool.append(reports(1, start=3))
        assert spool.read(0, 100)[0] == reports(4)
    finally:
        spool.close()


def test_a_damaged_line_is_skipped_with_a_log_line(tmp_path: Path) -> None:
    path = tmp_path / "line-1.jsonl"
    good = reports(2)
    path.write_bytes(
        encode(good[0]) + b'{"v": 1, "tool": "DB-1", "at": "yesterday"}\n' + b"\x00\xff\n"
        b'{"v": 1, "tool": "DB-1", "at": "2026-12-02T07:00:00", "state": {"connected": true, '
        b'"e10": "standby"}}\n' + encode(good[1])
    )
    spool = opened(path)
    try:
        with capture_logs() as logs:
            found, end, lines = spool.read(0, 100)
        assert found == good and lines == 5 and end == path.stat().st_size
        skipped = [e for e in logs if e["event"] == "spool: a damaged record skipped"]
        assert len(skipped) == 3
        assert "UTC offset" in skipped[2]["error"]
    finally:
        spool.close()


def test_past_its_bound_the_spool_takes_nothing_more_until_it_is_cleared(
    tmp_path: Path,
) -> None:
    one = len(encode(reports(1)[0]))
    spool = opened(tmp_path / "line-1.jsonl", max_bytes=3 * one + one // 2)
    try:
        batch = reports(5)
        assert spool.append(batch[:2]) == []
        assert spool.append(batch[2:]) == batch[3:], "what does not fit is given back, in order"
        assert (spool.full, spool.records) == (True, 3) and spool.size_bytes <= spool.max_bytes
        small = reports(1, tool="X")  # would fit in what is left: not taken, no gap
        assert spool.append(small) == small
        spool.clear()
        assert (spool.full, spool.records, spool.path.stat().st_size) == (False, 0, 0)
        assert spool.append(small) == [] and spool.read(0, 10)[0] == small
    finally:
        spool.close()


def test_a_spool_directory_that_cannot_be_made_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    spool = Spool(tmp_path / "file" / "spool" / "line-1.jsonl", 1000)
    with pytest.raises(SpoolError, match=r"controller\.spool_dir") as caught:
        spool.check()
    assert isinstance(caught.value, ConfigError)
    with pytest.raises(SpoolError):
        spool.open()


def test_the_spool_is_under_systemds_state_directory_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    controller = ControllerConfig()
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/pkgline")
    assert controller.spool_path("line-1") == Path("/var/lib/pkgline/spool/line-1.jsonl")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert controller.spool_path("line-1") == tmp_path / "pkgline" / "spool" / "line-1.jsonl"
    chosen = ControllerConfig(spool_dir=tmp_path / "elsewhere", spool_max_mb=0.5)
    assert chosen.spool_path("L") == tmp_path / "elsewhere" / "L.jsonl"
    assert chosen.spool_max_bytes == 500_000


def test_a_relative_spool_directory_or_no_bound_is_refused_with_the_setting_named(
    tmp_path: Path,
) -> None:
    path = tmp_path / "line.toml"
    path.write_text('name = "L"\n[controller]\nspool_dir = "spool"\n')
    with pytest.raises(ConfigError, match=r"controller\.spool_dir: .*absolute path"):
        load_line_config(path)
    path.write_text('name = "L"\n[controller]\nspool_max_mb = 0\n')
    with pytest.raises(ConfigError, match=r"controller\.spool_max_mb: .*greater than 0"):
        load_line_config(path)


async def test_serve_with_a_spool_directory_it_cannot_make_stops_with_the_usage_code(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Exit 2 (systemd does not restart it: a restart cannot fix the configuration), one
    clear line naming the directory and the setting, no traceback."""
    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    (tmp_path / "file").write_text("not a directory")
    config = line_config(tools=["DB-1"])
    controller = config.controller.model_copy(update={"spool_dir": tmp_path / "file" / "spool"})
    config = config.model_copy(update={"controller": controller})
    proc = _spawn(config, tmp_path, sqlite_url)
    assert await _wait_exit(proc, 60) == 2
    log = (tmp_path / f"{config.name}.log").read_text()
    assert "controller.spool_dir" in log and str(tmp_path / "file" / "spool") in log
    assert "Traceback" not in log
