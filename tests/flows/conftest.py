"""Fixtures of the flows tests: the packaged library (loaded once) and lot contexts."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from flows import FlowLibrary, LotContext, Value, load_library

# The geometry the defaults of stiffener-bga's opening map are for: 4 rows x 8 columns, the
# lot tracker's default carrier.
DEFAULT_ROWS = 4
DEFAULT_COLS = 8


@pytest.fixture(scope="session")
def library() -> FlowLibrary:
    return load_library()


def ctx(
    params: Mapping[str, Value] | None = None,
    recorded: Mapping[str, Value] | None = None,
    rows: int = DEFAULT_ROWS,
    cols: int = DEFAULT_COLS,
) -> LotContext:
    """A lot context with the given lot parameters and recorded values."""
    return LotContext(dict(params or {}), rows, cols, dict(recorded or {}))
