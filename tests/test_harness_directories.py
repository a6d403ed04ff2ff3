"""The harness (tests/conftest.py) gives everything the tests start directories of the
session's, the user's ~/.cache and ~/.local/state untouched: also what a module's fixture
starts before any test's own directories are set (a station's server and its seed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def module_environment() -> dict[str, str]:
    """The environment as a module's fixture sees it (set up before the test's own)."""
    return dict(os.environ)


def test_a_modules_fixtures_have_the_sessions_cache_and_state_directories(
    module_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    session = tmp_path_factory.getbasetemp()
    for name in ("XDG_CACHE_HOME", "XDG_STATE_HOME"):
        assert Path(module_environment.get(name, Path.home())).is_relative_to(session), name
    assert "CACHE_DIRECTORY" not in module_environment
    assert "STATE_DIRECTORY" not in module_environment
