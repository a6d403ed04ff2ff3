"""Logging for the daemon and the simulators: structlog, one renderer for every line.

- JSON lines when the output is not a terminal (systemd's journal: ``journalctl -u pkgline
  -o cat | jq``), a readable console renderer on a terminal.
- Context bound with :func:`structlog.contextvars.bind_contextvars` (``tool_id``, ``lot_id``)
  appears on every line logged while it is bound, stdlib records included.
- Timestamps in UTC, ISO 8601.
- Libraries' stdlib logging (SQLAlchemy, asyncua, pymodbus, ...) goes through the same
  renderer (:class:`structlog.stdlib.ProcessorFormatter`); the noisy ones are turned down,
  since the drivers log connectivity themselves, once, on the edge.
- When stderr is the journal (``$JOURNAL_STREAM``), each JSON line starts with its syslog
  priority (``<4>``), which journald strips and keeps: ``journalctl -p warning`` works.

Called once by an entry point (never at import); calling it again replaces the previous
set-up.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

QUIET_LOGGERS: Final[Mapping[str, int]] = {
    # INFO on every connect, session, subscription and browse.
    "asyncua": logging.WARNING,
    # pymodbus logs "Failed to connect ..." at WARNING on every connection attempt
    # (pymodbus/transport/transport.py, ModbusProtocol.connect) and "Not connected, trying to
    # connect!" at WARNING before a request on a closed client. The driver's supervision
    # reconnects with backoff and logs "tool offline" / "tool back online" once each, so those
    # warnings would repeat every backoff step of every unreachable tool for nothing. Its
    # ERRORs (undecodable frames, unanswered requests) are kept.
    "pymodbus": logging.ERROR,
    # Statements and pool events, when enabled, belong in a debugging session, not the journal.
    "sqlalchemy": logging.WARNING,
    # DEBUG: a line per operation on its worker thread.
    "aiosqlite": logging.WARNING,
    "asyncpg": logging.WARNING,
    # DEBUG: selector and slow-callback chatter.
    "asyncio": logging.WARNING,
}
"""Library loggers and the least severe level they may log at (or the configured level,
when that is more severe)."""

_PAHO_SOCKET_ECHOES: Final = ("failed to receive on socket", "timeout on socket")
"""What paho (the MQTT client under aiomqtt, logger ``mqtt``) logs at ERROR when the broker's
connection breaks: the event feed and the Sparkplug node say it themselves, once, as a
warning naming the broker (``event feed down``, ``sparkplug broker unreachable``). Found by
a probe: each broker restart or network cut put an error line with no broker in it in the
journal (``journalctl -p err``, a plant's alerting). paho's other errors (a callback's
exception, an unknown command) and aiomqtt's own lines are kept."""


def _not_a_socket_echo(record: logging.LogRecord) -> bool:
    return not (record.name == "mqtt" and str(record.msg).startswith(_PAHO_SOCKET_ECHOES))


_SYSLOG_PRIORITY: Final[Mapping[str, int]] = {
    "critical": 2,
    "error": 3,
    "exception": 3,
    "warning": 4,
    "warn": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
}


class _Handler(logging.StreamHandler[TextIO]):
    """The one handler :func:`configure_logging` puts on the root logger (so that a second
    call can find and replace it)."""


def configure_logging(
    level: str | int = "info",
    json: bool | None = None,
    *,
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging to ``stream`` (default: ``sys.stderr``).

    ``level``: the least severe level logged (``"debug"``, ``"info"``, ``"warning"``, ...
    or a :mod:`logging` number). ``json``: JSON lines (True), the console renderer (False),
    or JSON unless ``stream`` is a terminal (None). Safe to call again: the new set-up
    replaces the previous one, for loggers already created too.
    """
    numeric_level = _level(level)
    out = sys.stderr if stream is None else stream
    is_tty = _isatty(out)
    as_json = not is_tty if json is None else json

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Not cached: module-level loggers (structlog.get_logger at import) follow a later
        # call. Lines are logged on the edge, so the lookup per call costs nothing that counts.
        cache_logger_on_first_use=False,
    )

    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if as_json:
        final += [structlog.processors.format_exc_info, _lead_with_essentials]
        renderer: Processor = structlog.processors.JSONRenderer()
        if _is_journal(out):
            renderer = _SyslogPrefix(renderer)
        final.append(renderer)
    else:
        final.append(structlog.dev.ConsoleRenderer(colors=is_tty))

    handler = _Handler(out)
    handler.addFilter(_not_a_socket_echo)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet, numeric_level))


_ESSENTIALS: Final = ("timestamp", "level", "logger", "event")


def _lead_with_essentials(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Put when, how bad, who and what first on a JSON line (easier to read in the journal)."""
    lead = {key: event_dict.pop(key) for key in _ESSENTIALS if key in event_dict}
    return {**lead, **event_dict}


class _SyslogPrefix:
    """Prefix a rendered line with ``<N>``, its syslog priority, for journald."""

    def __init__(self, renderer: Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        priority = _SYSLOG_PRIORITY.get(str(event_dict.get("level", "")).lower(), 6)
        line = self._renderer(logger, method_name, event_dict)
        if isinstance(line, bytes | bytearray):
            line = line.decode("utf-8")
        return f"<{priority}>{line}"


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    names = logging.getLevelNamesMapping()
    try:
        return names[level.upper()]
    except KeyError:
        known = ", ".join(n.lower() for n in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
        raise ValueError(f"unknown log level {level!r}; one of {known}") from None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _is_journal(stream: TextIO) -> bool:
    """Whether ``stream`` is the journal stream systemd connected us to: ``$JOURNAL_STREAM``
    is ``DEVICE:INODE`` of that stream (``systemd.exec(5)``)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.StringIO has no file descriptor
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"
