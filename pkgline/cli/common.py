"""What every pkgline command shares: options, input parsing, output, and exit codes.

Exit codes (a contract for scripts):

==  ==========================================================================
0   done
1   refused by the lot tracker's rules (state, step order, a claimed limit, unknown lot,
    invalid value); nothing was changed
2   the command line itself is wrong (unknown option, malformed KEY=VALUE, bad URL)
3   conflict: another process moved the same lot first, or the database refused for now
    (deadlock, too many connections); nothing was changed, retry
4   the database or a data file is not usable (unreachable or not answering within the
    connect timeout, 5 s; read-only; schema not current)
5   asked but not carried out: the tool or its line controller did not answer (``pkgline
    tool reset``: the tool could not be reached, or no controller took the request in time)
6   ``audit verify``: the history does not verify (changed, missing or unguarded entries)
==  ==========================================================================
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

import typer

from pkgline.cli.bounds import MAX_SITE_COLS, MAX_SITE_ROWS
from pkgline.page_sizes import SHOW_HISTORY, SHOW_LOTS

if TYPE_CHECKING:
    # imported where used: a command through the server (pkgline.cli.remote) imports
    # neither the lot tracker nor SQLAlchemy (tests/test_imports.py), nor rich for --json
    from rich.console import Console
    from rich.text import Text

    from mes.domain.commands import SiteRejectGiven

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_UNAVAILABLE = 4
EXIT_NOT_CARRIED_OUT = 5
EXIT_TAMPERED = 6

T = TypeVar("T")

Refusal = Callable[[dict[str, Any]], dict[str, Any]]
"""A refusal's JSON as a command prints it (:func:`run`, :func:`pkgline.cli.modes.call`)."""


PIPE_WIDTH = 1000
"""The width a table is printed at into a pipe or a file: rich would take 80 columns there
and cut lot ids, steps and measured values short; a table is as wide as it needs, up to this."""


