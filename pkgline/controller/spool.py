"""The spool: tool state changes that wait on local disk while the database is unavailable
(as SEMI E30 equipment spools its messages while its host is away).

One file per line controller, ``<spool_dir>/<line>.jsonl``, append-only, one JSON object a
line, in the order observed::

    {"v": 1, "tool": "DB-1", "at": "2026-12-02T07:31:05.123456+00:00",
     "state": {"connected": true, "e10": "productive", "process_state": "EXECUTING", ...}}

Each batch is appended with one ``write`` and made durable with ``fsync`` before the
reporter goes on, so a batch spooled survives a SIGKILL or a power cut. A SIGKILL in the
middle of a write leaves at most a torn last line (no newline at its end): :meth:`Spool.open`
cuts it off, with a log line; a line that does not read as a record (damaged on disk) is
skipped with a log line; nothing here crashes the controller.

The file is read back in chunks (:meth:`Spool.read`) and emptied (:meth:`Spool.clear`) only
once everything in it has been written to the database. Writing it twice does no harm
(the reporter writes it with ``only_newer``: what the tool's record already has is left
out), so a crash between the database's commit and the truncation duplicates nothing.

Bounded: once the file would pass ``max_bytes``, :meth:`Spool.append` takes nothing more
(and returns what it did not take) until it is cleared; the reporter keeps each tool's
latest state in memory instead (:mod:`pkgline.controller.reporter`).

The methods do blocking file I/O: the reporter runs them on a worker thread, one at a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import structlog

from mes.domain.equipment import ToolSnapshot
from pkgline.config import ConfigError

log = structlog.get_logger("pkgline.controller")

Report = tuple[str, ToolSnapshot, datetime]
"""A tool's state as observed: tool id, what it did, when (timezone-aware)."""

VERSION = 1
_FIELDS = frozenset(f.name for f in dataclasses.fields(ToolSnapshot))


class SpoolError(ConfigError):
    """The spool cannot be used: its directory or file cannot be created or opened (the
    message says where, and the setting)."""


def encode(report: Report) -> bytes:
    tool_id, snapshot, at = report
    record = {
        "v": VERSION,
        "tool": tool_id,
        "at": at.isoformat(),
        "state": dataclasses.asdict(snapshot),
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def decode(line: bytes) -> Report:
    """One spooled record; ValueError (saying what was expected) for a line that is not one."""
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("v") != VERSION:
        raise ValueError(f"expected an object with v={VERSION}")
    tool_id, at, state = record.get("tool"), record.get("at"), record.get("state")
    if not isinstance(tool_id, str) or not isinstance(at, str) or not isinstance(state, dict):
        raise ValueError("expected tool (text), at (ISO time) and state (object)")
    when = datetime.fromisoformat(at)
    if when.tzinfo is None:
        raise ValueError(f"expected a time with its UTC offset, got {at!r}")
    if not state.keys() <= _FIELDS or not {"connected", "e10"} <= state.keys():
        raise ValueError(f"expected state fields among {', '.join(sorted(_FIELDS))}")
    return tool_id, ToolSnapshot(**state), when


class Spool:
    """The spool file of one line controller, bounded at ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._size = 0
        self._records = 0
        self._full = False

    # -- what the operator sees --------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def records(self) -> int:
        """Records in the file (those left by a previous run included)."""
        return self._records

    @property
    def full(self) -> bool:
        """Something did not fit since the spool was last cleared."""
        return self._full

    # -- the file ----------------------------------------------------------------------------

    def check(self) -> None:
        """Create the directory (mode 0700) if need be, and check that the controller may
        write there and use the file: SpoolError if not (at start, before anything else is
        done)."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(self._cannot(exc.strerror or str(exc))) from exc
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise SpoolError(self._cannot("not writable"))
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            # e.g. left by a run as another user: what it holds is written once it can be read
            raise SpoolError(self._cannot(f"{self.path.name} is not readable and writable"))

    def _cannot(self, why: str) -> str:
        return (
            f"cannot use the spool directory {self.path.parent}: {why} (controller.spool_dir "
            "in line.toml: a directory the controller may write)"
        )

    def open(self) -> None:
        """Create the directory (mode 0700) and the file (0600) if need be, and take stock of
        what a previous run left: a torn last line is cut off (logged)."""
        self.check()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SpoolError(self._cannot(f"{self.path.name}: {exc.strerror or exc}")) from exc
        self._fd = fd
        _fsync_dir(self.path.parent)
        size = os.fstat(fd).st_size
        good_end, records = 0, 0
        with self.path.open("rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                good_end += len(line)
                records += 1
        if good_end < size:
            log.warning(
                "spool: torn last record cut off (the controller was stopped while writing it)",
                spool=str(self.path),
                bytes=size - good_end,
            )
            os.ftruncate(fd, good_end)
            os.fsync(fd)
        self._size, self._records = good_end, records
        if records:
            log.info(
                "spool: tool states left by the last run",
                spool=str(self.path),
                records=records,
                bytes=good_end,
            )

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def append(self, reports: Sequence[Report]) -> list[Report]:
        """Append ``reports`` in order and make them durable (one write, one fsync); those
        past the bound are not taken: returned, in order. Once full, nothing is taken until
        :meth:`clear` (so the file never has a gap in the middle). OSError when the disk
        fails (then nothing of ``reports`` may be counted as spooled)."""
        fd = self._require_open()
        if self._full:
            return list(reports)
        data = bytearray()
        taken = 0
        for report in reports:
            line = encode(report)
            if self._size + len(data) + len(line) > self.max_bytes:
                self._full = True
                break
            data += line
            taken += 1
        if data:
            try:
                _write_all(fd, bytes(data))
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, self._size)  # no half batch left behind
                raise
            self._size += len(data)
            self._records += taken
        return list(reports[taken:])

    def read(self, offset: int, limit: int) -> tuple[list[Report], int, int]:
        """Up to ``limit`` records from byte ``offset`` on, the offset after them and the
        number of lines read. A line that is not a record is skipped (logged)."""
        self._require_open()
        found: list[Report] = []
        lines = 0
        with self.path.open("rb") as f:
            f.seek(offset)
            while lines < limit and offset < self._size:
                line = f.readline()
                if not line:
                    break
                offset += len(line)
                lines += 1
                try:
                    found.append(decode(line))
                except ValueError as exc:
                    log.warning(
                        "spool: a damaged record skipped",
                        spool=str(self.path),
                        at_byte=offset - len(line),
                        error=str(exc),
                    )
        return found, offset, lines

    def clear(self) -> None:
        """Empty the file (everything in it is in the database)."""
        fd = self._require_open()
        os.ftruncate(fd, 0)
        os.fsync(fd)
        self._size, self._records, self._full = 0, 0, False

    def _require_open(self) -> int:
        if self._fd is None:
            raise SpoolError(f"the spool {self.path} is not open")
        return self._fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    """Make the file's directory entry durable too (a new spool file survives a power cut)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
