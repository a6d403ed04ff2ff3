"""The top-level ``pkgline`` group, whose commands are imported on first use.

Every ``pkgline ...`` call is a new process, and most of its start-up used to be imports of
command modules it never runs (the controller, the drivers, the demo ...). Here the group
knows each command's name and the one line ``pkgline --help`` lists for it, and imports the
command's module only when the command is called, asked for its own help or completed:
``pkgline version`` and ``pkgline --help`` import no command module at all, and ``pkgline
lot show`` only ``pkgline.cli.lot`` and what it needs.

A command is registered as before, by a function that adds it to a Typer app (``add_typer``
or ``command``); it runs on a scratch app with the root's settings, from which the group
takes the click command that Typer builds, the same one it would have built eagerly.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

Register = Callable[[typer.Typer], None]

_MARKUP = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")
"""What rich would read as a markup tag ("[api]", "[/b]"), as rich.markup.escape finds it (not
imported here: a command that prints JSON imports no rich, tests/test_imports.py)."""


def plain_help(command: Any) -> Any:
    """``command`` (a click command or group, and its subcommands) with its help as written:
    each paragraph one line (Typer keeps a docstring's line breaks in a group's list of
    commands, which then reads as ragged lines) and brackets kept ("[signatures]" names a
    table of line.toml; Typer's rich mode read it as markup and printed nothing)."""
    command.help = _plain(command.help)
    command.short_help = _plain(command.short_help)
    for param in command.params:
        if getattr(param, "help", None):
            param.help = _plain(param.help)
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)
    return command


def _plain(text: str | None) -> str | None:
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    joined = "\n\n".join(p if p.startswith("\b") else " ".join(p.split("\n")) for p in paragraphs)
    return _MARKUP.sub(lambda m: f"{m[1]}{m[1]}\\{m[2]}", joined)


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """One command of the group: its name, the first paragraph of its help (what ``pkgline
    --help`` lists; tests/test_imports.py checks it against the command's own), and the
    function that registers it on a Typer app (importing its module there)."""

    name: str
    summary: str
    register: Register


class LazyCommands(MutableMapping[str, Any]):
    """The group's commands by name, in registration order; a command's module is imported
    when the command is first looked up. Names alone (listing, suggestions for a mistyped
    command) import nothing."""

    def __init__(self, entries: Sequence[LazyCommand], load: Callable[[LazyCommand], Any]) -> None:
        self._entries = {entry.name: entry for entry in entries}
        self._load = load
        self._loaded: dict[str, Any] = {}
        self._order = list(self._entries)

    def loaded(self, name: str) -> bool:
        return name in self._loaded

    def entry(self, name: str) -> LazyCommand | None:
        return self._entries.get(name)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            entry = self._entries.get(name)
            if entry is None:
                raise KeyError(name)
            self._loaded[name] = self._load(entry)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._entries and name not in self._loaded:
            self._order.append(name)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._entries and name not in self._loaded:
            raise KeyError(name)
        self._entries.pop(name, None)
        self._loaded.pop(name, None)
        self._order.remove(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._loaded


class LazyGroup(TyperGroup):
    """A Typer group over :class:`LazyCommands`. Subclass it with ``commands_table`` set and
    pass the subclass as ``cls`` of the root ``typer.Typer``."""

    commands_table: ClassVar[Sequence[LazyCommand]] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        eager = dict(self.commands)
        self.commands = LazyCommands(self.commands_table, self._build)
        for name, command in eager.items():
            self.commands[name] = command
        self._listing = False

    def _build(self, entry: LazyCommand) -> Any:
        scratch = typer.Typer(
            rich_markup_mode=self.rich_markup_mode,
            suggest_commands=self.suggest_commands,
            add_completion=False,
        )
        entry.register(scratch)
        for info in scratch.registered_groups:
            if info.name == entry.name and info.typer_instance is not None:
                return _lazy_subgroup(info, scratch)
        return plain_help(typer.main.get_group(scratch).commands[entry.name])

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        commands = self.commands
        if self._listing and isinstance(commands, LazyCommands) and not commands.loaded(cmd_name):
            # the list of commands in ``pkgline --help``: a name and one line each
            entry = commands.entry(cmd_name)
            if entry is not None:
                return TyperCommand(name=entry.name, help=entry.summary)
        return commands.get(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def _lazy_subgroup(info: Any, root: typer.Typer) -> Any:
    """The click group of a sub-app (``pkgline lot``) whose commands Typer builds on first
    look-up: building all of a group's commands (their parameters read off the functions'
    signatures) cost ``pkgline lot show`` about 3 ms per command of the group, of which it
    runs one. Listing the group (``pkgline lot --help``) builds them all, as before."""
    instance = copy.copy(info.typer_instance)
    infos = instance.registered_commands
    instance.registered_commands = []  # the copy's: the app itself keeps its commands
    bare = copy.copy(info)
    bare.typer_instance = instance
    settings: dict[str, Any] = {
        "pretty_exceptions_short": root.pretty_exceptions_short,
        "rich_markup_mode": root.rich_markup_mode,
    }
    group = plain_help(
        typer.main.get_group_from_info(bare, suggest_commands=root.suggest_commands, **settings)
    )
    by_name = {
        c.name or typer.main.get_command_name(c.callback.__name__): c
        for c in infos
        if c.callback is not None
    }

    def build(entry: LazyCommand) -> Any:
        return plain_help(typer.main.get_command_from_info(by_name[entry.name], **settings))

    nested = dict(group.commands)  # a sub-app's own groups, built as Typer builds them
    group.commands = LazyCommands([LazyCommand(name, "", _no_register) for name in by_name], build)
    for name, command in nested.items():
        group.commands[name] = command
    return group


def _no_register(app: typer.Typer) -> None:
    raise AssertionError("a sub-app's command is built from its CommandInfo")
