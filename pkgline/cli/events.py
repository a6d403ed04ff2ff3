"""``pkgline events``: the event feed as an operator or integrator reads it.

``list`` pages through the events the outbox keeps, by id (a replay of the feed); ``tail``
subscribes to the broker of ``line.toml``'s ``[events]`` and prints lot events (and
with ``--all`` the durables' and material lots') as they come; ``status`` reads the outbox: events waiting, the last one published, and the lag.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from pkgline.cli.common import (
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    DbOption,
    JsonOption,
    err,
    marked,
    out,
    print_json,
)
from pkgline.cli.modes import Remote, ServerOption, either, query_params
from pkgline.page_sizes import FEED_PAGE, MAX_CURSOR, MAX_FEED_PAGE

app = typer.Typer(help="The event feed to the plant (MQTT).", no_args_is_help=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", help="The line configuration (line.toml) with [events].")
]


@app.command()
def status(db: DbOption = None, server: ServerOption = None, json: JsonOption = False) -> None:
    """Events waiting in the outbox, the last one published, and the lag (the age of the
    oldest one waiting)."""

    async def direct() -> dict[str, Any]:
        from mes.adapters.outbox import OutboxReader
        from pkgline.bootstrap import open_engine
        from pkgline.line_views import backlog_dict

        async with open_engine(db, must_exist=True) as engine:
            return backlog_dict(await OutboxReader(engine).backlog(), datetime.now(UTC))

    found = either(db, server, json, direct, Remote("GET", "/events/backlog"))
    if json:
        print_json(found)
    else:
        from pkgline.cli.line import backlog_text

        out.print(backlog_text(found))


@app.command("list")
def list_events(
    after: Annotated[
        int | None,
        typer.Option(
            "--after",
            min=0,
            max=MAX_CURSOR,
            help="Start after this event id (the last one you processed).",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_FEED_PAGE, help="At most this many.")
    ] = FEED_PAGE,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """The events the outbox keeps (until the retention), oldest first, by id: what the feed
    published, or will; for a subscriber that lost its session, from the last id it
    processed. Says how many are kept and how to see the next page."""
    from pkgline.cli import pages
    from pkgline.list_views import feed_answer

    async def direct() -> dict[str, Any]:
        from mes.adapters.outbox import OutboxReader
        from pkgline.bootstrap import open_engine

        async with open_engine(db, must_exist=True) as engine:
            return await feed_answer(OutboxReader(engine), after, limit)

    given = {"after": after, "limit": limit}
    shown = either(db, server, json, direct, Remote("GET", "/events", query=query_params(given)))
    if shown.get("gap"):  # not from a server older than the gap's notice
        err.print(f"warning: {shown['gap']}", style="yellow", markup=False, highlight=False)
    if json:
        print_json(shown["events"])
        pages.json_notice(shown)
        return
    for event in shown["events"]:
        try:
            out.print(describe(event), markup=False, highlight=False)
        except (KeyError, TypeError):  # a newer server's kind of event
            out.print(jsonlib.dumps(event), markup=False, highlight=False)
    if after is None:
        pages.print_notice(shown, "events")
    else:
        _print_notice_after(shown, after)


def _print_notice_after(answer: dict[str, Any], after: int) -> None:
    """A page from ``--after``: how many it shows of those after the cursor, and how many
    the outbox keeps in all ("3 shown of 53 after #830; 883 in all"), not the whole outbox's
    count as if it were what follows; how to see the next page when more follow."""
    from rich.text import Text

    def count(key: str) -> str:
        n = answer[key]
        return f"{n:,}" if answer.get(f"{key}_exact", True) else f"more than {n:,}"

    kept = f"{count('total')} in all"
    if "total_after" in answer:
        shown = f"{answer['shown']:,} shown of {count('total_after')} after #{after}; {kept}"
    else:  # a server older than total_after
        shown = f"{answer['shown']:,} shown after #{after}; {kept}"
    if answer["more"]:
        follow = f"the same command with --after {answer['next_after']}"
        out.print(Text.assemble((f"{shown}; more follow: ", "yellow"), follow))
    else:
        out.print(shown)


@app.command()
def tail(
    config: ConfigOption,
    lot: Annotated[str | None, typer.Option("--lot", help="Only this lot's events.")] = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all", help="The durables' and material lots' events too, not the lots' only."
        ),
    ] = False,
    json: JsonOption = False,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many events.")
    ] = None,
) -> None:
    """Subscribe to the line's lot events (``--all``: and its durables' and material lots')
    and print them as they come (Ctrl-C stops)."""
    # the configuration, topics and broker only here: ``pkgline line status`` imports this
    # module for the outbox's backlog
    from pkgline.config import ConfigError, load_line_config
    from pkgline.events.topics import Topics, usable_level
    from pkgline.mqtt import BrokerError

    try:
        line = load_line_config(config)
    except ConfigError as exc:
        err.print(marked("error:", "bold red", str(exc)))
        raise typer.Exit(EXIT_USAGE) from None
    if line.events is None:
        err.print(marked("error:", "bold red", f"{config}: no [events] table: the feed is off"))
        raise typer.Exit(EXIT_USAGE)
    if lot is not None and every:
        err.print(marked("error:", "bold red", "--lot or --all, not both"))
        raise typer.Exit(EXIT_USAGE)
    if lot is not None and not usable_level(lot):
        err.print(marked("error:", "bold red", f"lot id {lot!r} cannot be a topic level (/ + # $)"))
        raise typer.Exit(EXIT_USAGE)
    events = line.events
    topics = Topics.of(events.root, events.site, events.area, events.line or line.name)
    topic = topics.all_events if every else topics.all_lot_events
    if lot:
        topic = topics.lot_events(lot)
    try:
        asyncio.run(_tail(line.events, line.name, topic, json, count))
    except KeyboardInterrupt:
        pass
    except BrokerError as exc:
        err.print(marked("error:", "bold red", str(exc)))
        raise typer.Exit(EXIT_UNAVAILABLE) from None


async def _tail(events: Any, name: str, topic: str, as_json: bool, count: int | None) -> None:
    """Follow ``topic`` until ``count`` events were printed (or Ctrl-C). A broker that cannot
    be reached at the start is raised (BrokerError: exit 4); a connection lost once following
    is said on stderr and made again with the feed's backoff (``backoff_initial_s`` doubling
    to ``backoff_max_s``), as the controller's relay does, until the broker is back."""
    import aiomqtt

    from drivers.config import ConnectionPolicy
    from drivers.supervision import backoff_delays
    from pkgline.mqtt import BrokerConfigError, BrokerError, connect

    client_id = f"{events.client_id_for(name, 'tail')}-{os.getpid()}"
    policy = ConnectionPolicy(
        backoff_initial_s=events.backoff_initial_s,
        backoff_max_s=max(events.backoff_max_s, events.backoff_initial_s),
    )
    delays = backoff_delays(policy)
    followed = _Followed(count)
    lost: str | None = None  # why the connection was lost, while it is being made again
    while True:
        try:
            async with connect(events, client_id) as client:
                await client.subscribe(topic, qos=1)
                if lost is None:
                    if not as_json:
                        err.print(f"following {topic} on {events.url} (Ctrl-C stops)")
                else:
                    delays, lost = backoff_delays(policy), None
                    again = _again(topic, events.url, followed.last_id)
                    err.print(again, markup=False, highlight=False)
                followed.connected = True
                async for message in client.messages:
                    if followed.show(message.payload, as_json):
                        return
                raise aiomqtt.MqttError("the broker ended the subscription")
        except BrokerConfigError:
            raise  # the settings or the password file: no retry helps
        except (BrokerError, aiomqtt.MqttError) as exc:
            if not followed.connected:
                raise  # never connected: the broker is down or refuses (exit 4)
            why = str(exc) or type(exc).__name__
            if lost is None:
                lost_text = f"connection to the broker {events.url} lost ({why}); reconnecting"
                err.print(marked("warning:", "yellow", lost_text))
            lost = why
        await asyncio.sleep(next(delays))


