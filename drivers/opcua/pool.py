"""Sessions by endpoint (:class:`OpcUaSessionPool`): the tools behind one OPC UA server with
the same security share one :class:`~drivers.opcua.session.EndpointSession`,
reference-counted; the last driver to release it closes it.
"""

from __future__ import annotations

import asyncio
import random

from drivers.config import INSECURE, ConnectionPolicy, OpcUaSecurity
from drivers.errors import ToolUnreachable
from drivers.opcua.session import EndpointSession


def _endpoint_key(url: str, security: OpcUaSecurity) -> tuple[str, OpcUaSecurity]:
    """Tools share a session when they name the same server with the same security."""
    return url.rstrip("/"), security


class OpcUaSessionPool:
    """Hands out one :class:`EndpointSession` per endpoint URL, shared and reference-counted:
    the last driver to release a session closes it. The first driver's connection policy sets
    the session's timing. Creating a pool does no I/O."""

    def __init__(self, *, rng: random.Random | None = None):
        self._rng = rng
        self._sessions: dict[tuple[str, OpcUaSecurity], tuple[EndpointSession, int]] = {}
        self._closed = False

    def acquire(
        self, url: str, policy: ConnectionPolicy, security: OpcUaSecurity = INSECURE
    ) -> EndpointSession:
        if self._closed:
            raise ToolUnreachable(f"the session pool is closed (asked for {url})")
        key = _endpoint_key(url, security)
        session, count = self._sessions.get(key, (None, 0))
        if session is None:
            session = EndpointSession(url, policy, security=security, rng=self._rng)
        self._sessions[key] = (session, count + 1)
        return session

    async def release(self, session: EndpointSession) -> None:
        key = _endpoint_key(session.url, session.security)
        held, count = self._sessions.get(key, (None, 0))
        if held is not session:
            await session.close()
            return
        if count > 1:
            self._sessions[key] = (session, count - 1)
            return
        del self._sessions[key]
        await session.close()

    def session_for(
        self, url: str, security: OpcUaSecurity | None = None
    ) -> EndpointSession | None:
        """The session for ``url`` (with ``security``; when None, any security)."""
        if security is not None:
            entry = self._sessions.get(_endpoint_key(url, security))
            return entry[0] if entry else None
        for (held_url, _), (session, _) in self._sessions.items():
            if held_url == url.rstrip("/"):
                return session
        return None

    def __len__(self) -> int:
        return len(self._sessions)

    async def aclose(self) -> None:
        """Close every session. Idempotent."""
        self._closed = True
        sessions = [s for s, _ in self._sessions.values()]
        self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions))
