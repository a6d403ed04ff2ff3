"""The operator CLI (typer + rich). Thin: every command parses, calls a service, prints."""

from __future__ import annotations


def main() -> None:
    from pkgline.cli.app import main as run

    run()
