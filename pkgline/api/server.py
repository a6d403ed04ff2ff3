"""Serving the API: the Unix socket (mode 0660; peers known by their OS account) and, when
configured, HTTPS, both in one event loop; sd_notify READY and the watchdog as ``pkgline
serve`` does; a stop (SIGTERM) closes the listeners and lets the requests under way finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.database import DEFAULT_TIMEOUTS, DatabaseTimeouts, create_engine, is_sqlite
from mes.adapters.outbox import OutboxSignal
from mes.adapters.schema import require_current_schema
from mes.domain.authority import AuthMethod, Principal
from mes.domain.signatures import SignaturePolicy
from mes.identity import IdentityService
from mes.ports_identity import Passwords
from mes.sessions import DEFAULT_LIFETIME, SessionService
from pkgline.api.app import create_app
from pkgline.api.auth import ApiState
from pkgline.api.peer import PeerCredentialsProtocol
from pkgline.bootstrap import load_versions, resolve_url, services_for
from pkgline.config import ApiConfig
from pkgline.station.live import close_streams
from pkgline.systemd import Notifier

log = structlog.get_logger("pkgline.api")

NOBODY = Principal("nobody", frozenset(), AuthMethod.SYSTEM)
"""The services' default principal: holds no role, so a call that forgot ``by=`` is refused."""

GRACEFUL_STOP_S = 10.0
"""How long a stop waits for requests under way."""


class ApiError(Exception):
    """The server cannot start (socket in use, certificate missing ...): says why."""


@asynccontextmanager
async def open_state(
    url: str | None,
    *,
    timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS,
    pool_size: int = 10,
    session_lifetime: timedelta = DEFAULT_LIFETIME,
    passwords: Passwords | None = None,
    signatures: SignaturePolicy | None = None,
) -> AsyncIterator[ApiState]:
    """The services the server shares between requests, on the database at ``url``
    (``passwords``: the hashing, argon2id by default; ``signatures``: how many people sign
    each signed operation, line.toml ``[signatures]``, one each by default)."""
    from mes.adapters.passwords import Argon2Passwords
    from mes.adapters.sql_identity import SqlIdentityStore
    from mes.adapters.sql_sessions import SqlSessionStore

    engine = create_engine(resolve_url(url), pool_size=pool_size, timeouts=timeouts)
    try:
        await require_current_schema(engine)
        identity = IdentityService(SqlIdentityStore(engine), passwords or Argon2Passwords())
        sessions = SessionService(identity, SqlSessionStore(engine), lifetime=session_lifetime)
        commits = OutboxSignal()
        services = services_for(engine, NOBODY, signatures=signatures, outbox=commits)
        await load_versions(services)  # each lot is checked against its own flow version
        try:
            async with _notified(engine, commits):
                yield ApiState(services, identity, sessions, engine, commits)
        finally:
            await sessions.close()
    finally:
        await engine.dispose()


@asynccontextmanager
async def _notified(engine: AsyncEngine, commits: OutboxSignal) -> AsyncIterator[None]:
    """On PostgreSQL, tell ``commits`` of every commit of lot changes in any process (LISTEN
    on the outbox's channel, on a connection of its own while the server runs, connected
    again with a backoff when it drops: :class:`CommitListener`); while it is not listening
    the station's streams poll. Nothing on SQLite."""
    if is_sqlite(engine):
        yield
        return
    from mes.adapters.commit_listener import CommitListener

    listener = CommitListener(engine, commits.committed)
    await listener.start()
    try:
        yield
    finally:
        await listener.stop()


def bind_unix_socket(path: Path, group: str | None = None) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0660 from the start (never wider), given to
    ``group`` when named. A stale socket file (nobody listening) is replaced; a live one or
    any other file is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ApiError(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink()
        else:
            raise ApiError(f"another server listens on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _umask(0o117):
            sock.bind(str(path))
        path.chmod(0o660)
        if group is not None:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise ApiError(f"[api] socket_group: there is no group {group!r}") from None
            os.chown(path, -1, gid)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    return sock


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: :func:`serve_api` runs two in one
    loop and stops both on one signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: Any, **kwargs: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(GRACEFUL_STOP_S),
        **kwargs,
    )


async def serve_api(
    state: ApiState,
    config: ApiConfig,
    stop: asyncio.Event,
    *,
    notifier: Notifier | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set, then drain. ``ready`` is set once every listener accepts."""
    app = create_app(state, max_body_bytes=config.max_body_kb * 1024)
    sock = bind_unix_socket(config.socket, config.socket_group)
    servers: list[tuple[_Server, list[socket.socket] | None]] = [
        (_Server(_config(app, http=PeerCredentialsProtocol)), [sock])
    ]
    if config.https is not None:
        https = config.https
        for path in (https.certificate, https.key):
            if not path.is_file():
                sock.close()
                config.socket.unlink(missing_ok=True)
                raise ApiError(f"[api.https]: {path} is not a file")
        servers.append(
            (
                _Server(
                    _config(
                        app,
                        http="httptools",
                        host=https.host,
                        port=https.port,
                        ssl_certfile=str(https.certificate),
                        ssl_keyfile=str(https.key),
                    )
                ),
                None,
            )
        )
    if config.http is not None:
        # plain HTTP on loopback only (LoopbackHttpConfig refuses other addresses)
        servers.append(
            (
                _Server(
                    _config(app, http="httptools", host=config.http.host, port=config.http.port)
                ),
                None,
            )
        )
    tasks = [asyncio.create_task(s.serve(sockets=socks)) for s, socks in servers]
    try:
        while not all(s.started for s, _ in servers):
            done = [t for t in tasks if t.done()]
            if done:
                await done[0]  # raises what stopped it
                raise ApiError("the server stopped while starting")
            await asyncio.sleep(0.01)
        where = [f"unix://{config.socket}"]
        if config.https is not None:
            where.append(f"https://{config.https.host}:{config.https.port}")
        if config.http is not None:
            where.append(f"http://{_host(config.http.host)}:{config.http.port}")
        log.info("api_ready", listening=where)
        if notifier is not None:
            notifier.ready(f"listening on {', '.join(where)}")
        if ready is not None:
            ready.set()
        await _until_stopped(stop, notifier, config.watchdog_fraction, tasks)
        if notifier is not None:
            notifier.stopping("draining requests under way")
    finally:
        close_streams(app)  # the station's open line streams end now, not at the drain's end
        for s, _ in servers:
            s.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        sock.close()
        config.socket.unlink(missing_ok=True)
        log.info("api_stopped")


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _until_stopped(
    stop: asyncio.Event,
    notifier: Notifier | None,
    fraction: float,
    tasks: list[asyncio.Task[None]],
) -> None:
    interval = notifier.watchdog_interval_s if notifier is not None else None
    tick = min(1.0, interval * fraction) if interval else 1.0
    while not stop.is_set():
        if any(t.done() for t in tasks):
            raise ApiError("a listener stopped by itself")
        if interval and notifier is not None:
            notifier.watchdog()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick)