class _LazyConsole:
    """A rich Console made on its first use: a command that prints JSON, or nothing, does
    not import rich (about a tenth of the start-up of ``pkgline lot show --json``).

    Into a pipe or a file (``| less``, ``> report.txt``, a script) it prints tables whole,
    at the width they need, unless $COLUMNS says otherwise; on a terminal at the terminal's
    width, where a cell that does not fit folds (every table column is ``overflow="fold"``)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def _get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            from pkgline.cli.printable import printable_console

            console = printable_console(Console(**self._options))
            if not console.is_terminal and not os.environ.get("COLUMNS"):
                console.width = PIPE_WIDTH
            self._console = console
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __enter__(self) -> Console:  # rich's Live holds its console this way
        return self._get().__enter__()

    def __exit__(self, *exc: object) -> None:
        self._get().__exit__(*exc)


# markup off: what is printed is printed as it is, brackets and all. A lot id, a hold reason
# or a tool's alarm text such as "[red] marks" or "[/b]" is data, not a style (with rich's
# markup on, the one vanished and the other ended the command with a MarkupError); styles are
# given as Text (marked, below).
out = cast("Console", _LazyConsole(highlight=False, soft_wrap=True, markup=False))
err = cast("Console", _LazyConsole(stderr=True, highlight=False, soft_wrap=True, markup=False))


def marked(mark: str, style: str, message: str = "") -> Text:
    """``mark`` in ``style`` (a ✔ in green, "error:" in bold red), then ``message`` as it is."""
    from rich.text import Text

    return Text.assemble((mark, style), f" {message}" if message else "")


def _database_given(value: str | None) -> str | None:
    """``--db`` as given: an empty one (a script's unset variable) is refused, never read as
    "the default database" (another line's, maybe)."""
    if value is not None and not value.strip():
        raise typer.BadParameter(
            "expected a database URL, sqlite:///PATH or postgresql://USER@HOST/DB (it is "
            "empty; leave --db out for $PKGLINE_DB or the default)"
        )
    return value


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="PKGLINE_DB",
        callback=_database_given,
        help="Database URL: sqlite:///PATH or postgresql://USER@HOST/DB "
        "(default: $PKGLINE_DB, else ~/.local/share/pkgline/pkgline.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]


class LogLevel(StrEnum):
    """The least severe lines a daemon logs (``serve``, ``api``, ``sim``)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


LogLevelOption = Annotated[
    LogLevel, typer.Option(case_sensitive=False, help="The least severe lines logged.")
]
USER_MAX = 64
"""The longest ``--user`` the history records (the server's user names are as long)."""


def _user_given(value: str | None) -> str | None:
    """``--user`` as the history will keep it: one line of printable text, not blank, at most
    :data:`USER_MAX` characters (the history is append-only and hash-chained)."""
    if value is not None and (
        not value.strip() or not value.isprintable() or len(value) > USER_MAX
    ):
        raise typer.BadParameter(
            f"expected a user name: one line of printable text, 1 to {USER_MAX} characters "
            f"(got {len(value)} characters{'' if value.isprintable() else ', not all printable'})"
        )
    return value


UserOption = Annotated[
    str | None,
    typer.Option(
        "--user",
        envvar="PKGLINE_USER",
        callback=_user_given,
        help="Who does this (recorded in history; default: $PKGLINE_USER or your login).",
        show_default=False,
    ),
]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why (recorded in history).")]
HistoryOption = Annotated[
    str,
    typer.Option(
        "--history",
        help=f"How many of the last history entries to print: a number, or 'all' "
        f"(default {SHOW_HISTORY}; --json has every one).",
        show_default=False,
    ),
]
"""A ``show``'s ``--history`` (its default: ``str(SHOW_HISTORY)``); :func:`last_entries`
reads it."""
MORE_HISTORY = "--history N or --history all for more"


def current_user(given: str | None) -> str:
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n")


def usage_error(message: str, *, as_json: bool = False) -> NoReturn:
    if as_json:
        print_json({"error": "usage", "message": message})
    else:
        err.print(marked("error:", "bold red", message))
    raise typer.Exit(EXIT_USAGE)


def last_entries(history: str, *, as_json: bool = False) -> int | None:
    """``--history``: how many of the last entries to print, None for every one; anything
    but a number or ``all`` is a usage error."""
    given = history.strip().lower()
    if given == "all":
        return None
    if not (given.isascii() and given.isdigit()):
        usage_error(
            f"--history {history!r}: expected a number of entries or 'all'", as_json=as_json
        )
    return int(given)


def noun(plural: str, count: int) -> str:
    """``plural`` ("events", "entries", "material lots") as ``count`` of them are said:
    singular for 1 ("1 event", "1 entry")."""
    if count != 1:
        return plural
    return plural.removesuffix("ies") + "y" if plural.endswith("ies") else plural.removesuffix("s")


def the_last(items: Sequence[T], last: int | None, what: str, more: str) -> tuple[Sequence[T], str]:
    """The last ``last`` of ``items`` (None: every one) and how to say it: "N what", or "the
    last K of N what; ``more``"."""
    shown = items if last is None else items[max(len(items) - last, 0) :]
    if len(shown) == len(items):
        return shown, f"{len(items):,} {noun(what, len(items))}"
    return shown, f"the last {len(shown):,} of {len(items):,} {what}; {more}"


def served_lots(lots: Sequence[str]) -> str:
    """The lots a durable or a material lot served, oldest first, in words: the last
    :data:`~pkgline.page_sizes.SHOW_LOTS` of them, saying how many there are."""
    if not lots:
        return "(none yet)"
    if len(lots) <= SHOW_LOTS:
        return ", ".join(lots)
    return f"{', '.join(lots[-SHOW_LOTS:])} (the last {SHOW_LOTS} of {len(lots):,}; --json has every one)"


def parse_assignments(
    items: Sequence[str], option: str, *, as_json: bool = False
) -> dict[str, str]:
    """``NAME=VALUE`` items into a mapping; malformed or repeated names are usage errors."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            usage_error(f"{option} expects NAME=VALUE, got {item!r}", as_json=as_json)
        if name in values:
            usage_error(f"{option} {name} is given twice", as_json=as_json)
        values[name] = value.strip()
    return values


def parse_sites(
    items: Sequence[str],
    option: str,
    *,
    with_code: bool,
    default_code: str = "",
    as_json: bool = False,
) -> tuple[SiteRejectGiven, ...]:
    """``CARRIER:ROW:COL[:CODE]`` items (row and column 1-based)."""
    from mes.domain.commands import SiteRejectGiven

    form = "CARRIER:ROW:COL:CODE" if with_code else "CARRIER:ROW:COL"
    sites = []
    for item in items:
        parts = item.split(":")
        if len(parts) != (4 if with_code else 3) or not all(parts):
            usage_error(f"{option} expects {form}, got {item!r}", as_json=as_json)
        carrier, row, col = parts[0], parts[1], parts[2]
        if not (
            row.isascii()
            and row.isdigit()
            and col.isascii()
            and col.isdigit()
            and 1 <= int(row) <= MAX_SITE_ROWS
            and 1 <= int(col) <= MAX_SITE_COLS
        ):
            usage_error(
                f"{option} {item!r}: ROW and COL are whole numbers from 1 (a carrier has at "
                f"most {MAX_SITE_ROWS} rows and {MAX_SITE_COLS} columns)",
                as_json=as_json,
            )
        code = parts[3] if with_code else default_code
        sites.append(SiteRejectGiven(carrier, int(row), int(col), code))
    return tuple(sites)


def database_unavailable(db: str | None, reason: str, *, as_json: bool) -> NoReturn:
    """Exit: the database at ``db`` cannot be used now, for ``reason`` (EXIT_UNAVAILABLE)."""
    message = f"cannot use the database {_where(db)}: {reason}"
    fail(message, {"error": "database", "message": message}, EXIT_UNAVAILABLE, as_json)


def run(
    work: Callable[[], Awaitable[T]],
    *,
    as_json: bool = False,
    db: str | None = None,
    refusal: Refusal | None = None,
) -> T:
    """Run one command's async work, turning failures into a message and an exit code
    (``refusal``: a lot tracker's refusal's JSON as the command says it, its ``field`` named
    by the command's option, :class:`pkgline.cli.lot_act.Options`)."""
    import asyncio

    from mes.adapters.database import DatabaseUrlError
    from mes.adapters.schema import SchemaMismatch
    from mes.domain.errors import ConcurrentUpdate, LotTrackerError
    from pkgline.datafiles import DataFileError

    try:
        return asyncio.run(_guarded(work))
    except ConcurrentUpdate as exc:
        fail(exc.message, exc.to_dict(), EXIT_CONFLICT, as_json)
    except LotTrackerError as exc:
        said = exc.to_dict() if refusal is None else refusal(exc.to_dict())
        fail(exc.message, said, EXIT_REFUSED, as_json)
    except DatabaseUrlError as exc:
        fail(str(exc), {"error": "usage", "message": str(exc)}, EXIT_USAGE, as_json)
    except SchemaMismatch as exc:
        message = f"{_where(db)}: {exc}"
        fail(message, {"error": "schema", "message": message}, EXIT_UNAVAILABLE, as_json)
    except DataFileError as exc:
        fail(str(exc), {"error": "data_file", "message": str(exc)}, EXIT_UNAVAILABLE, as_json)
    except _Unavailable as exc:
        database_unavailable(db, str(exc), as_json=as_json)
    except _Retry as exc:
        message = f"the database refused this for now ({exc}); nothing was changed, retry"
        fail(message, {"error": "retry", "message": message}, EXIT_CONFLICT, as_json)


class _Unavailable(Exception):
    pass


class _Retry(Exception):
    pass


async def _guarded(work: Callable[[], Awaitable[T]]) -> T:
    from mes.adapters.errors import (
        DatabaseReadOnly,
        DatabaseRetryable,
        DatabaseUnavailable,
        classify,
    )

    try:
        return await work()
    except DatabaseRetryable as exc:
        raise _Retry(exc.reason) from exc
    except Exception as exc:
        # The schema check and migrations reach the database through SQLAlchemy itself:
        # their errors are classified here as the store's are at its edge.
        found = classify(exc)
        if isinstance(found, DatabaseRetryable):
            raise _Retry(found.reason) from exc
        if isinstance(found, DatabaseUnavailable):
            what = "read-only: " if isinstance(found, DatabaseReadOnly) else ""
            raise _Unavailable(what + found.reason) from exc
        raise


def _where(db: str | None) -> str:
    from mes.adapters.database import DatabaseUrlError, display_url
    from pkgline.bootstrap import resolve_url

    try:
        return display_url(resolve_url(db))
    except DatabaseUrlError:
        return str(db)


def fail(message: str, payload: dict[str, Any], code: int, as_json: bool) -> NoReturn:
    if as_json:
        print_json(payload)
    else:
        err.print(marked("✘" if code in (1, 3) else "error:", "bold red", message))
        allowed = ", ".join(str(a) for a in payload.get("allowed") or ())
        if allowed and allowed not in message:  # said once: most refusals name them already
            err.print(f"allowed: {allowed}")
    raise typer.Exit(code)
