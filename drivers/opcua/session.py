"""One OPC UA session per server endpoint, shared by the drivers of every tool behind it.

An OPC UA server may host many tools (a gateway does). :class:`EndpointSession` owns the one
asyncua ``Client`` for an endpoint URL and everything that keeps it useful:

- connect and reconnect with capped, jittered backoff (``drivers.supervision.backoff_delays``);
- a watchdog: a dropped socket is seen at once; a silent one is probed after
  ``poll_interval_s`` and declared dead when the probe gets no answer in ``timeout_s``, so a
  dead server is noticed within about ``poll_interval_s + timeout_s`` (1.2 s by default);
- one subscription per tool at ``poll_interval_s``, created at the tool's publishing phase
  (:attr:`SessionListener.publish_phase_s`): a server starts a subscription's publishing timer
  when it creates it, so the tools of a gateway report at phases spread over the interval
  instead of all in one publish response; asyncua does not carry a subscription over a new
  session, so after every reconnect the session is rebuilt from scratch: a fresh Client, fresh
  subscriptions, every tool's nodes resolved again and its monitored items created again;
- every waiting request fails at once when the connection drops (the socket is closed, which
  fails asyncua's pending futures), and requests made while disconnected fail immediately;
- asyncua and ``ua`` exceptions become the project's own errors, once
  (:func:`~drivers.opcua.link.translate_error`), with the tool and the request attached;
- security (:mod:`drivers.opcua.security`): each connection applies the endpoint's policy,
  mode, certificate and user, and checks the server's certificate against the trust list; a
  refusal either way is a :class:`~drivers.errors.SecurityRefused` naming the reason. The
  controller's own certificate is watched: when ``pkgline pki renew`` replaces it, the
  session reconnects with the new one (no daemon restart).
- at most :data:`OPENS_AT_ONCE` secure sessions of an event loop are being opened at a time
  (the daemon starting opens hundreds): an open waits for a slot, its timeouts run from then.

Drivers plug in as :class:`~drivers.opcua.link.SessionListener`: on every (re)connection the session asks each one
to resolve its nodes and name the items it wants monitored, then routes notifications back by
client handle (:mod:`drivers.opcua.link`: the connection as drivers see it).
:class:`~drivers.opcua.pool.OpcUaSessionPool` hands out sessions by URL, reference-counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Final

import structlog
from asyncua import ua

from drivers.config import INSECURE, ConnectionPolicy, OpcUaSecurity
from drivers.errors import (
    DriverError,
    ProtocolError,
    SecurityRefused,
    ToolUnreachable,
)
from drivers.opcua.link import (
    Connection,
    ItemSpec,
    SessionListener,
    close_client_now,
    quiet_publish_noise,
    status_name,
    translate_error,
)
from drivers.opcua.security import (
    ServerCheck,
    secure_client,
    security_pki,
)
from drivers.opcua.ua_typed import (
    AttributeIds,
    Client,
    ObjectIds,
    UaClientState,
    UaError,
    node_id,
)
from drivers.supervision import backoff_delays

log = structlog.get_logger("pkgline.drivers.opcua")

SESSION_TIMEOUT_MS = 30_000
"""How long a server keeps our session after the connection drops. We never resume one (a
reconnect builds a new session), so a short timeout frees the server's resources sooner."""

MONITORED_ITEMS_PER_REQUEST = 1000
_PROBE = ua.ReadParameters(
    NodesToRead=[
        ua.ReadValueId(
            NodeId=node_id(ObjectIds.Server_ServerStatus_State),
            AttributeId=AttributeIds.Value,
        )
    ]
)


OPENS_AT_ONCE: Final = 16
"""Secure sessions being opened at once by one event loop (GetEndpoints, then the socket,
Hello, OpenSecureChannel with its RSA, CreateSession and ActivateSession, signed). 500
endpoints connecting at once (the daemon starting) queued every request behind the others'
RSA, past the timeout, and every failed one was retried together after the backoff. Plain
sessions cost little CPU to open and are not limited: limited, 200 of them took 12 s to connect
instead of 4 (bench/line_scale.py --per-server 1, a loaded machine). An open waits for a slot first; asyncua's timeouts start with each request, so
they run from when it has one (as Modbus/TCP Security's TLS handshakes do,
``drivers.modbus.session.HANDSHAKES_AT_ONCE``)."""

