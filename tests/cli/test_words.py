"""How the CLI counts what it printed: "1 event", "1 entry", "2 material lots"."""

from __future__ import annotations

import pytest

from pkgline.cli.common import noun, the_last


@pytest.mark.parametrize(
    ("plural", "one"),
    [("events", "event"), ("entries", "entry"), ("material lots", "material lot"), ("jobs", "job")],
)
def test_one_is_said_in_the_singular_and_the_rest_in_the_plural(plural: str, one: str) -> None:
    assert noun(plural, 1) == one
    assert noun(plural, 0) == noun(plural, 2) == plural
    assert the_last(["a"], None, plural, "--all")[1] == f"1 {one}"
    assert the_last(["a", "b", "c"], 2, plural, "--all")[1] == f"the last 2 of 3 {plural}; --all"
