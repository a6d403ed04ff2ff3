"""The operator's commands read a database that a real line controller wrote (recorded once
per session, copied for each test that reads or changes it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.recorded_line import copy_database, record_line


@pytest.fixture(scope="session")
def recorded_line(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recorded") / "line.db"
    record_line(path)
    return path


@pytest.fixture
def line_db(recorded_line: Path, tmp_path: Path) -> str:
    """A copy of the recorded line's database for this test (``sqlite:///`` URL)."""
    return copy_database(recorded_line, tmp_path / "line.db")
