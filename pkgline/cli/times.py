"""Times as the CLI prints them: in the local time zone of whoever runs the command ($TZ),
as a time given without an offset is read (``--expires 2027-01-31 18:00``, ``--since``).
The lot tracker keeps UTC, and ``--json`` gives it as ISO 8601 with its offset."""

from __future__ import annotations

from datetime import datetime


def _local(at: datetime | str) -> datetime:
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    try:
        return when.astimezone()
    except (OverflowError, ValueError):  # year 1 or 9999 has no local time west or east of UTC
        return when


def stamp(at: datetime | str, *, seconds: bool = True, zone: bool = False) -> str:
    """``2027-01-31 18:00:00`` (or without seconds), local, the year in four digits; with
    the zone's name after it (``2027-01-31 18:00:00 JST``) where a record needs it."""
    local = _local(at)
    clock = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    named = f" {local.tzname()}" if zone and local.tzname() else ""
    return f"{local.year:04d}-{local:%m-%d} {clock}{named}"


def short(at: datetime | str) -> str:
    """``01-31 18:00:00``, local: a history's rows, whose year the header gives."""
    return f"{_local(at):%m-%d %H:%M:%S}"


def clock(at: datetime | str) -> str:
    """A time of day, local; the date too when it is not today."""
    local = _local(at)
    if local.date() == datetime.now().astimezone().date():
        return f"{local:%H:%M:%S}"
    return stamp(local)