class _Followed:
    """What ``events tail`` printed: how many events, and the last id among them."""

    def __init__(self, count: int | None):
        self.count = count
        self.seen = 0
        self.last_id: int | None = None
        self.connected = False
        """It followed the topic once (a broker lost afterwards is waited for)."""

    def show(self, payload: Any, as_json: bool) -> bool:
        """Print one message; True once ``count`` were printed."""
        text = payload.decode(errors="replace") if isinstance(payload, bytes) else str(payload)
        if as_json:
            out.print(text, markup=False)
        else:
            out.print(_describe(text), markup=False)
        try:
            found = jsonlib.loads(text).get("id")
        except (ValueError, AttributeError):
            found = None
        if isinstance(found, int):
            self.last_id = found
        self.seen += 1
        return self.count is not None and self.seen >= self.count


def _again(topic: str, url: str, last_id: int | None) -> str:
    """What is said once the broker is back: events published meanwhile were not delivered to
    this tail (it keeps no session on the broker); the outbox replays them."""
    replay = "pkgline events list" + (f" --after {last_id}" if last_id is not None else "")
    return (
        f"following {topic} on {url} again; events published while the broker was away "
        f"are not shown here ({replay} replays them)"
    )


def _describe(text: str) -> str:
    """A line of a lot event, a durable event or a material event (docs/events.md)."""
    try:
        return describe(jsonlib.loads(text))
    except (ValueError, KeyError, TypeError):
        return f"(not an event of the feed) {text}"


