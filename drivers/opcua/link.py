"""The OPC UA connection of one endpoint as its drivers see it (:mod:`drivers.opcua.session`
owns it): what a driver asks of it (:class:`Link`: namespaces, browse paths, reads), what it
tells a driver (:class:`SessionListener`), the monitored items a driver names
(:class:`ItemSpec`), and asyncua's and ``ua``'s exceptions turned into the project's own
errors, once (:func:`translate_error`), with the tool and the request attached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from asyncua import ua

from drivers.errors import (
    DriverError,
    ProtocolError,
    SecurityRefused,
    ToolTimeout,
    ToolUnreachable,
)
from drivers.opcua.security import (
    CERTIFICATE_CODES,
    IDENTITY_CODES,
)
from drivers.opcua.ua_typed import (
    Client,
    ObjectIds,
    StatusCodes,
    UaStatusCodeError,
    boolean,
    node_id,
    status,
)

log = structlog.get_logger("pkgline.drivers.opcua")

_UNREACHABLE_CODES = frozenset(
    {
        StatusCodes.BadSessionClosed,
        StatusCodes.BadSessionIdInvalid,
        StatusCodes.BadSessionNotActivated,
        StatusCodes.BadSecureChannelClosed,
        StatusCodes.BadSecureChannelIdInvalid,
        StatusCodes.BadConnectionClosed,
        StatusCodes.BadNotConnected,
        StatusCodes.BadServerNotConnected,
        StatusCodes.BadServerHalted,
        StatusCodes.BadShutdown,
        StatusCodes.BadCommunicationError,
        StatusCodes.BadTcpServerTooBusy,
        StatusCodes.BadTooManySessions,
    }
)


_TIMEOUT_CODES = frozenset({StatusCodes.BadTimeout, StatusCodes.BadRequestTimeout})


HIERARCHICAL = node_id(ObjectIds.HierarchicalReferences)


class _PublishNoiseFilter(logging.Filter):
    """Drops two records of asyncua's publish loop that are expected in normal operation:

    - "Publish iteration crashed", logged at ERROR with a traceback whenever a connection drops
      while a publish request waits, which is at every disconnect. The session reports a lost
      connection itself, once, on the edge; the record is dropped when its cause is the lost
      connection. Any other publish failure is still logged.
    - "Received data for unknown subscription", a WARNING. Every subscription of our sessions
      is ours: a server publishes a new subscription's first keep-alive as soon as it creates
      it, and that can come in before asyncua has registered the subscription from the answer
      to CreateSubscription; and a publish can be on its way when a tool's subscription is
      deleted. Neither carries a value (a subscription's monitored items are created after it).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("Received data for unknown subscription"):
            return False
        cause = record.exc_info[1] if record.exc_info else None
        return not (isinstance(cause, ConnectionError) and message.startswith("Publish iteration"))


_PUBLISH_NOISE_FILTER = _PublishNoiseFilter()


def quiet_publish_noise() -> None:
    logging.getLogger("asyncua.client.ua_session.UaSession").addFilter(_PUBLISH_NOISE_FILTER)


def status_name(code: int) -> str:
    return status(code).name


def translate_error(exc: BaseException, *, tool_id: str | None, request: str) -> DriverError:
    """The project's error for an asyncua/ua/socket failure (the one place this happens)."""
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError is TimeoutError (an OSError)
        return ToolTimeout("the server did not answer in time", tool_id=tool_id, request=request)
    if isinstance(exc, UaStatusCodeError):
        name = status_name(exc.code)
        if exc.code in CERTIFICATE_CODES:
            return SecurityRefused(
                f"the server refused the secure channel: {name} (does it trust the "
                "controller's certificate? `pkgline pki list` shows it)",
                tool_id=tool_id,
                request=request,
            )
        if exc.code in IDENTITY_CODES:
            login = request.startswith("connect")
            return SecurityRefused(
                f"the server refused the user: {name} (user name, password or user "
                "certificate wrong, or anonymous access not allowed)"
                if login
                else f"the server does not allow this user to do that: {name} (is the user "
                "an operator of the tool?)",
                tool_id=tool_id,
                request=request,
            )
        if exc.code in _TIMEOUT_CODES:
            return ToolTimeout(f"the server answered {name}", tool_id=tool_id, request=request)
        if exc.code in _UNREACHABLE_CODES:
            return ToolUnreachable(f"the server answered {name}", tool_id=tool_id, request=request)
        return ProtocolError(f"the server answered {name}", tool_id=tool_id, request=request)
    if isinstance(exc, ConnectionError | OSError):
        text = str(exc) or type(exc).__name__
        return ToolUnreachable(f"connection failed: {text}", tool_id=tool_id, request=request)
    return ProtocolError(f"unexpected answer: {exc!r}", tool_id=tool_id, request=request)


def relative_path(names: Sequence[ua.QualifiedName]) -> ua.RelativePath:
    """A browse path following any hierarchical reference (HasComponent, Organizes,
    HasProperty, HasSubtype, ...) forward."""
    return ua.RelativePath(
        Elements=[
            ua.RelativePathElement(
                ReferenceTypeId=HIERARCHICAL,
                IsInverse=boolean(False),
                IncludeSubtypes=boolean(True),
                TargetName=n,
            )
            for n in names
        ]
    )


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """A monitored item a listener wants: data changes of a variable's value, or (with an
    event filter) the events an object emits. ``key`` comes back with each notification."""

    node_id: ua.NodeId
    key: int
    event_filter: ua.EventFilter | None = None


class Link(Protocol):
    """The live connection, as a listener sees it while it resolves its nodes."""

    async def namespace_index(self, uri: str) -> int: ...

    async def translate(self, paths: Sequence[ua.BrowsePath]) -> list[ua.BrowsePathResult]: ...

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]: ...


