"""Built flow versions (mes.flowversions.Builds on pkgline.flowcache.VersionShelf): a command
builds only the versions it uses (a lot's, the active one for a start), not every published
one; the next process reads them back from the cache instead of building them again; and a
shelved version is trusted on the flowcache rules only (its own digest, this account's 0600
file, the files matching the hash it is named by). Builds are counted, never timed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.sql_flows import SqlFlowVersionStore
from mes.domain import commands as cmd
from mes.domain.flowversions import FlowVersion
from mes.flowversions import Builds, FlowVersionService, VersionedFlows
from mes.service import LotService, utc_now
from pkgline import flowcache
from pkgline.bootstrap import flow_library, seed_flow_versions

FLOW = "fc-heatsink-muf"


@dataclass
class Database:
    store: SqlFlowVersionStore
    uow: SqlUnitOfWorkFactory

    def process(self, shelf: Path) -> tuple[LotService, Builds]:
        """What a new ``pkgline`` process makes: its own builds, on the cache ``shelf``."""
        builds = Builds(flowcache.VersionShelf(shelf))
        lots = LotService(self.uow, flow_library(), versions=VersionedFlows(self.store, builds))
        return lots, builds


@pytest.fixture
async def database(sqlite_url: str) -> AsyncIterator[Database]:
    """A SQLite database as ``pkgline db upgrade`` makes it: every packaged flow published
    and approved as version 1."""
    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine)
        assert len(await seed_flow_versions(engine)) == len(flow_library().flows) > 1
        yield Database(SqlFlowVersionStore(engine), SqlUnitOfWorkFactory(engine))
    finally:
        await engine.dispose()


@pytest.fixture
async def version(database: Database) -> FlowVersion:
    """Version 1 of FLOW, with its files."""
    return await FlowVersionService(database.store, utc_now).version(FLOW, 1)


async def test_a_command_builds_the_versions_it_uses_only_and_the_next_process_none(
    database: Database, tmp_path: Path
) -> None:
    shelf = tmp_path / "cache"
    lots, builds = database.process(shelf)
    await lots.versions.load()  # type: ignore[union-attr]
    assert builds.count == 0  # reading the versions builds nothing
    await lots.start(cmd.StartLot("L1", FLOW, "op1", carriers=1))
    assert builds.count == 1  # the active version of the flow started, not all nine
    await lots.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", "op1"))
    assert builds.count == 1

    lots, builds = database.process(shelf)  # the next call
    await lots.versions.load()  # type: ignore[union-attr]
    report = await lots.report("L1")
    assert report.lot.flow_version == 1
    await lots.track_out(cmd.TrackOut("L1", "op1"))
    assert builds.count == 0  # read back from the cache

    lots, builds = database.process(tmp_path / "empty")  # a cold cache: the lot's only
    await lots.versions.load()  # type: ignore[union-attr]
    await lots.get("L1")
    assert builds.count == 1
    assert len(list((tmp_path / "empty").glob("version-*.pickle"))) == 1


def test_a_shelved_version_is_the_flow_its_files_make(version: FlowVersion, tmp_path: Path) -> None:
    built = Builds().build(version)
    Builds(flowcache.VersionShelf(tmp_path)).build(version)
    (written,) = tmp_path.glob("version-*.pickle")
    assert written.stat().st_mode & 0o777 == 0o600
    again = Builds(flowcache.VersionShelf(tmp_path))
    shelved = again.build(version)
    assert again.count == 0
    assert shelved is not built
    assert shelved.sequence == built.sequence
    assert shelved.steps.keys() == built.steps.keys()
    assert shelved.position([], {}) == built.position([], {})


def test_an_altered_or_foreign_shelved_version_is_built_again(
    version: FlowVersion, tmp_path: Path
) -> None:
    Builds(flowcache.VersionShelf(tmp_path)).build(version)
    (written,) = tmp_path.glob("version-*.pickle")

    content = bytearray(written.read_bytes())
    content[-20] ^= 0x01  # a flipped bit in the pickle: its digest no longer matches
    written.write_bytes(bytes(content))
    altered = Builds(flowcache.VersionShelf(tmp_path))
    altered.build(version)
    assert altered.count == 1  # and written again, sound
    fresh = Builds(flowcache.VersionShelf(tmp_path))
    fresh.build(version)
    assert fresh.count == 0

    written.chmod(0o620)  # another account could have written it: unpickling runs code
    foreign = Builds(flowcache.VersionShelf(tmp_path))
    foreign.build(version)
    assert foreign.count == 1


def test_files_that_are_not_what_their_hash_names_are_never_shelved(
    version: FlowVersion, tmp_path: Path
) -> None:
    files = dict(version.files)
    name = f"{FLOW}.yaml"
    files[name] = files[name].replace("[PASSIVE_ATTACH] ", "")
    lying = replace(version, files=files)  # the hash of the real files, other files
    builds = Builds(flowcache.VersionShelf(tmp_path))
    assert "PASSIVE_ATTACH" not in builds.build(lying).steps
    assert list(tmp_path.glob("version-*.pickle")) == []
    assert "PASSIVE_ATTACH" in builds.build(version).steps  # the real files are built
    assert builds.count == 2


def test_without_a_home_every_version_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service account without a home (Path.home() raises): no cache, no error."""

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", no_home)
    shelf = flowcache.VersionShelf()
    shelf.write("0" * 64, flow_library())
    assert shelf.read("0" * 64) is None
