"""What a ``pkgline`` process makes while it loads (pkgline.cli.loading: the CLI's modules, and
a direct-mode ``lot show``'s read) is made without the cyclic garbage collector and frozen out
of its reach afterwards; the collector is on again after, and garbage made later is collected
as ever."""

from __future__ import annotations

import gc
import weakref

import pytest

from pkgline.cli import loading


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_loading_freezes_what_it_made_and_turns_the_collector_on_again() -> None:
    frozen = gc.get_freeze_count()
    try:
        with loading():
            assert not gc.isenabled()
            made = _Node()
        assert gc.isenabled()
        assert gc.get_freeze_count() > frozen
        assert made.me is made
        later = _Node()  # a reference cycle: only the collector frees it
        freed = weakref.ref(later)
        del later
        gc.collect()
        assert freed() is None, "an object made after loading is still collected"
    finally:
        gc.unfreeze()


def test_loading_turns_the_collector_on_again_when_what_it_runs_fails() -> None:
    try:
        with pytest.raises(LookupError), loading():
            raise LookupError("no such lot")
        assert gc.isenabled()
    finally:
        gc.unfreeze()


def test_loading_leaves_a_collector_that_was_off_as_it_was() -> None:
    frozen = gc.get_freeze_count()
    gc.disable()
    try:
        with loading():
            pass
        assert not gc.isenabled()
        assert gc.get_freeze_count() == frozen
    finally:
        gc.enable()
