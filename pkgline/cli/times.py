"""Times as the CLI prints them: in the local time zone of whoever runs the command ($TZ),
as a time given without an offset is read (``--expires 2027-01-31 18:00``, ``--since``).
The lot tracker keeps UTC, and ``--json`` gives it as ISO 8601 with its offset."""

from __future__ import annotations

from datetime import UTC, datetime


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


def when(text: str, option: str, *, as_json: bool) -> datetime:
    """``--since``/``--until``: a duration ago (``30m``, ``8h``, ``2d``) or a time (local
    when it has no offset, as every time the CLI prints); a usage error (exit 2) else."""
    from pkgline.cli.common import usage_error
    from pkgline.tool_views import parse_window  # only where a time is given

    try:
        return datetime.now(UTC) - parse_window(text)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        usage_error(
            f"{option} {text!r}: expected a duration ago (30m, 8h, 2d; at most 36500d) or a time "
            "(2026-05-01 or 2026-05-01T08:00, local unless an offset is given)",
            as_json=as_json,
        )
    try:
        at = at if at.tzinfo else at.astimezone()
    except (OverflowError, ValueError):  # year 1 or 9999 west or east of UTC
        at = at.replace(tzinfo=UTC)
    return in_utc_range(at, f"{option} {text!r}", as_json=as_json)


def in_utc_range(at: datetime, what: str, *, as_json: bool) -> datetime:
    """``at`` (aware), unless it falls outside the years 1 to 9999 in UTC, where the lot
    tracker keeps every time: a usage error (exit 2) then."""
    from pkgline.cli.common import usage_error

    try:
        at.astimezone(UTC)
    except OverflowError:
        usage_error(
            f"{what}: expected a time from 0001-01-01 to 9999-12-31 in UTC", as_json=as_json
        )
    return at


def window(
    since: str | None, until: str | None, *, as_json: bool
) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` as :func:`when` reads them (None where not given)."""
    return (
        None if since is None else when(since, "--since", as_json=as_json),
        None if until is None else when(until, "--until", as_json=as_json),
    )


def iso(at: datetime | None) -> str | None:
    """A time for the server's query string (ISO 8601 with its offset)."""
    return None if at is None else at.isoformat()
