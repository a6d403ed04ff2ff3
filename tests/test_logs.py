"""Logging set-up: JSON lines off a terminal (the journal), with the bound context and UTC ISO
timestamps, for structlog and stdlib records alike; a console renderer on a terminal; the
noisy libraries turned down; safe to call twice."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars

from pkgline.logs import QUIET_LOGGERS, configure_logging

log = structlog.get_logger("pkgline.tests")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test configures logging for the whole process: put everything back after it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    was_configured, config = structlog.is_configured(), structlog.get_config()
    clear_contextvars()
    yield
    clear_contextvars()
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)
    if was_configured:
        structlog.configure(**config)
    else:
        structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_context_bound_with_contextvars() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    bind_contextvars(tool_id="WB-01", lot_id="L2024-0001")
    log.info("track-in", step="WIRE_BOND")
    [line] = _lines(out)
    assert line["event"] == "track-in"
    assert line["level"] == "info"
    assert line["logger"] == "pkgline.tests"
    assert (line["tool_id"], line["lot_id"], line["step"]) == ("WB-01", "L2024-0001", "WIRE_BOND")


def test_json_lines_start_with_when_how_bad_who_and_what() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    log.warning("tool offline", reason="connection refused", tool_id="DA-02")
    assert list(_lines(out)[0])[:4] == ["timestamp", "level", "logger", "event"]


def test_timestamps_are_utc_iso_8601() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    before = datetime.now(UTC)
    log.info("tick")
    stamp = _lines(out)[0]["timestamp"]
    assert stamp.endswith("Z")
    when = datetime.fromisoformat(stamp)
    assert when.utcoffset() is not None
    assert when.utcoffset() == UTC.utcoffset(None)
    assert abs((when - before).total_seconds()) < 60


def test_stdlib_records_come_out_through_the_same_renderer_with_the_context() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    with bound_contextvars(tool_id="MOLD-01"):
        logging.getLogger("sqlalchemy.pool").warning("connection %s invalidated", "c7")
    [line] = _lines(out)
    assert line["event"] == "connection c7 invalidated"
    assert line["logger"] == "sqlalchemy.pool"
    assert line["level"] == "warning"
    assert line["tool_id"] == "MOLD-01"
    assert line["timestamp"].endswith("Z")


def test_exceptions_are_one_traceback_string_in_json() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    try:
        raise ZeroDivisionError("no carriers")
    except ZeroDivisionError:
        log.exception("dispatch failed")
        logging.getLogger("asyncua.client").exception("publish failed")
    ours, theirs = _lines(out)
    for line in (ours, theirs):
        assert line["level"] == "error"
        assert "ZeroDivisionError: no carriers" in line["exception"]


def test_the_level_filters_structlog_and_stdlib_records() -> None:
    out = io.StringIO()
    configure_logging("warning", json=True, stream=out)
    log.info("hidden")
    logging.getLogger("mes.something").info("hidden too")
    log.warning("shown")
    logging.getLogger("mes.something").error("shown too")
    assert [line["event"] for line in _lines(out)] == ["shown", "shown too"]


def test_debug_level_shows_our_debug_lines() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", json=True, stream=out)
    log.debug("polled", tool_id="WB-01")
    assert [line["event"] for line in _lines(out)] == ["polled"]


def test_pymodbus_connection_attempt_warnings_are_dropped_but_its_errors_kept() -> None:
    out = io.StringIO()
    configure_logging("debug", json=True, stream=out)
    pymodbus = logging.getLogger("pymodbus.logging")  # the one logger pymodbus logs to
    pymodbus.warning("Failed to connect [Errno 111] Connection refused")
    pymodbus.error("Invalid Modbus protocol id: 7")
    assert [line["event"] for line in _lines(out)] == ["Invalid Modbus protocol id: 7"]


def test_noisy_libraries_log_warnings_only() -> None:
    out = io.StringIO()
    configure_logging("debug", json=True, stream=out)
    for name in ("asyncua.client.client", "sqlalchemy.engine.Engine", "aiosqlite", "asyncio"):
        logging.getLogger(name).info("chatter")
        logging.getLogger(name).debug("chatter")
    logging.getLogger("asyncua.client.client").warning("Revised values differ")
    assert [line["event"] for line in _lines(out)] == ["Revised values differ"]


def test_a_more_severe_configured_level_also_quiets_the_libraries() -> None:
    out = io.StringIO()
    configure_logging("error", json=True, stream=out)
    logging.getLogger("asyncua").warning("dropped")
    assert out.getvalue() == ""


def test_calling_it_again_replaces_the_set_up_instead_of_adding_to_it() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(json=True, stream=first)
    configure_logging("warning", json=True, stream=second)
    configure_logging("info", json=True, stream=second)
    log.info("once")
    logging.getLogger("mes").info("once too")
    assert first.getvalue() == ""
    assert [line["event"] for line in _lines(second)] == ["once", "once too"]


def test_json_false_gives_the_readable_console_renderer() -> None:
    out = io.StringIO()
    configure_logging(json=False, stream=out)
    bind_contextvars(tool_id="WB-01")
    log.warning("tool offline", reason="refused")
    text = out.getvalue()
    assert "tool offline" in text
    assert "tool_id=WB-01" in text
    assert "reason=refused" in text
    assert "\x1b[" not in text, "no colours when the stream is not a terminal"
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_json_is_the_default_off_a_terminal() -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    log.info("ready")
    assert _lines(out)[0]["event"] == "ready"


def test_the_console_renderer_is_the_default_on_a_terminal() -> None:
    controller, terminal = pty.openpty()
    try:
        with open(terminal, "w", encoding="utf-8", closefd=False) as stream:
            configure_logging(stream=stream)
            log.info("ready", tools=3)
            stream.flush()
            text = os.read(controller, 4096).decode("utf-8")
            logging.getLogger().handlers[-1].close()
    finally:
        os.close(controller)
        os.close(terminal)
    assert "ready" in text
    assert "tools" in text
    assert not text.lstrip().startswith("{")


def test_on_the_journal_stream_each_json_line_starts_with_its_syslog_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal"
    with path.open("w", encoding="utf-8") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        configure_logging("debug", stream=stream)
        log.debug("polled")
        log.info("tool online")
        log.warning("tool offline")
        logging.getLogger("mes").error("failed")
        logging.getLogger("mes").critical("gave up")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    assert json.loads(lines[2][3:])["event"] == "tool offline"


def test_another_file_than_the_journal_stream_gets_plain_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")
    path = tmp_path / "log.jsonl"
    with path.open("w", encoding="utf-8") as stream:
        configure_logging(stream=stream)
        log.info("ready")
    assert json.loads(path.read_text(encoding="utf-8"))["event"] == "ready"


def test_an_unknown_level_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'; one of debug, info"):
        configure_logging("loud", stream=io.StringIO())


def test_paho_socket_failures_are_dropped_but_its_other_errors_kept() -> None:
    """The event feed logs a broken broker connection itself ("event feed down", naming the
    broker); paho's own error line for it, with no broker, is dropped."""
    out = io.StringIO()
    configure_logging("debug", json=True, stream=out)
    paho = logging.getLogger("mqtt")  # the logger aiomqtt gives paho
    paho.error("failed to receive on socket: %s", "[Errno 104] Connection reset by peer")
    paho.error("timeout on socket: %s", "timed out")
    paho.error("Caught exception in on_connect: %s", "boom")
    assert [line["event"] for line in _lines(out)] == ["Caught exception in on_connect: boom"]
