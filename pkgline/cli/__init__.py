"""The operator CLI (typer + rich). Thin: every command parses, calls a service, prints."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def main() -> None:
    with loading():
        from pkgline.cli.app import main as run
    run()


@contextmanager
def loading() -> Iterator[None]:
    """Imports (or a one-shot read that is mostly imports) without the cyclic garbage
    collector, and what they made out of its reach afterwards (``gc.freeze``, as ``pkgline
    serve`` does with what it made while starting). Modules, classes and functions live as
    long as the process: the collector's passes over them while a command starts (dozens),
    and its full pass when the process exits, free nothing. Reference counting frees the
    rest as ever, and the collector is on again after. ``lot show`` in direct mode: about
    45 ms CPU less of 215 (bench/cli.py, a loaded machine)."""
    if not gc.isenabled():  # already off (a caller's, or a test's): theirs to restore
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