class SessionListener(Protocol):
    """What a driver plugs into an :class:`EndpointSession` (called in the session's task)."""

    @property
    def tool_id(self) -> str: ...

    @property
    def publish_phase_s(self) -> float | None:
        """When in each publishing interval this tool's subscription is created (seconds after
        ``k * interval`` on the event loop's clock), or None for at once."""
        ...

    async def attach(self, link: Link) -> Sequence[ItemSpec]:
        """Resolve this tool's nodes on a fresh connection; name the items to monitor."""
        ...

    def attached(self) -> None:
        """The monitored items exist: the tool is online; its values follow."""
        ...

    def attach_failed(self, error: DriverError) -> None:
        """This tool's nodes could not be resolved or monitored on this connection."""
        ...

    def values_changed(self, changes: Sequence[tuple[int, ua.DataValue]]) -> None:
        """New values of monitored variables, all of one publish response, by key."""
        ...

    def event_received(self, key: int, fields: Sequence[ua.Variant]) -> None: ...

    def connection_lost(self, reason: str, *, refused: bool = False) -> None:
        """The session is not connected, for ``reason``; ``refused``: a certificate or a
        user was refused, by either side."""
        ...


def path_key(path: ua.BrowsePath) -> tuple[object, ...]:
    return (
        path.StartingNode.to_string(),
        *(
            (e.ReferenceTypeId.to_string(), bool(e.IsInverse), e.TargetName.to_string())
            for e in path.RelativePath.Elements
        ),
    )


@dataclass(eq=False, slots=True)
class Connection:
    """One connected Client with a subscription per tool; replaced wholesale on reconnect."""

    client: Client
    endpoint: str
    subscriptions: dict[SessionListener, int] = field(default_factory=dict)
    handles: dict[int, tuple[SessionListener, int]] = field(default_factory=dict)
    namespaces: list[str] | None = None
    last_heard: float = field(default_factory=time.monotonic)
    lost_reason: str | None = None
    _namespace_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _translated: dict[tuple[object, ...], ua.BrowsePathResult] = field(default_factory=dict)

    def lose(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason
            # Wakes the watchdog at once (it waits on the client's state).
            self.client.uaclient.notify_transport_lost()

    async def namespace_index(self, uri: str) -> int:
        """The index of ``uri`` on this connection (NamespaceArray is read once, however many
        tools resolve their nodes at the same time)."""
        async with self._namespace_lock:
            if self.namespaces is None:
                node = self.client.get_node(node_id(ObjectIds.Server_NamespaceArray))
                try:
                    value = await node.read_value()
                except Exception as exc:
                    raise translate_error(exc, tool_id=None, request="read NamespaceArray") from exc
                if not isinstance(value, list):
                    raise ProtocolError(f"NamespaceArray is not a list: {value!r}")
                self.namespaces = [str(v) for v in value]
                self.last_heard = time.monotonic()
        try:
            return self.namespaces.index(uri)
        except ValueError:
            raise ProtocolError(
                f"the server has no namespace {uri!r} (it has: {', '.join(self.namespaces)})",
                request="resolve nodes",
            ) from None

    async def translate(self, paths: Sequence[ua.BrowsePath]) -> list[ua.BrowsePathResult]:
        """TranslateBrowsePathsToNodeIds, in one request. A path found once is not asked for
        again on this connection (every tool of a gateway resolves the same alarm event type)."""
        keys = [path_key(p) for p in paths]
        missing = [(k, p) for k, p in zip(keys, paths, strict=True) if k not in self._translated]
        if missing:
            try:
                results = await self.client.uaclient.translate_browsepaths_to_nodeids(
                    [p for _, p in missing]
                )
            except Exception as exc:
                raise translate_error(exc, tool_id=None, request="translate browse paths") from exc
            self.last_heard = time.monotonic()
            if len(results) != len(missing):
                raise ProtocolError(f"asked for {len(missing)} paths, got {len(results)}")
            found = {k: r for (k, _), r in zip(missing, results, strict=True)}
            for key, result in found.items():
                if result.StatusCode.is_good():
                    self._translated[key] = result
        else:
            found = {}
        return [self._translated.get(k) or found[k] for k in keys]

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        try:
            results = await self.client.uaclient.read(params)
        except Exception as exc:
            raise translate_error(exc, tool_id=None, request="read") from exc
        self.last_heard = time.monotonic()
        return results


async def close_client_now(client: Client) -> None:
    """Tear a Client down without waiting on the network.

    Closing the socket fails every request still waiting (asyncua's connection_lost), and the
    Client's background tasks are cancelled and awaited so nothing outlives the session.
    asyncua 2.1 keeps them in these attributes; ``disconnect()`` would instead send
    CloseSession on a dead connection and log warnings about it.
    """
    uaclient = client.uaclient
    uaclient.request_disconnect()
    protocol = uaclient.protocol
    if protocol is not None and not protocol.is_closed:
        protocol.disconnect_socket()
    tasks = [
        getattr(client, "_supervisor_task", None),
        getattr(client, "_stale_watchdog_task", None),
        getattr(client, "_renew_channel_task", None),
        getattr(uaclient.session, "_publish_task", None),
    ]
    live = [t for t in tasks if isinstance(t, asyncio.Task) and not t.done()]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)
    uaclient.disconnect_socket()
