"""The relay: the outbox, in order, to the broker; an event is marked published only once the
broker acknowledged it (and every event before it in the same batch).

It runs inside ``pkgline serve`` (docs/architecture.md says why): connect (MQTT 5 or 3.1.1)
with the controller's death as the MQTT will, publish its birth, then in a loop

- lead if no other relay does (:meth:`RelaySession.try_lead`: one relay per database);
- as the leader, read the oldest unpublished events (``batch_size``), publish each to its lot's
  ``events`` topic and each lot's last state, retained, and hand the batch to the
  :class:`~pkgline.events.marker.Marker`, which waits for its PUBACKs and marks it published
  on a connection of its own while the next batch is read and sent (the reads skip the ids
  it holds; at most four batches wait); an event that cannot be published goes to the
  dead-letter topic with the reason and is marked like the others, so it never blocks the
  feed; when the batch was full, go on at once, else wait for the next commit (the
  :class:`OutboxSignal` of this process, PostgreSQL's NOTIFY) or ``poll_interval_s``;
- publish the state of this controller's tools when it changed, retained (every 0.5 s);
- the line's status (every 5 s, leader) and pruning of the events published more than
  ``retention_days`` ago (every minute, leader), the retained states of the finished lots
  whose last events go cleared first (:meth:`Relay._prune`).

A broker or database failure ends the session: nothing of the batches in flight was marked,
so they are published again after the reconnect (at least once: consumers drop duplicates by id),
after a backoff doubling up to ``backoff_max_s``; the log says the outage when it begins,
every few minutes while it lasts and when it ends, not at every retry
(:class:`~pkgline.events.outage.FeedOutage`). The backoff starts again from
``backoff_initial_s`` only after a session that got somewhere (:attr:`Relay.progress`), not
at every connect: a session that fails once connected (a message the broker refuses for good,
an acknowledgement that never comes, a database that fails the reads) would otherwise be
opened again at once, and its birth and the start of its batch sent again, twice a second.
The events committed meanwhile wait in the outbox and go out in order, before anything newer;
the relay reads their count and the oldest one's time at each retry, for the STATUS line.
After a session that ended on the database, that read is also what the next one waits for:
while the database does not answer it, the relay does not connect again (each session
would publish the controller's birth anew and fail at its first read).
SIGKILL loses nothing for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiomqtt
import structlog
from sqlalchemy.exc import SQLAlchemyError

from drivers.config import ConnectionPolicy
from drivers.supervision import backoff_delays
from mes.adapters.errors import DatabaseError, DatabaseReadOnly, DatabaseUnavailable, classify
from mes.adapters.outbox import Backlog, OutboxEvent, OutboxSignal, OutboxStore, RelaySession
from mes.domain.equipment import ToolRecord
from mes.service import utc_now
from pkgline.events import payloads
from pkgline.events.config import EventsConfig
from pkgline.events.marker import Marker, Sent
from pkgline.events.outage import FeedOutage
from pkgline.events.publisher import MqttPublisher, Publisher, PublishFailed
from pkgline.events.topics import Topics, usable_level
from pkgline.mqtt import BrokerError, connect, protocol_name

log = structlog.get_logger("pkgline.events")

TOOLS_S = 0.5
LOT_STATES_S = 1.0
RECALL_S = 5.0
MARK_ON_EXIT_S = 5.0
MARKS_IN_FLIGHT = 4
"""Batches acknowledged and not yet marked, at most, before the relay waits."""
STATUS_S = 5.0
PRUNE_S = 60.0
PRUNE_CLEARS = 1000
"""Finished lots whose retained states one prune clears, at most (the rest at the next)."""
LEAD_RETRY_S = 2.0
STOP_DRAIN_S = 5.0
"""On stop: how long the relay goes on publishing what is left before it says goodbye."""


@dataclass
class RelayStatus:
    """What the relay knows of itself, for the STATUS line and ``line/status``."""

    connected: bool = False
    leader: bool = False
    backlog: Backlog | None = None
    published: int = 0
    dead_letters: int = 0
    last_published_id: int | None = None
    error: str | None = None


ToolSource = Callable[[], Awaitable[Sequence[ToolRecord]]]


class Relay:
    def __init__(
        self,
        config: EventsConfig,
        store: OutboxStore,
        *,
        controller: str,
        tools: ToolSource | None = None,
        clock: Callable[[], datetime] = utc_now,
        committed: OutboxSignal | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        """``tools``: this controller's tools' records (their retained states);
        ``committed``: told when this process commits outbox events (the relay then reads
        them at once; without it, and for other processes' commits on SQLite, it finds them
        at its next poll); ``monotonic``: the clock of an outage's length in the log."""
        self.config = config
        self.controller = controller
        self.topics = Topics.of(config.root, config.site, config.area, config.line or controller)
        self.status = RelayStatus()
        self.outage = FeedOutage(config.url, clock=monotonic)
        self._store = store
        self._tools = tools
        self._clock = clock
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._committed = committed
        self._tool_states: dict[str, Any] = {}
        self._states: dict[tuple[str, str], dict[str, Any]] = {}
        """The last event of each lot, durable and material lot published since their states
        went out, by (subject, id)."""
        self._states_due = 0.0
        self._next_batch: list[OutboxEvent] | None = None
        """Read while the last batch was acknowledged (a backlog drains)."""
        self.progress = False
        """The current (or last) session got somewhere: it marked a batch published, or
        everything it sent was acknowledged (its birth, its tools' states, the line's status)
        with nothing left waiting for a PUBACK. Only such a session's failure starts the
        backoff again from ``backoff_initial_s``."""
        self._host = socket.gethostname()
        self._database_answered = False
        """The database answered the backlog's read in the last pause between sessions."""

    def request_stop(self) -> None:
        self._stop.set()

    def status_line(self) -> str:
        """One phrase for the controller's STATUS line."""
        s = self.status
        waiting = ""
        if s.backlog is not None:
            waiting = f"{s.backlog.events} events waiting"
            if s.backlog.oldest_at is not None:
                age = (self._clock() - s.backlog.oldest_at).total_seconds()
                waiting += f" (oldest {_age(age)})"
        if not s.connected:
            return f"event feed down ({s.error or 'connecting'}); {waiting or 'backlog unknown'}"
        role = "publishing" if s.leader else "standby"
        last = f", last published {s.last_published_id}" if s.last_published_id else ""
        return f"event feed {role}; {waiting or 'backlog unknown'}{last}"

    # -- connection ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Publish until :meth:`request_stop`, reconnecting with backoff after any failure."""
        policy = ConnectionPolicy(
            backoff_initial_s=self.config.backoff_initial_s,
            backoff_max_s=max(self.config.backoff_max_s, self.config.backoff_initial_s),
        )
        delays = backoff_delays(policy)
        client_id = self.config.client_id_for(self.controller, "events")
        database_down = False
        while not self._stop.is_set():
            if database_down and not self._database_answered:
                # The last session ended on the database, which has not answered since (the
                # backlog's read in the pause): a new session would only tell the plant the
                # controller's birth again ("online, started") and end at its first read, at
                # every retry of an outage. Wait for the database, saying nothing new.
                await self._pause(next(delays))
                continue
            database_down = False
            self.progress = False
            try:
                async with connect(self.config, client_id, will=self._will()) as client:
                    self.status.connected, self.status.error = True, None
                    self.outage.connected(
                        self._waiting(), protocol=protocol_name(client), topics=self.topics.base
                    )
                    await self.publish_to(MqttPublisher(client, self.config.timeout_s))
                    return
            except (SQLAlchemyError, DatabaseError) as exc:
                error = database_error(exc)
                database_down = True
            except (BrokerError, PublishFailed, OSError) as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # a bug must not stop the line: log it, retry
                log.exception("event relay failed")
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self.status.connected = False
                self.status.leader = False
            if self.progress:  # a failure after a good run: retry soon; else back off further
                delays = backoff_delays(policy)
            delay = next(delays)
            self.outage.failed(error, delay, self._waiting())
            self.status.error = error
            await self._pause(delay)

    def _waiting(self) -> int | None:
        """The events in the outbox as last read (None: not known)."""
        return self.status.backlog.events if self.status.backlog is not None else None

    def _will(self) -> aiomqtt.Will:
        death = payloads.controller_status(
            self.controller,
            online=False,
            at=None,
            host=self._host,
            pid=os.getpid(),
            reason="connection lost",
        )
        return aiomqtt.Will(
            self.topics.controller_status(self.controller),
            payloads.encode(death),
            qos=1,
            retain=True,
        )

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or until a stop; meanwhile read the backlog (for at most
        ``timeout_s``), so that the STATUS line says how many events wait while the broker is
        away, not what the last session saw (or nothing, when it never connected)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        self._database_answered = False
        reading = asyncio.ensure_future(self._read_backlog())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait(
                [reading, stopped],
                timeout=self.config.timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not stopped.done():
                await asyncio.wait([stopped], timeout=max(0.0, until - loop.time()))
        finally:
            for waiting in (reading, stopped):
                waiting.cancel()
            await asyncio.gather(reading, stopped, return_exceptions=True)

    async def _read_backlog(self) -> None:
        """The backlog into the status (unknown if the database cannot say)."""
        try:
            backlog = await self._store.backlog()
        except (SQLAlchemyError, DatabaseError, OSError) as exc:
            log.debug("event backlog not read", error=str(exc) or type(exc).__name__)
            self.status.backlog = None
            return
        self._database_answered = True
        self.status.backlog = backlog
        if backlog.last_published_id is not None:
            self.status.last_published_id = backlog.last_published_id

    # -- one connection -----------------------------------------------------------------------

    async def publish_to(self, publisher: Publisher) -> None:
        """One session: publish to ``publisher`` until :meth:`request_stop` (then say
        goodbye), or until it fails (raised: :meth:`run` reconnects and calls it again)."""
        await self._announce(publisher, online=True, reason="started")
        self._tool_states.clear()
        self._next_batch = None
        async with self._store.session() as db, self._store.session() as marks_db:
            marker = Marker(
                marks_db,
                self._clock,
                limit=MARKS_IN_FLIGHT * self.config.batch_size,
                acknowledged=self._acknowledged,
            )
            marking = asyncio.create_task(marker.run(), name="event-relay-marks")
            wake = self._waker()
            if self._committed is not None:
                self._committed.subscribe(wake)
            try:
                await db.listen(self._wake.set)  # PostgreSQL: commits of every process
                await self._loop(db, publisher, marker, marking)
            finally:
                if self._committed is not None:
                    self._committed.unsubscribe(wake)
                # What the broker acknowledged is marked, if the database lets us (else it is
                # published again: at least once).
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(MARK_ON_EXIT_S):
                        await marker.flush(marking)
                marking.cancel()
                try:
                    with contextlib.suppress(asyncio.CancelledError):
                        await marking  # its failure, if any, is the session's (raised)
                finally:
                    await marker.close()  # every publish task ended and its outcome taken
        await self._announce(publisher, online=False, reason="stopped")

    async def _loop(
        self,
        db: RelaySession,
        publisher: Publisher,
        marker: Marker,
        marking: asyncio.Task[None],
    ) -> None:
        loop = asyncio.get_running_loop()
        next_lead = next_tools = next_status = 0.0
        next_prune = loop.time() + PRUNE_S / 10
        stop_by: float | None = None
        while True:
            if marking.done():
                marking.result()  # raises what stopped it (the database)
                raise RuntimeError("the relay's marking task ended")  # pragma: no cover
            now = loop.time()
            if not db.leader and now >= next_lead:
                if await db.try_lead():
                    log.info("this relay publishes the outbox", controller=self.controller)
                    await self._recall_states(db)
                next_lead = now + LEAD_RETRY_S
            self.status.leader = db.leader
            full = db.leader and await self._publish_batch(db, publisher, marker, marking)
            if self._tools is not None and now >= next_tools:
                await self._publish_tools(publisher)
                next_tools = now + TOOLS_S
            if now >= next_status:
                await self._publish_status(db, publisher)
                next_status = now + STATUS_S
            if db.leader and now >= next_prune:
                await self._prune(db, publisher)
                next_prune = now + PRUNE_S
            if marker.marked or not marker.in_flight:
                self.progress = True
            if self._stop.is_set():
                stop_by = stop_by or now + STOP_DRAIN_S
                if not full or now >= stop_by:
                    break
            if not full:
                await self._idle(self.config.poll_interval_s, marking)

    def _waker(self) -> Callable[[], None]:
        """What wakes this relay, called from any thread (the commits of a controller whose
        loop is another: pkgline.events.thread)."""
        loop = asyncio.get_running_loop()
        here = threading.get_ident()

        def wake() -> None:
            if threading.get_ident() == here:
                self._wake.set()
            else:
                with contextlib.suppress(RuntimeError):  # the relay's loop has just closed
                    loop.call_soon_threadsafe(self._wake.set)

        return wake

    async def _idle(self, seconds: float, marking: asyncio.Task[None]) -> None:
        """Until events are committed (this process, or any on PostgreSQL), a stop, the
        marking task's end (a failed acknowledgement), or ``seconds`` (the poll: other
        processes' commits on SQLite)."""
        if self._wake.is_set():
            return
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(self._stop.wait())]
        try:
            await asyncio.wait(
                [*waits, marking], timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _announce(self, publisher: Publisher, *, online: bool, reason: str) -> None:
        status = payloads.controller_status(
            self.controller, online, self._clock(), host=self._host, pid=os.getpid(), reason=reason
        )
        await publisher.publish(
            self.topics.controller_status(self.controller), payloads.encode(status), retain=True
        )

    async def _publish_batch(
        self, db: RelaySession, publisher: Publisher, marker: Marker, marking: asyncio.Task[None]
    ) -> bool:
        """Publish the oldest unpublished events (but those acknowledged and not yet marked);
        True when there may be more."""
        await marker.room(marking)
        events, self._next_batch = self._next_batch, None
        if events is None:
            self._wake.clear()  # what is committed from now on wakes the next round
            events = await db.pending(self.config.batch_size, skip=marker.in_flight)
        if not events:
            return False
        now = self._clock()
        messages: list[tuple[str, bytes, bool]] = []
        last_of: dict[tuple[str, str], dict[str, Any]] = {}
        dead = 0
        for event in events:
            try:
                document, body = payloads.feed_event(event, self.config.max_payload_bytes)
            except payloads.Undeliverable as exc:
                dead += 1
                log.warning(
                    "event sent to the dead-letter topic",
                    event_id=event.id,
                    subject=event.subject,
                    subject_id=event.lot_id,
                    reason=str(exc),
                )
                letter = payloads.dead_letter(event, str(exc), now)
                messages.append((self.topics.dead_letter, payloads.encode(letter), False))
                continue
            topic = self.topics.subject_events(event.subject, event.lot_id)
            messages.append((topic, body, False))
            last_of[event.subject, event.lot_id] = document
        # Each lot's state goes out after its events; while a backlog drains (full batches),
        # once a second, so that it costs one message per lot, not one per lot and batch.
        self._states.update(last_of)
        full = len(events) == self.config.batch_size
        loop = asyncio.get_running_loop()
        if not full or loop.time() >= self._states_due:
            for (subject, subject_id), document in self._states.items():
                try:
                    state = payloads.encode(payloads.subject_state(subject, document))
                except (KeyError, TypeError, ValueError) as exc:  # its event went out as it was
                    log.warning(
                        "state not published",
                        subject=subject,
                        subject_id=subject_id,
                        error=repr(exc),
                    )
                    continue
                messages.append((self.topics.subject_state(subject, subject_id), state, True))
            self._states.clear()
            self._states_due = loop.time() + LOT_STATES_S
        # Sent in this order on one connection (each task sends at its first step, in the
        # order created); the marker awaits their acknowledgements while the next batch is
        # read and sent.
        acks = [
            asyncio.ensure_future(publisher.publish(topic, body, retain=retain))
            for topic, body, retain in messages
        ]
        marker.add([e.id for e in events], acks, dead)
        if full:  # a backlog drains: read the next batch while the broker answers
            self._next_batch = await db.pending(self.config.batch_size, skip=marker.in_flight)
        return full

    def _acknowledged(self, sent: Sent) -> None:
        self.status.published += len(sent.ids)
        self.status.dead_letters += sent.dead
        self.status.last_published_id = sent.ids[-1]

    async def _recall_states(self, db: RelaySession) -> None:
        """The states of the lots (durables, material lots) whose events were published
        lately, to publish again: a relay that died while a backlog drained had marked events
        whose states it kept for later (see :meth:`_publish_batch`)."""
        since = self._clock() - timedelta(seconds=RECALL_S)
        for event in await db.published_since(since):
            with contextlib.suppress(payloads.Undeliverable):
                document, _ = payloads.feed_event(event, self.config.max_payload_bytes)
                self._states.setdefault((event.subject, event.lot_id), document)

    async def _publish_tools(self, publisher: Publisher) -> None:
        assert self._tools is not None
        changed = []
        for tool in await self._tools():
            # a declaration (down or up) changes the message even where the E10 state stays
            key = (tool.snapshot, tool.dispatch, tool.e10_since, tool.down, tool.declared_at)
            if self._tool_states.get(tool.id) != key:
                changed.append((tool, key))
        if not changed:
            return
        try:
            async with asyncio.TaskGroup() as group:
                for tool, _ in changed:
                    body = payloads.encode(payloads.tool_state(tool))
                    group.create_task(
                        publisher.publish(self.topics.tool_state(tool.id), body, retain=True)
                    )
        except* PublishFailed as failed:
            raise failed.exceptions[0] from None
        self._tool_states.update((tool.id, key) for tool, key in changed)

    async def _publish_status(self, db: RelaySession, publisher: Publisher) -> None:
        backlog = await db.backlog()
        self.status.backlog = backlog
        if backlog.last_published_id is not None:
            self.status.last_published_id = backlog.last_published_id
        if not db.leader:
            return
        now = self._clock()
        age = (now - backlog.oldest_at).total_seconds() if backlog.oldest_at else None
        line = self.topics.base.rsplit("/", 1)[-1]
        status = payloads.line_status(
            line,
            self.controller,
            now,
            await db.lots_by_state(),
            backlog.events,
            age,
            backlog.last_published_id,
        )
        await publisher.publish(self.topics.line_status, payloads.encode(status), retain=True)
        heads = payloads.audit_heads(line, self.controller, now, await db.audit_heads())
        await publisher.publish(self.topics.audit_heads, payloads.encode(heads), retain=True)

    async def _prune(self, db: RelaySession, publisher: Publisher) -> None:
        """Delete the events published more than ``retention_days`` ago; the finished lots
        whose last events go with them first have their retained states cleared (an empty
        retained message: the broker forgets the topic's). Cleared before deleted: a failure
        in between (the broker away, a crash) leaves the events, and the next prune clears
        them again, which changes nothing; the other way round would leave a state retained
        for ever, as nothing would find the lot again."""
        before = self._clock() - timedelta(days=self.config.retention_days)
        finished = await db.finished(before, PRUNE_CLEARS)
        if finished.lots:
            await self._clear_states(publisher, "lot", finished.lots)
            log.info(
                "finished lots' retained states cleared",
                lots=len(finished.lots),
                more=finished.until is not None,
            )
        pruned = await db.prune(before, until=finished.until)
        if pruned:
            log.info("published events pruned", events=pruned, published_before=before.isoformat())

    async def _clear_states(self, publisher: Publisher, subject: str, ids: Sequence[str]) -> None:
        """An empty retained message on each one's state topic, every one acknowledged (else
        :class:`PublishFailed`, and the session ends)."""
        try:
            async with asyncio.TaskGroup() as group:
                for subject_id in filter(usable_level, ids):  # else none was published
                    topic = self.topics.subject_state(subject, subject_id)
                    group.create_task(publisher.publish(topic, b"", retain=True))
        except* PublishFailed as failed:
            raise failed.exceptions[0] from None


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def database_error(exc: SQLAlchemyError | DatabaseError) -> str:
    """What the database said, in a few words for the log and the STATUS line, as the store
    classifies it (``database unavailable: database is locked``), not SQLAlchemy's text with
    the statement, its parameters and a link; SQLAlchemy's own first line for the rest."""
    found = classify(exc)
    if isinstance(found, DatabaseReadOnly):
        return f"database read-only: {found.reason}"
    if isinstance(found, DatabaseUnavailable):
        return f"database unavailable: {found.reason}"
    text = str(found if found is not None else exc) or type(exc).__name__
    return text.splitlines()[0]
