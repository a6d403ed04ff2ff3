"""The line stream wakes on the commit signal (the relay's :class:`OutboxSignal`), not only
on its poll: with a poll of an hour, a commit still brings the new line at once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mes.adapters.outbox import OutboxSignal
from pkgline.station.live import SharedLine, Streams, line_events

if TYPE_CHECKING:
    from mes.adapters.commit_listener import CommitListener
    from tests.faultproxy import FaultProxy

HOUR_S = 3600.0
GUARD_S = 30.0
"""Only a guard against hanging when the wake is broken (the poll would take an hour)."""


async def test_a_commit_wakes_every_open_stream() -> None:
    commits = OutboxSignal()
    streams = Streams()
    streams.watch(commits)
    line = {"text": "one"}

    async def render() -> str:
        return line["text"]

    first = line_events(render, streams, poll_s=HOUR_S)
    second = line_events(render, streams, poll_s=HOUR_S)
    for stream in (first, second):
        assert (await anext(stream)).startswith("retry:")
        assert "data: one" in await anext(stream)
    line["text"] = "two"
    nexts = [asyncio.ensure_future(anext(s)) for s in (first, second)]
    await asyncio.sleep(0)  # both wait now
    assert not any(n.done() for n in nexts)
    commits.committed()
    for event in await asyncio.wait_for(asyncio.gather(*nexts), GUARD_S):
        assert "data: two" in event
    assert len(streams.waiting) == 2
    streams.closing.set()
    for stream in (first, second):
        await stream.aclose()
    assert not streams.waiting


async def test_viewers_of_the_same_moment_share_one_rendering_until_a_commit() -> None:
    shared = SharedLine(max_age_s=HOUR_S)
    renders = []
    gate = asyncio.Event()

    async def render() -> str:
        renders.append(len(renders))
        await gate.wait()
        return f"line {len(renders)}"

    waiting = [asyncio.ensure_future(shared.get(render)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == ["line 1"] * 20
    assert await shared.get(render) == "line 1"  # no commit since: the same
    assert len(renders) == 1
    shared.committed()
    assert await shared.get(render) == "line 2"
    assert len(renders) == 2


async def test_an_old_rendering_serves_while_the_next_is_made_but_not_after_a_commit() -> None:
    """Past its age with no commit since, viewers get the last rendering at once (the next
    one is made for the viewers after); after a commit they wait for one that shows it."""
    shared = SharedLine(max_age_s=0.0)
    gate = asyncio.Event()
    renders = 0

    async def render() -> str:
        nonlocal renders
        renders += 1
        if renders > 1:
            await gate.wait()
        return f"line {renders}"

    assert await shared.get(render) == "line 1"
    # too old (max age 0), no commit: the old one at once, one new rendering under way
    assert await asyncio.wait_for(shared.get(render), GUARD_S) == "line 1"
    assert await asyncio.wait_for(shared.get(render), GUARD_S) == "line 1"
    assert renders == 2
    gate.set()
    for _ in range(10):  # the rendering under way lands
        await asyncio.sleep(0)
    shared.max_age_s = HOUR_S
    assert await shared.get(render) == "line 2"  # the new one, once made
    assert renders == 2
    gate.clear()
    shared.committed()
    after = asyncio.ensure_future(shared.get(render))
    await asyncio.sleep(0)
    assert not after.done()  # a commit: nobody is served the line from before it
    gate.set()
    assert await asyncio.wait_for(after, GUARD_S) == "line 3"


async def test_the_server_hears_of_commits_made_by_another_process_on_postgresql(
    postgres_url: str,
) -> None:
    """On PostgreSQL the server's commit signal is also told of commits made elsewhere (the
    line controller's): NOTIFY on the outbox channel, heard on a connection of its own."""
    from mes.adapters.database import create_engine
    from mes.domain import commands as cmd
    from pkgline.api.server import open_state
    from pkgline.bootstrap import services_for
    from tests.station.seed import OWNER, fast_passwords, migrate

    await migrate(postgres_url)
    async with open_state(postgres_url, passwords=fast_passwords()) as state:
        assert state.commits is not None
        heard = asyncio.Event()
        state.commits.subscribe(heard.set)
        elsewhere = create_engine(postgres_url)  # another process's engine and services
        try:
            lots = services_for(elsewhere, OWNER).lots
            await lots.start(cmd.StartLot(lot_id="N-1", flow="fo-organic", user="olga"))
            await asyncio.wait_for(heard.wait(), GUARD_S)
        finally:
            await elsewhere.dispose()


async def test_the_listen_connection_comes_back_after_a_reset_and_the_stream_wakes_on_notify(
    postgres_url: str,
) -> None:
    """The connection the server LISTENs on goes through a proxy the test owns: the proxy
    resets it (and refuses new connections a while), the listener logs the loss, connects
    again with its backoff, logs it is back, and a commit made by another process wakes an
    open line stream (whose poll is an hour) by NOTIFY again."""
    from urllib.parse import urlsplit, urlunsplit

    from structlog.testing import capture_logs

    from mes.adapters.commit_listener import CommitListener
    from mes.adapters.database import create_engine
    from mes.domain import commands as cmd
    from pkgline.bootstrap import services_for
    from tests.faultproxy import FaultProxy
    from tests.station.seed import OWNER, migrate

    await migrate(postgres_url)
    direct = create_engine(postgres_url)  # the other process: not through the proxy
    async with FaultProxy("127.0.0.1", urlsplit(postgres_url).port or 5432) as proxy:
        parts = urlsplit(postgres_url)
        netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
        proxied = create_engine(urlunsplit(parts._replace(netloc=f"{netloc}:{proxy.port}")))
        commits = OutboxSignal()
        streams = Streams()
        streams.watch(commits)
        listener = CommitListener(proxied, commits.committed, first_s=0.05, max_s=0.2)
        lots = services_for(direct, OWNER).lots

        async def render() -> str:
            return f"lots: {len(await lots.find(limit=100))}"

        stream = line_events(render, streams, poll_s=HOUR_S)
        try:
            await listener.start()
            assert listener.listening
            assert (await anext(stream)).startswith("retry:")
            assert "data: lots: 0" in await anext(stream)

            with capture_logs() as logged:
                await _reset_and_back(proxy, listener)
            edges = [e["event"] for e in logged if e["event"].startswith("commit listener")]
            assert edges == ["commit listener lost", "commit listener back"]  # once each
            assert listener.reconnects == 1

            waiting = asyncio.ensure_future(anext(stream))
            await lots.start(cmd.StartLot(lot_id="R-1", flow="fo-organic", user="olga"))
            assert "data: lots: 1" in await asyncio.wait_for(waiting, GUARD_S)
        finally:
            streams.closing.set()
            await stream.aclose()
            await listener.stop()
            await proxied.dispose()
            await direct.dispose()
    assert not listener.listening


async def _reset_and_back(proxy: FaultProxy, listener: CommitListener) -> None:
    """The proxy resets the listener's connection and every new one for two tries, then
    lets them through; until the listener listens again."""
    proxy.set_mode("reset")  # the connection is reset, and so is every new one
    await asyncio.wait_for(listener.wait_listening(False), GUARD_S)
    tries = listener.failed_tries
    # it tries again (refused) meanwhile
    await asyncio.wait_for(listener.wait_until(lambda: listener.failed_tries >= tries + 2), GUARD_S)
    assert not listener.listening
    proxy.set_mode("pass")
    await asyncio.wait_for(listener.wait_listening(True), GUARD_S)
