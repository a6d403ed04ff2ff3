"""The edge node's birth/death sequence number (bdSeq), kept in a file across restarts."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from pkgline.sparkplug.config import SparkplugError

log = structlog.get_logger("pkgline.sparkplug")


class BdSeq:
    """The birth/death sequence number: 0..255, one more on every MQTT CONNECT, kept in a file
    so that a restarted controller goes on from its last one (host applications pair an
    NDEATH with its NBIRTH by it). A file that cannot be written is logged once; the number
    then lives in memory."""

    def __init__(self, path: Path):
        self.path = path
        self._last: int | None = None
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            text = ""
        except UnicodeDecodeError as exc:
            raise SparkplugError(
                f"{path}: expected a bdSeq 0..255, found bytes that are no text (byte {exc.start})"
            ) from None
        except OSError as exc:
            raise SparkplugError(
                f"{path}: cannot read the Sparkplug bdSeq: {exc.strerror}"
            ) from exc
        if text:
            if not (text.isascii() and text.isdigit()) or int(text) > 255:
                raise SparkplugError(f"{path}: expected a bdSeq 0..255, found {text[:20]!r}")
            self._last = int(text)
        self._warned = False

    @property
    def last(self) -> int | None:
        return self._last

    def advance(self) -> int:
        """The bdSeq of the next CONNECT, written down before it is used."""
        value = 0 if self._last is None else (self._last + 1) % 256
        self._last = value
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="ascii") as out:
                out.write(f"{value}\n")
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot keep the Sparkplug bdSeq", path=str(self.path), error=str(exc))
                self._warned = True
        return value