_opens: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def open_slot() -> asyncio.Semaphore:
    """This event loop's limit of secure sessions being opened (:data:`OPENS_AT_ONCE`)."""
    loop = asyncio.get_running_loop()
    slots = _opens.get(loop)
    if slots is None:
        slots = _opens[loop] = asyncio.Semaphore(OPENS_AT_ONCE)
    return slots


class EndpointSession:
    """The shared connection to one OPC UA server endpoint (see the module docstring)."""

    def __init__(
        self,
        url: str,
        policy: ConnectionPolicy,
        *,
        security: OpcUaSecurity = INSECURE,
        rng: random.Random | None = None,
    ):
        quiet_publish_noise()
        self.url = url
        self.policy = policy
        self.security = security
        self._own_fingerprint: tuple[int, int] | None = None
        self._rng = rng or random.Random()
        self._listeners: list[SessionListener] = []
        self._conn: Connection | None = None
        self._attach_lock = asyncio.Lock()
        self._handles = itertools.count(1)
        self._supervisor: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._last_reason = "not connected yet"
        self._online: bool | None = None
        self._closed = False
        self.connections_made = 0
        """How many times a connection was established (for tests and diagnostics)."""

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.lost_reason is None

    @property
    def listeners(self) -> tuple[SessionListener, ...]:
        return tuple(self._listeners)

    # -- listeners -----------------------------------------------------------------------------

    async def add(self, listener: SessionListener) -> None:
        """Add a tool; returns once it is attached or the first connection attempt failed."""
        if self._closed:
            raise ToolUnreachable("the session is closed", tool_id=listener.tool_id)
        self._listeners.append(listener)
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"opcua-session {self.url}"
            )
        await self._first_attempt.wait()
        async with self._attach_lock:
            conn = self._conn
            if conn is not None and conn.lost_reason is None:
                if listener not in conn.subscriptions:
                    try:
                        await self._attach(conn, [listener])
                    except DriverError as exc:  # the connection failed meanwhile
                        listener.attach_failed(exc)
                return
        listener.connection_lost(self._last_reason)

    async def remove(self, listener: SessionListener) -> None:
        """Remove a tool: its subscription is deleted if the connection is up."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)
        async with self._attach_lock:
            conn = self._conn
            if conn is None:
                return
            subscription = conn.subscriptions.pop(listener, None)
            for handle in [h for h, (owner, _) in conn.handles.items() if owner is listener]:
                del conn.handles[handle]
            if subscription is not None and conn.lost_reason is None:
                try:
                    await conn.client.uaclient.delete_subscriptions([subscription])
                except Exception as exc:
                    log.debug("delete subscription failed", url=self.url, error=repr(exc))

    # -- requests -----------------------------------------------------------------------------

    def _require(self, tool_id: str, request: str) -> Connection:
        conn = self._conn
        if conn is None or conn.lost_reason is not None:
            raise ToolUnreachable(
                f"not connected to {self.url} ({self._last_reason})",
                tool_id=tool_id,
                request=request,
            )
        return conn

    async def read(
        self, tool_id: str, request: str, params: ua.ReadParameters
    ) -> list[ua.DataValue]:
        """One Read request; the service result is checked, each value's status is not."""
        conn = self._require(tool_id, request)
        try:
            results = await conn.client.uaclient.read(params)
        except Exception as exc:
            raise translate_error(exc, tool_id=tool_id, request=request) from exc
        conn.last_heard = time.monotonic()
        if len(results) != len(params.NodesToRead):
            raise ProtocolError(
                f"asked for {len(params.NodesToRead)} values, got {len(results)}",
                tool_id=tool_id,
                request=request,
            )
        return results

    async def call(
        self, tool_id: str, request: str, method: ua.CallMethodRequest
    ) -> ua.CallMethodResult:
        """One Call request; a Bad method status becomes a ProtocolError."""
        conn = self._require(tool_id, request)
        try:
            results = await conn.client.uaclient.call([method])
        except Exception as exc:
            raise translate_error(exc, tool_id=tool_id, request=request) from exc
        conn.last_heard = time.monotonic()
        if len(results) != 1:
            raise ProtocolError(
                f"got {len(results)} results for one call", tool_id=tool_id, request=request
            )
        result = results[0]
        if not result.StatusCode.is_good():
            bad_args = [
                f"argument {i + 1}: {status_name(s.value)}"
                for i, s in enumerate(result.InputArgumentResults or [])
                if not s.is_good()
            ]
            detail = f" ({'; '.join(bad_args)})" if bad_args else ""
            raise ProtocolError(
                f"the method failed with {result.StatusCode.name}{detail}",
                tool_id=tool_id,
                request=request,
            )
        return result

    # -- supervision ---------------------------------------------------------------------------

    async def _secure(self, client: Client) -> ServerCheck | None:
        """Apply the endpoint's security to a new client (see drivers.opcua.security)."""
        if self.security.secure:
            self._own_fingerprint = security_pki(self.security).own_fingerprint()
        return await secure_client(client, self.security)

    def _new_client(self) -> Client:
        # asyncua's own watchdog probes with a timeout equal to its interval, too short for a
        # loaded line; ours (``_watch``) probes only a silent connection, with the policy
        # timeout. So asyncua's is left to notice state changes only.
        client = Client(self.url, timeout=self.policy.timeout_s, watchdog_intervall=3600.0)
        client.name = client.description = "pkgline controller"
        client.application_uri = "urn:pkgline:controller"
        client.product_uri = "urn:pkgline"
        client.session_timeout = SESSION_TIMEOUT_MS
        return client

    def _subscription_parameters(self, *, heartbeat: bool) -> ua.CreateSubscriptionParameters:
        """A tool's subscription. The ``heartbeat`` one (the first on a connection) has the
        server send a keep-alive when nothing changed for about half the timeout, so an idle
        connection stays "heard" without probes; the others need no keep-alive of their own
        (any publish response is heard) and ask for one only every third of the session
        timeout: a keep-alive per tool every 0.4 s cost 500 tools behind 10 gateways 0.11 of a
        core (bench/line_scale.py)."""
        interval_ms = self.policy.poll_interval_s * 1000.0
        if heartbeat:
            keep_alive = max(1, round(self.policy.timeout_s * 500.0 / interval_ms))
        else:
            keep_alive = max(1, round(SESSION_TIMEOUT_MS / 3 / interval_ms))
        return ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval_ms,
            RequestedLifetimeCount=max(3 * keep_alive, round(SESSION_TIMEOUT_MS / interval_ms)),
            RequestedMaxKeepAliveCount=keep_alive,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )

    async def _supervise(self) -> None:
        if self.security.secure and not self.security.check_host_name:
            log.warning(
                "opc ua server host name not checked",
                url=self.url,
                why="check_host_name = false: any certificate the line trusts is accepted "
                "from whichever machine answers at this address",
            )
        delays = backoff_delays(self.policy, self._rng)
        try:
            while not self._closed:
                try:
                    conn = await self._open()
                except DriverError as exc:
                    self._went_offline(exc.message, refused=isinstance(exc, SecurityRefused))
                    self._first_attempt.set()
                    await asyncio.sleep(next(delays))
                    continue
                self._first_attempt.set()
                delays = backoff_delays(self.policy, self._rng)
                reason = await self._watch(conn)
                await self._drop(conn, reason)
                await asyncio.sleep(next(delays))
        finally:
            self._first_attempt.set()
            last, self._conn = self._conn, None
            if last is not None:
                await self._close_gracefully(last)

    async def _open(self) -> Connection:
        client = self._new_client()
        conn = Connection(client, self.url)
        check: ServerCheck | None = None
        try:
            async with open_slot() if self.security.secure else contextlib.nullcontext():
                check = await self._secure(client)
                await client.connect()
            async with self._attach_lock:
                self._conn = conn
                await self._attach(conn, list(self._listeners))
        except BaseException as exc:
            if self._conn is conn:
                self._conn = None
            await close_client_now(client)
            if check is not None and check.rejected is not None:
                raise SecurityRefused(
                    f"the server's {check.rejected.message} ({check.rejected.reason.value})",
                    request=f"connect to {self.url}",
                ) from exc
            if isinstance(exc, UaError) and "No matching endpoints" in str(exc):
                # asyncua's find_endpoint, when asking for endpoints or creating the session
                raise SecurityRefused(
                    f"the server offers no endpoint with security policy "
                    f"{self.security.policy} and mode {self.security.mode}",
                    request=f"connect to {self.url}",
                ) from exc
            if isinstance(exc, Exception):
                raise translate_error(exc, tool_id=None, request=f"connect to {self.url}") from exc
            raise
        self.connections_made += 1
        if self._online is not True:
            log.info("opc ua endpoint connected", url=self.url, tools=len(self._listeners))
        self._online = True
        return conn

    def _went_offline(self, reason: str, *, refused: bool = False) -> None:
        self._last_reason = reason
        if self._online is not False:
            log.warning("opc ua endpoint unreachable", url=self.url, reason=reason)
        self._online = False
        for listener in list(self._listeners):
            listener.connection_lost(reason, refused=refused)

    async def _attach(self, conn: Connection, listeners: Sequence[SessionListener]) -> None:
        """Resolve listeners' nodes and subscribe to them (call under the lock)."""
        outcomes = await asyncio.gather(
            *(listener.attach(conn) for listener in listeners), return_exceptions=True
        )
        wanted: list[tuple[SessionListener, Sequence[ItemSpec]]] = []
        for listener, outcome in zip(listeners, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                listener.attach_failed(
                    translate_error(outcome, tool_id=listener.tool_id, request="resolve nodes")
                )
            else:
                wanted.append((listener, outcome))
        # each at its own phase (within one interval), all under way at once
        first = not conn.subscriptions
        subscribed = await asyncio.gather(
            *(
                self._subscribe(conn, listener, specs, heartbeat=first and i == 0)
                for i, (listener, specs) in enumerate(wanted)
            ),
            return_exceptions=True,
        )
        for done in subscribed:
            if isinstance(done, BaseException):
                raise done  # the connection failed: the caller reconnects

    async def _subscribe(
        self,
        conn: Connection,
        listener: SessionListener,
        specs: Sequence[ItemSpec],
        *,
        heartbeat: bool,
    ) -> None:
        """Create the listener's subscription at its phase, then its monitored items, and tell
        the listener at once: the subscription's first publish may come right behind the
        answer, and the tool is online before its first status. Raises a DriverError when a
        request fails (the connection is then rebuilt)."""
        phase = listener.publish_phase_s
        if phase is not None:
            interval = self.policy.poll_interval_s
            await asyncio.sleep((phase - asyncio.get_running_loop().time()) % interval)
        uaclient = conn.client.uaclient
        try:
            created = await uaclient.create_subscription(
                self._subscription_parameters(heartbeat=heartbeat),
                lambda r: self._on_publish(conn, r),
            )
        except Exception as exc:
            raise translate_error(exc, tool_id=listener.tool_id, request="subscribe") from exc
        conn.subscriptions[listener] = created.SubscriptionId
        requests: list[ua.MonitoredItemCreateRequest] = []
        for spec in specs:
            handle = next(self._handles)
            conn.handles[handle] = (listener, spec.key)
            requests.append(self._item_request(spec, handle))
        failure: str | None = None
        for start in range(0, len(requests), MONITORED_ITEMS_PER_REQUEST):
            chunk = requests[start : start + MONITORED_ITEMS_PER_REQUEST]
            params = ua.CreateMonitoredItemsParameters(
                SubscriptionId=created.SubscriptionId,
                TimestampsToReturn=ua.TimestampsToReturn.Neither,
                ItemsToCreate=chunk,
            )
            try:
                results = await uaclient.create_monitored_items(params)
            except Exception as exc:
                raise translate_error(exc, tool_id=listener.tool_id, request="subscribe") from exc
            conn.last_heard = time.monotonic()
            for request, result in zip(chunk, results, strict=False):
                if failure is None and not result.StatusCode.is_good():
                    node = request.ItemToMonitor.NodeId.to_string()
                    failure = f"cannot monitor {node}: {result.StatusCode.name}"
        if failure is None:
            listener.attached()
        else:
            listener.attach_failed(
                ProtocolError(failure, tool_id=listener.tool_id, request="subscribe")
            )

    def _item_request(self, spec: ItemSpec, handle: int) -> ua.MonitoredItemCreateRequest:
        interval_ms = self.policy.poll_interval_s * 1000.0
        if spec.event_filter is not None:
            attribute, queue, sampling = AttributeIds.EventNotifier, 64, 0.0
        else:
            # Sample at twice the publishing rate: a change waits at most 1.5 intervals.
            attribute, queue, sampling = AttributeIds.Value, 1, interval_ms / 2
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=spec.node_id, AttributeId=attribute),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(
                ClientHandle=handle,
                SamplingInterval=sampling,
                Filter=spec.event_filter,
                QueueSize=queue,
                DiscardOldest=True,
            ),
        )

    def _on_publish(self, conn: Connection, result: ua.PublishResult) -> None:
        """asyncua's publish loop hands every publish response (keep-alives included) here."""
        if conn is not self._conn:
            return
        conn.last_heard = time.monotonic()
        batches: dict[SessionListener, list[tuple[int, ua.DataValue]]] = {}
        for notification in result.NotificationMessage.NotificationData or ():
            if isinstance(notification, ua.DataChangeNotification):
                for item in notification.MonitoredItems:
                    target = conn.handles.get(item.ClientHandle)
                    if target is not None:
                        batches.setdefault(target[0], []).append((target[1], item.Value))
            elif isinstance(notification, ua.EventNotificationList):
                for event in notification.Events:
                    target = conn.handles.get(event.ClientHandle)
                    if target is not None:
                        self._deliver(target[0].event_received, target[1], event.EventFields)
            elif (
                isinstance(notification, ua.StatusChangeNotification)
                and not notification.Status.is_good()
            ):
                # asyncua reports a dropped connection to subscriptions as BadShutdown.
                closed = conn.client.uaclient.state is not UaClientState.CONNECTED
                conn.lose(
                    "connection closed"
                    if closed
                    else f"subscription ended: {notification.Status.name}"
                )
        for listener, changes in batches.items():
            self._deliver(listener.values_changed, changes)

    @staticmethod
    def _deliver(callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("listener failed on a notification")

    async def _watch(self, conn: Connection) -> str:
        """Return why the connection is no longer usable, as soon as it is not."""
        tick = self.policy.poll_interval_s
        uaclient = conn.client.uaclient
        async with conn.client.subscribe_state() as states:
            while True:
                if conn.lost_reason is not None:
                    return conn.lost_reason
                if uaclient.state is not UaClientState.CONNECTED:
                    return "connection closed"
                try:
                    await states.next_change(timeout=tick)
                    continue
                except TimeoutError:
                    pass
                if self._own_certificate_renewed():
                    return "the controller's certificate was renewed: reconnecting with it"
                if time.monotonic() - conn.last_heard < tick:
                    continue
                try:
                    await uaclient.read(_PROBE)
                except Exception as exc:
                    error = translate_error(exc, tool_id=None, request="keep-alive")
                    return f"keep-alive failed: {error.message}"
                conn.last_heard = time.monotonic()

    def _own_certificate_renewed(self) -> bool:
        if not self.security.secure or self._own_fingerprint is None:
            return False
        return security_pki(self.security).own_fingerprint() != self._own_fingerprint

    async def _drop(self, conn: Connection, reason: str) -> None:
        if self._conn is conn:
            self._conn = None
        conn.lost_reason = conn.lost_reason or reason
        self._went_offline(reason)
        await close_client_now(conn.client)

    async def _close_gracefully(self, conn: Connection) -> None:
        """CloseSession (the server deletes our subscription), then make sure all is gone."""
        if conn.lost_reason is None:
            conn.lost_reason = "session closed"
            try:
                await asyncio.wait_for(conn.client.disconnect(), self.policy.timeout_s * 2)
            except Exception as exc:
                log.debug("graceful disconnect failed", url=self.url, error=repr(exc))
        await close_client_now(conn.client)

    async def close(self) -> None:
        """Close the connection and stop reconnecting. Idempotent."""
        if self._closed:
            return
        self._closed = True
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for listener in list(self._listeners):
            listener.connection_lost("session closed")
        self._listeners.clear()
