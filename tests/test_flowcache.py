"""pkgline.flowcache: the packaged flow library, built once and read back by the next
process, is the library the loader builds; a cache that does not match the files, was
altered, or could have been written by another account is never used."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

import flows
from flows import Flow, FlowLibrary, load_library
from pkgline import flowcache


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory of the test's own."""
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "pkgline"


def _content(flow: Flow) -> tuple[object, ...]:
    return tuple(getattr(flow, field.name) for field in dataclasses.fields(Flow))


def _same(a: FlowLibrary, b: FlowLibrary) -> bool:
    return (
        list(a.flows) == list(b.flows)
        and all(_content(a.flows[name]) == _content(b.flows[name]) for name in a.flows)
        and dict(a.step_codes) == dict(b.step_codes)
    )


def _built_only(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the builds that cached_library does (each still builds the real library)."""
    builds: list[int] = []

    def counted(directory: Path | None = None) -> FlowLibrary:
        builds.append(1)
        return load_library(directory)

    monkeypatch.setattr(flowcache, "load_library", counted)
    return builds


def _only_file(cache: Path) -> Path:
    files = list(cache.glob("flows-*.pickle"))
    assert len(files) == 1, files
    return files[0]


def test_the_cached_library_is_the_one_the_loader_builds(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = _built_only(monkeypatch)
    first = flowcache.cached_library()
    second = flowcache.cached_library()
    assert builds == [1]  # built once, read back the second time
    assert second is not first
    assert _same(second, load_library())
    flow = second.get("fo-organic")
    assert flow.position([], {"layers": 2}) == load_library().get("fo-organic").position(
        [], {"layers": 2}
    )
    written = _only_file(cache)
    assert written.name == f"flows-{flowcache.library_key()}.pickle"
    assert written.stat().st_mode & 0o777 == 0o600
    assert cache.stat().st_mode & 0o777 == 0o700


def test_the_key_covers_the_defs_files(tmp_path: Path) -> None:
    defs = tmp_path / "defs"
    shutil.copytree(flows.DEFS, defs)
    assert flowcache.library_key(defs) == flowcache.library_key()
    steps = defs / "steps.yaml"
    steps.write_text(steps.read_text() + "\n# a comment\n")
    assert flowcache.library_key(defs) != flowcache.library_key()


def test_an_altered_cache_file_is_not_used_and_is_written_again(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = _built_only(monkeypatch)
    flowcache.cached_library()
    path = _only_file(cache)
    content = bytearray(path.read_bytes())
    content[-10] ^= 0xFF
    path.write_bytes(bytes(content))
    assert _same(flowcache.cached_library(), load_library())
    assert builds == [1, 1]
    flowcache.cached_library()
    assert builds == [1, 1]  # rewritten whole: read back again


def test_a_cache_file_others_may_write_or_a_link_is_not_used(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = _built_only(monkeypatch)
    flowcache.cached_library()
    path = _only_file(cache)
    path.chmod(0o620)
    flowcache.cached_library()
    assert builds == [1, 1]
    assert path.stat().st_mode & 0o777 == 0o600  # replaced by a file of its own
    target = cache / "elsewhere.pickle"
    path.rename(target)
    path.symlink_to(target)
    flowcache.cached_library()
    assert builds == [1, 1, 1]
    assert not path.is_symlink()


def test_a_cache_directory_that_cannot_be_written_means_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    builds = _built_only(monkeypatch)
    assert _same(flowcache.cached_library(), load_library())
    flowcache.cached_library()
    assert builds == [1, 1]


def test_systemds_cache_directory_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "unit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert flowcache.cache_directory() == tmp_path / "unit"
    flowcache.cached_library()
    assert len(list((tmp_path / "unit").glob("flows-*.pickle"))) == 1
    assert not (tmp_path / "xdg").exists()


def test_libraries_of_other_keys_are_removed_once_stale(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.mkdir(parents=True, mode=0o700)
    recent, stale = cache / "flows-recent.pickle", cache / "flows-stale.pickle"
    for path in (recent, stale):
        path.write_bytes(b"")
    old = stale.stat().st_mtime - flowcache.STALE_S - 60
    os.utime(stale, (old, old))
    flowcache.cached_library()
    assert recent.exists() and not stale.exists()


def test_without_a_home_the_library_is_built_as_ever(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service account without a home (Path.home() raises): no cache, no error."""

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", no_home)
    assert _same(flowcache.cached_library(), load_library())
