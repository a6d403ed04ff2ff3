"""The Sparkplug B 3.0 edge node of one line controller: its MQTT session and what it sends.

The controller's runners call :meth:`EdgeNode.tool_seen`, :meth:`recipe_active` and
:meth:`job_measured` (the :class:`~pkgline.controller.feed.ToolFeed` calls) as they observe their
tools, and the controller :meth:`declared` with the declarations in force it reads (a person's
``tool down``: the tool's E10 state is the declared one meanwhile, as equipment tracking
records it); those never block. Each updates the tool's values and, while the node is born, queues
what the specification asks for: a DBIRTH when a device comes (back) online, a DDATA with the
metrics that changed (by alias), a DDEATH when its tool stops answering. One task sends the
queue in order. While the node is not born (no broker, or waiting for the primary host), only
the values are kept: the next births carry them.

A session, over and over until :meth:`stop` (reconnecting with jittered backoff)::

    bdSeq += 1 (mod 256, kept in a file)    CONNECT with will NDEATH{bdSeq} (QoS 1, not retained)
    SUBSCRIBE NCMD (QoS 1) [+ STATE/<primary host> (QoS 1)]
    [wait for STATE {"online": true} not older than the last one seen]
    NBIRTH{bdSeq, Node Control/Rebirth=false} seq 0, then DBIRTH per tool answering, seq 1, 2 ..
    DDATA / DDEATH / DBIRTH as the tools change; seq wraps 255 -> 0
    NCMD Node Control/Rebirth=true: births again (same bdSeq), nothing queued before is sent
    STATE online=false (not older): NDEATH, DISCONNECT, start over
    stop: NDEATH (QoS 1), DISCONNECT

Births, data and deaths are QoS 0 and not retained, as the specification says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import aiomqtt
import structlog

from drivers.config import ConnectionPolicy
from drivers.model import EquipmentClass, JobResults, RecipeInfo
from drivers.supervision import backoff_delays
from mes.domain.equipment import ToolSnapshot
from mes.domain.tool_down import InForce
from pkgline.mqtt import NO_DELAY, BrokerConfigError, read_password, tls_context
from pkgline.sparkplug import metrics as m
from pkgline.sparkplug.bdseq import BdSeq
from pkgline.sparkplug.codec import (
    DataType,
    Metric,
    MetricValue,
    PayloadError,
    Topics,
    decode,
    encode,
    state_topic,
)
from pkgline.sparkplug.config import SparkplugConfig, SparkplugError, bdseq_path

log = structlog.get_logger("pkgline.sparkplug")

STOP_S = 5.0
"""On stop: how long the NDEATH and DISCONNECT may take."""
MQTT_TIMEOUT_S = 10.0

NodeState = Literal["disconnected", "waiting_for_host", "born"]


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def now_ms() -> int:
    return epoch_ms(datetime.now(UTC))


@dataclass(slots=True)
class _Birth:
    tool_id: str
    values: dict[str, MetricValue]
    at_ms: int


@dataclass(slots=True)
class _Data:
    tool_id: str
    values: dict[str, MetricValue]
    at_ms: int


@dataclass(slots=True)
class _Death:
    tool_id: str
    at_ms: int


_Out = _Birth | _Data | _Death


@dataclass(slots=True)
class _Tool:
    device: m.Device
    values: dict[str, MetricValue]
    online: bool = False
    published: dict[str, MetricValue] = field(default_factory=dict)
    """The values as the messages queued so far tell them (DBIRTH then each DDATA)."""
    declared: InForce | None = None
    """A person's declaration in force: its state is the tool's E10 state meanwhile."""
    reported_e10: MetricValue = None
    """The E10 state the controller last saw the tool in (its own, declared or not)."""


class _SessionOver(Exception):
    """The session ends on purpose: stop, or the primary host went offline."""


class EdgeNode:
    """A line controller's tools as a Sparkplug B edge node (one device per tool)."""

    def __init__(
        self,
        config: SparkplugConfig,
        edge_node_id: str,
        tools: Sequence[tuple[str, EquipmentClass]],
        *,
        rng: random.Random | None = None,
    ):
        """Reads the password file, TLS files and the bdSeq file now: a bad setting stops the
        controller's start with a :class:`SparkplugError`, not a retry loop."""
        self.config = config
        self.edge_node_id = edge_node_id
        self.topics = Topics(config.group_id, edge_node_id)
        try:
            self._password = read_password(config.password_file) if config.password_file else None
            self._tls = tls_context(config)
        except BrokerConfigError as exc:
            raise SparkplugError(str(exc)) from exc
        self.bdseq = BdSeq(bdseq_path(config, edge_node_id))
        self._policy = ConnectionPolicy(
            backoff_initial_s=config.backoff_initial_s,
            backoff_max_s=max(config.backoff_max_s, config.backoff_initial_s),
        )
        self._rng = rng
        self._tools = {
            tool_id: _Tool(device, device.initial_values())
            for tool_id, device in m.devices_of(tools).items()
        }
        self._aliases = {
            tool_id: {d.name: d for d in tool.device.metrics}
            for tool_id, tool in self._tools.items()
        }
        self._outbox: deque[_Out] = deque()
        self._born: set[str] = set()
        self._live = False
        self._seq = 0
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._rebirth = False
        self._host_online = False
        self._host_offline = False
        self._host_timestamp: int | None = None
        self._host_online_timestamp: int | None = None
        self._lost: Exception | None = None
        self.state: NodeState = "disconnected"
        self.state_changed = asyncio.Event()
        """Set on every change of :attr:`state` (for whoever waits on it; cleared by them)."""

    # -- what the controller tells (never blocks) --------------------------------------------

    def tool_seen(self, tool_id: str, snapshot: ToolSnapshot, at: datetime) -> None:
        values = m.from_snapshot(snapshot)
        tool = self._tools.get(tool_id)
        if tool is not None:
            tool.reported_e10 = values[m.E10_STATE]
            if tool.declared is not None:  # as equipment tracking records it
                values[m.E10_STATE] = tool.declared.state
        self._change(tool_id, values, at, online=snapshot.connected)

    @property
    def wants_declarations(self) -> bool:
        return True

    def declared(self, in_force: Mapping[str, InForce], at: datetime) -> None:
        for tool_id, tool in self._tools.items():
            declared = in_force.get(tool_id)
            if declared == tool.declared:
                continue
            tool.declared = declared
            values = m.from_declaration(declared)
            values[m.E10_STATE] = tool.reported_e10 if declared is None else declared.state
            self._change(tool_id, values, at)

    def recipe_active(self, tool_id: str, recipe: RecipeInfo, at: datetime) -> None:
        self._change(tool_id, m.from_recipe(recipe), at)

    def job_measured(self, tool_id: str, results: JobResults, at: datetime) -> None:
        tool = self._tools.get(tool_id)
        if tool is not None:
            self._change(tool_id, m.from_results(tool.device, results), at)

    def _change(
        self,
        tool_id: str,
        values: dict[str, MetricValue],
        at: datetime,
        *,
        online: bool | None = None,
    ) -> None:
        tool = self._tools.get(tool_id)
        if tool is None:
            return
        tool.values.update(values)
        if online is not None:
            tool.online = online
        if not self._live:
            return  # the next births carry the values
        at_ms = epoch_ms(at)
        if tool_id in self._born and not tool.online:
            self._born.discard(tool_id)
            self._queue(_Death(tool_id, at_ms))
        elif tool_id not in self._born and tool.online:
            self._born.add(tool_id)
            tool.published = dict(tool.values)
            self._queue(_Birth(tool_id, dict(tool.values), at_ms))
        elif tool_id in self._born:
            changed = {
                name: value
                for name, value in values.items()
                if not m.same(tool.published[name], value)
            }
            if changed:
                tool.published.update(changed)
                self._queue(_Data(tool_id, changed, at_ms))

    def _queue(self, item: _Out) -> None:
        self._outbox.append(item)
        self._wake.set()

    # -- running -----------------------------------------------------------------------------

    def stop(self) -> None:
        """End the session: NDEATH, DISCONNECT, and :meth:`run` returns."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        """Keep the node's session up until :meth:`stop`."""
        delays = backoff_delays(self._policy, self._rng)
        failing = False
        with structlog.contextvars.bound_contextvars(edge_node=self.edge_node_id):
            loop = asyncio.get_running_loop()
            while not self._stop.is_set():
                bdseq = self.bdseq.advance()
                up_since: float | None = None
                try:
                    async with self._client(bdseq) as client:
                        if failing:
                            log.info("sparkplug broker answers again", broker=self.config.url)
                        failing = False
                        up_since = loop.time()
                        await self._session(client, bdseq)
                except aiomqtt.MqttError as exc:
                    if not failing:
                        log.warning(
                            "sparkplug broker unreachable; retrying",
                            broker=self.config.url,
                            error=str(exc),
                        )
                    failing = True
                finally:
                    self._went_offline()
                if up_since is not None and loop.time() - up_since >= self._policy.backoff_max_s:
                    # a session that stayed up: the next retry comes soon; one that failed
                    # once connected (a broker refusing what it sends) backs off further, or
                    # it would be opened again, births and all, at the first delay each time
                    delays = backoff_delays(self._policy, self._rng)
                if self._stop.is_set():
                    break
                if self._host_offline:  # start over at once: CONNECT, then wait for the host
                    self._host_offline = False
                    continue
                await self._pause(next(delays))
        log.info("sparkplug edge node stopped")

    def _client(self, bdseq: int) -> aiomqtt.Client:
        will = aiomqtt.Will(self.topics.node("NDEATH"), self._ndeath(bdseq), qos=1, retain=False)
        return aiomqtt.Client(
            self.config.host,
            self.config.port,
            identifier=self.config.client_id or f"pkgline-sp-{self.edge_node_id}",
            username=self.config.username,
            password=self._password,
            will=will,
            clean_session=True,
            keepalive=self.config.keepalive_s,
            tls_context=self._tls,
            timeout=MQTT_TIMEOUT_S,
            socket_options=NO_DELAY,
        )

    def _ndeath(self, bdseq: int) -> bytes:
        return encode(now_ms(), [Metric(DataType.Int64, bdseq, name=m.BDSEQ)], seq=None)

    async def _pause(self, delay_s: float) -> None:
        self._wake.clear()
        if self._stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                while not self._stop.is_set():
                    await self._wake.wait()
                    self._wake.clear()

    def _set_state(self, state: NodeState) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.set()

    def _went_offline(self) -> None:
        self._live = False
        self._born.clear()
        self._outbox.clear()
        self._set_state("disconnected")

    async def _session(self, client: aiomqtt.Client, bdseq: int) -> None:
        self._host_online = self._host_offline = self._rebirth = False
        self._lost = None
        primary = self.config.primary_host_id
        await client.subscribe(self.topics.node("NCMD"), qos=1)
        if primary is not None:
            await client.subscribe(state_topic(primary), qos=1)
        log.info("sparkplug session up", broker=self.config.url, bdseq=bdseq)
        listener = asyncio.create_task(self._listen(client), name="sparkplug-listen")
        try:
            await self._serve(client, bdseq)
        except _SessionOver:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(STOP_S):
                    # an intentional disconnect publishes the NDEATH itself (the will is not sent)
                    await client.publish(self.topics.node("NDEATH"), self._ndeath(bdseq), qos=1)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _serve(self, client: aiomqtt.Client, bdseq: int) -> None:
        waiting_logged = False
        while True:
            self._wake.clear()
            if self._lost is not None:
                raise self._lost
            if self._stop.is_set():
                raise _SessionOver
            if self._host_offline:
                log.info(
                    "primary host offline: ending the session", host=self.config.primary_host_id
                )
                raise _SessionOver
            host_ok = self.config.primary_host_id is None or self._host_online
            if host_ok and (not self._live or self._rebirth):
                self._rebirth = False
                await self._birth(client, bdseq)
            elif not host_ok and not waiting_logged:
                log.info("waiting for the primary host", host=self.config.primary_host_id)
                waiting_logged = True
                self._set_state("waiting_for_host")
            while self._live and self._outbox:
                await self._send(client, self._outbox.popleft())
            await self._wake.wait()

    async def _birth(self, client: aiomqtt.Client, bdseq: int) -> None:
        """NBIRTH and a DBIRTH per tool answering, all from the values of this moment;
        whatever changes after is queued behind them."""
        self._outbox.clear()
        self._born = {t for t, tool in self._tools.items() if tool.online}
        self._live = True
        at = now_ms()
        births = []
        for tool_id, tool in self._tools.items():  # in line.toml's order
            if tool.online:
                tool.published = dict(tool.values)
                births.append(_Birth(tool_id, dict(tool.values), at))
        self._seq = 0
        node_metrics = [
            Metric(DataType.Int64, bdseq, name=m.BDSEQ, timestamp_ms=at),
            Metric(DataType.Boolean, False, name=m.REBIRTH, timestamp_ms=at),
        ]
        await self._publish(client, self.topics.node("NBIRTH"), node_metrics)
        self._set_state("born")
        log.info("sparkplug node born", bdseq=bdseq, devices=len(births))
        for birth in births:
            await self._send(client, birth)

    async def _send(self, client: aiomqtt.Client, item: _Out) -> None:
        try:
            await self._send_one(client, item)
        except PayloadError as exc:  # a value that does not fit its metric: not sent, logged
            log.warning("sparkplug message not sent", tool_id=item.tool_id, error=str(exc))

    async def _send_one(self, client: aiomqtt.Client, item: _Out) -> None:
        aliases = self._aliases[item.tool_id]
        if isinstance(item, _Birth):
            metrics = [
                Metric(
                    d.datatype,
                    item.values[d.name],
                    name=d.name,
                    alias=d.alias,
                    timestamp_ms=item.at_ms,
                )
                for d in aliases.values()
            ]
            await self._publish(client, self.topics.device("DBIRTH", item.tool_id), metrics)
        elif isinstance(item, _Data):
            metrics = [
                Metric(aliases[n].datatype, v, alias=aliases[n].alias, timestamp_ms=item.at_ms)
                for n, v in item.values.items()
            ]
            await self._publish(client, self.topics.device("DDATA", item.tool_id), metrics)
        else:
            await self._publish(client, self.topics.device("DDEATH", item.tool_id), [])

    async def _publish(self, client: aiomqtt.Client, topic: str, metrics: list[Metric]) -> None:
        payload = encode(now_ms(), metrics, seq=self._seq)
        self._seq = (self._seq + 1) % 256
        await client.publish(topic, payload, qos=0, retain=False)

    # -- what comes in ------------------------------------------------------------------------

    async def _listen(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                topic = str(message.topic)
                raw = message.payload
                payload = bytes(raw) if isinstance(raw, bytes | bytearray) else b""
                if topic == self.topics.node("NCMD"):
                    self._command(payload)
                elif self.config.primary_host_id and topic == state_topic(
                    self.config.primary_host_id
                ):
                    self._host_state(payload)
        except aiomqtt.MqttError as exc:
            self._lost = exc
            self._wake.set()

    def _command(self, payload: bytes) -> None:
        try:
            command = decode(payload)
        except PayloadError as exc:
            log.warning("sparkplug NCMD ignored", error=str(exc))
            return
        for metric in command.metrics:
            if metric.name == m.REBIRTH and metric.value is True:
                log.info("sparkplug rebirth requested")
                self._rebirth = True
                self._live = False  # no DATA from now until the births (the spec's rule)
                self._wake.set()
            else:
                log.warning(
                    "sparkplug NCMD metric not supported",
                    metric=metric.name or metric.alias,
                )

    def _host_state(self, payload: bytes) -> None:
        try:
            state = json.loads(payload)
            online, timestamp = state["online"], state["timestamp"]
            if not isinstance(online, bool) or not isinstance(timestamp, int):
                raise TypeError("online must be a boolean and timestamp an integer")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning(
                'sparkplug STATE ignored: expected JSON {"online": bool, "timestamp": ms}',
                error=str(exc),
            )
            return
        # A message older than the one it would overrule is an old session's, delivered late:
        # an online one older than the last STATE, an offline one older than the last online.
        last = self._host_timestamp if online else self._host_online_timestamp
        if last is not None and timestamp < last:
            return
        self._host_timestamp = timestamp
        if online:
            self._host_online = True
            self._host_online_timestamp = timestamp
        else:
            self._host_online = False
            if self.state == "born":
                self._host_offline = True
        self._wake.set()


@asynccontextmanager
async def running(node: EdgeNode | None) -> AsyncIterator[None]:
    """Run ``node`` (if any) while the block runs; on leaving, stop it cleanly (NDEATH)."""
    if node is None:
        yield
        return
    task = asyncio.create_task(node.run(), name="sparkplug-edge-node")
    task.add_done_callback(_failed)
    try:
        yield
    finally:
        node.stop()
        # a failure of the node was logged (_failed): it does not fail the controller's stop
        await asyncio.wait([task], timeout=STOP_S + MQTT_TIMEOUT_S)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sparkplug edge node failed", error=repr(task.exception()))
