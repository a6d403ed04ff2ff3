"""What the CLI prints reaches a terminal as text, never as the terminal's commands.

The lot tracker refuses control characters in what people type (mes.domain.text) and the
line controller cleans what tools send, but a table shows what the database holds, which a
row written before those checks, or by hand, may not match. An escape in it (``ESC [2J``
clears the screen, ``ESC ]52`` writes the clipboard on some terminals), a carriage return
or a right-to-left override would act on the reader's terminal. Every console of the CLI
pushes :class:`PrintableHook`: each control character that rich does not emit itself is
printed as its Unicode picture (``␛`` for escape, ``␍`` for carriage return), other
unprintable ones as ``�``. Newlines and tabs the CLI lays out are kept.

Imported only where a console is made (rich is not imported for ``--json``).
"""

from __future__ import annotations

from collections.abc import Iterator

from rich.console import (
    Console,
    ConsoleOptions,
    ConsoleRenderable,
    RenderHook,
)
from rich.measure import Measurement
from rich.segment import Segment

_KEPT = {0x09, 0x0A}

PICTURES: dict[int, str] = {
    code: chr(0x2400 + code) for code in range(0x20) if code not in _KEPT
} | {0x7F: "\u2421"}
"""C0 controls and DEL as their symbols (the Control Pictures block, U+2400)."""
PICTURES |= dict.fromkeys(range(0x80, 0xA0), "\ufffd")  # C1, CSI (0x9B) among them
# separators and bidirectional controls, as mes.domain.text refuses them (not imported:
# a command through the server does not import the lot tracker)
PICTURES |= dict.fromkeys(map(ord, "\u061c\u200e\u200f\u2028\u2029"), "\ufffd")
PICTURES |= dict.fromkeys((*range(0x202A, 0x202F), *range(0x2066, 0x206A)), "\ufffd")


class _Printable:
    """``renderable`` rendered as rich would, each text segment's control characters as
    :data:`PICTURES`; rich's own control segments (cursor moves) are left alone."""

    def __init__(self, renderable: ConsoleRenderable) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        for segment in console.render(self.renderable, options):
            if segment.control or segment.text.isprintable():
                yield segment
            else:
                yield Segment(segment.text.translate(PICTURES), segment.style)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.renderable)


class PrintableHook(RenderHook):
    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        return [_Printable(r) for r in renderables]


def printable_console(console: Console) -> Console:
    """``console``, printing control characters as :data:`PICTURES`."""
    console.push_render_hook(PrintableHook())
    return console