def describe(e: dict[str, Any]) -> str:
    """A line of an event of the feed (KeyError or TypeError if it is none)."""
    if "dead_lettered_at" in e:
        return f"#{e['id']}  {e['time']}  {e['lot']}  {e['kind']}  dead letter: {e['reason']}"
    if "durable" in e:
        count = f"count {e['count_after']:,} of {e['life']:,} {e['unit']}"
        what = [e["durable"], e["kind"], count, " ".join(_given(e, "tool", "lot", "step"))]
    elif "material" in e:
        what = [e["material"], e["kind"], " ".join(_given(e, "tool")), *_recall(e)]
    else:
        moved = f"{e['state_before'] or '-'} -> {e['state_after']}"
        what = [e["lot"], e["kind"], moved, " ".join(_given(e, "step", "tool"))]
    return "  ".join(x for x in [f"#{e['id']}", e["time"], *what, _who(e)] if x)


def _who(e: dict[str, Any]) -> str:
    """Who acted: the user the command named (free text), and the principal the history
    recorded with how it was known where that is someone else ("by eng1, acting: root
    (file_owner)"); the user alone in an event without them (older, or a newer server's)."""
    user, by, auth = e["user"], e.get("by"), e.get("auth")
    how = f" ({auth})" if auth else ""
    if by is None:
        return f"by {user}"
    if by == user:
        return f"by {user}{how}"
    return f"by {user}, acting: {by}{how}"


def _recall(e: dict[str, Any]) -> list[str]:
    """A material event's part in a recall: the quarantine's code (its event), the release's
    signers (an event written before the feed carried them has neither)."""
    said = []
    q = e.get("quarantine")
    if e["kind"] == "MaterialQuarantined" and q:
        said.append(f"code {q['code']}")
    for s in e.get("signatures") or []:
        said.append(f"signed by {s['printed_name']} ({s['signer']})")
    return said


def _given(event: dict[str, Any], *keys: str) -> list[str]:
    return [str(event[k]) for k in keys if event[k]]
