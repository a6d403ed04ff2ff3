"""Test harness: real servers on loopback, real databases, and no leaks.

Every test is checked for sockets it leaves open and, for async tests, for asyncio tasks it
leaves running. PostgreSQL tests get a database of their own, created and dropped around the
test; they skip when no server answers, unless PKGLINE_REQUIRE_POSTGRES=1 (as on CI), where
they fail instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import inspect
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from simulators.ports import PORTS_ENV, default_port_range
from tests.pki_material import Keys, make_keys

PG_ADMIN_URL = os.environ.get("PKGLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("PKGLINE_REQUIRE_POSTGRES") == "1"


def pytest_configure(config: pytest.Config) -> None:
    _ports_of_this_worker(getattr(config, "workerinput", None))


def _ports_of_this_worker(workerinput: dict[str, object] | None) -> None:
    """Each xdist worker chooses the free ports of its simulated lines, brokers and servers
    from a slice of the range of its own (``$PKGLINE_SIM_PORTS``, which the ``pkgline``
    children it starts inherit), so that two workers never choose the same port between
    one's choice and its bind (a simulated OPC UA server found its port taken, in a full run).
    A range set by hand is kept."""
    if workerinput is None or os.environ.get(PORTS_ENV):
        return
    whole = default_port_range()
    workers = int(str(workerinput["workercount"]))
    size = len(whole) // workers
    if size < 500:  # too narrow for a worker's lines: the whole range, as without workers
        return
    first = whole.start + int(str(workerinput["workerid"]).removeprefix("gw")) * size
    os.environ[PORTS_ENV] = f"{first}-{first + size - 1}"


def _open_sockets() -> dict[str, str]:
    found: dict[str, str] = {}
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("socket:"):
            found[fd.name] = target
    return found


@pytest.fixture
async def _task_guard() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    if left:
        names = ", ".join(sorted(t.get_name() + ":" + repr(t.get_coro()) for t in left))
        pytest.fail(f"the test left {len(left)} asyncio task(s) running: {names}")


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves sockets open or (async tests) tasks running."""
    if inspect.iscoroutinefunction(request.function):
        # The test's event loop (and its self-pipe socket pair) outlives this fixture: make it
        # exist before the first look, so that only the test's own sockets count.
        request.getfixturevalue("_function_scoped_runner").get_loop()
        request.getfixturevalue("_task_guard")
    before = _open_sockets()
    yield
    leaked = {fd: t for fd, t in _open_sockets().items() if before.get(fd) != t}
    if leaked:  # an unreferenced socket may only wait for the collector: give it that chance
        gc.collect()
        leaked = {fd: t for fd, t in _open_sockets().items() if before.get(fd) != t}
    if leaked:
        pytest.fail(f"the test left {len(leaked)} socket(s) open: {sorted(leaked.values())}")


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session", autouse=True)
def _session_directories(
    tmp_path_factory: pytest.TempPathFactory, _cache_home: Path
) -> Iterator[None]:
    """The state and cache directories of the session's for what is set up before a test's
    own (below): a module's server (tests/station/conftest.py) and its seed would otherwise
    write into the user's ~/.cache and ~/.local/state."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("STATE_DIRECTORY", raising=False)
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
        patch.delenv("CACHE_DIRECTORY", raising=False)
        patch.setenv("XDG_CACHE_HOME", str(_cache_home))
        yield


@pytest.fixture(autouse=True)
def _own_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _cache_home: Path
) -> None:
    """A state directory of the test's own (line controllers spool there by default), so
    that tests and their `pkgline serve` subprocesses never share one, nor the user's; and a
    cache directory of the session's (pkgline.flowcache: the built flows, the same for all)."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            return True
    except OSError:
        return False


def _pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


async def _admin_async(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _admin(sql: str) -> None:
    # On a worker thread: the fixture may be set up while a test's event loop is running.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _admin_async(sql)).result()


def _require_postgres() -> None:
    if not _postgres_reachable():
        reason = (
            "PostgreSQL is not reachable on 127.0.0.1:5432 (start it with "
            "'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start')"
        )
        if REQUIRE_POSTGRES:
            pytest.fail(reason + "; PKGLINE_REQUIRE_POSTGRES=1 says these tests must run")
        pytest.skip(reason)


@contextlib.contextmanager
def _database(template: str | None = None) -> Iterator[str]:
    name = f"pkgline_t_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield _pg_url(name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _upgrade(url: str) -> None:
    """Migrate ``url`` to the head revision (on a worker thread, as :func:`_admin`)."""
    from mes.adapters.database import create_engine
    from mes.adapters.migrate import upgrade

    async def run() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test (``postgresql://`` URL), dropped after."""
    _require_postgres()
    with _database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file of this test's own (``sqlite:///`` URL; the file is not created)."""
    return f"sqlite:///{tmp_path / 'pkgline.db'}"


@pytest.fixture(scope="session")
def _postgres_template() -> Iterator[str]:
    """A PostgreSQL database migrated to the head once per session (and xdist worker), that
    :func:`migrated_postgres_url` copies: migrating each test's database from nothing took
    some 0.5 s of the suite's time per test, a copy takes a third of it."""
    _require_postgres()
    with _database() as url:
        _upgrade(url)
        yield url.rpartition("/")[2]


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the head once per session (and xdist worker), that
    :func:`migrated_sqlite_url` copies."""
    path = tmp_path_factory.mktemp("template") / "pkgline.db"
    _upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def migrated_postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL database of this test's own at the head revision (a copy of the
    session's migrated template), dropped after. Tests of the migrations themselves take
    :func:`postgres_url`, which is empty."""
    _require_postgres()
    with _database(template=request.getfixturevalue("_postgres_template")) as url:
        yield url


@pytest.fixture
def migrated_sqlite_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """A SQLite file of this test's own at the head revision (a copy of the session's
    migrated template). Tests of the migrations themselves take :func:`sqlite_url`."""
    path = tmp_path / "pkgline.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def rsa_keys() -> Keys:
    """RSA keys for the security tests, made once per session (tests/pki_material.py)."""
    return make_keys()
