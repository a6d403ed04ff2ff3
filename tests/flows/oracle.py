"""An independent oracle for the step orders: the notation of flows.md, copied verbatim, turned
into Python regular expressions over one letter per step code (and into the finite set of
complete paths, for exhaustive checks on small lots).

It shares no code with flows/: if the defs files, the parser or the automaton drift from the
specification, the tests that compare against this oracle fail.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Union

# flows.md, "Step codes", in the order of its table.
STEP_CODES = [
    "SUBSTRATE_LOAD",
    "SUBSTRATE_PREP",
    "CARRIER_LOAD",
    "DIE_ATTACH",
    "FLIP_CHIP_BOND",
    "WIRE_BOND",
    "STIFFENER_ATTACH",
    "PASSIVE_ATTACH",
    "TIM_DISPENSE",
    "HEAT_SINK_ATTACH",
    "MOLD",
    "FILL",
    "GRIND",
    "SUBSTRATE_BOND",
    "THIN",
    "DEBOND",
    "DIELECTRIC_COAT",
    "VIA_PATTERN",
    "VIA_FILL",
    "SPUTTER",
    "ELECTROPLATE",
    "ELECTROLESS_PLATE",
    "PASSIVATION",
    "BALL_MOUNT",
    "DICE",
]

LETTER = {code: chr(ord("A") + i) for i, code in enumerate(STEP_CODES)}

# flows.md, verbatim.
SPEC_FRAGMENTS = {
    "METAL": "(SPUTTER [ELECTROPLATE] | ELECTROPLATE | ELECTROLESS_PLATE)",
    "LAYER": "DIELECTRIC_COAT VIA_PATTERN [VIA_FILL] METAL",
    "FINISH": "[PASSIVATION] BALL_MOUNT DICE",
}

SPEC_FLOWS = {
    "stiffener-bga": "SUBSTRATE_LOAD DIE_ATTACH WIRE_BOND STIFFENER_ATTACH MOLD (BALL_MOUNT DICE | DICE BALL_MOUNT)",
    "fc-heatsink-muf": "SUBSTRATE_LOAD FLIP_CHIP_BOND [PASSIVE_ATTACH] [TIM_DISPENSE] HEAT_SINK_ATTACH MOLD [BALL_MOUNT] [DICE]",
    "fc-stack-muf": "SUBSTRATE_LOAD DIE_ATTACH FLIP_CHIP_BOND [WIRE_BOND] [PASSIVE_ATTACH] [TIM_DISPENSE] HEAT_SINK_ATTACH MOLD [BALL_MOUNT] [DICE]",
    "fc-stack3-muf": "SUBSTRATE_LOAD FLIP_CHIP_BOND DIE_ATTACH FLIP_CHIP_BOND [WIRE_BOND] [PASSIVE_ATTACH] [TIM_DISPENSE] HEAT_SINK_ATTACH MOLD [BALL_MOUNT] [DICE]",
    "fo-organic": "SUBSTRATE_PREP DIE_ATTACH [FILL] { LAYER } x N FINISH",
    "fo-organic-recon": "CARRIER_LOAD DIE_ATTACH FILL GRIND SUBSTRATE_BOND [FILL] DEBOND { LAYER } x N FINISH",
    "fo-organic-insulating": "CARRIER_LOAD DIE_ATTACH FILL GRIND SUBSTRATE_BOND [THIN] VIA_PATTERN [VIA_FILL] METAL { LAYER } x (N-1) FINISH",
    "fo-metal": "SUBSTRATE_PREP DIE_ATTACH [FILL] { LAYER } x N FINISH",
    "fo-metal-recon": "CARRIER_LOAD DIE_ATTACH FILL GRIND SUBSTRATE_BOND [FILL] DEBOND { LAYER } x N FINISH",
}

LAYERED = frozenset(name for name, text in SPEC_FLOWS.items() if re.search(r"\bN\b", text))


@dataclass(frozen=True)
class _Step:
    code: str


@dataclass(frozen=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Alt:
    options: tuple[_Node, ...]


@dataclass(frozen=True)
class _Opt:
    body: _Node


@dataclass(frozen=True)
class _Rep:
    body: _Node
    minus: int  # repeated N - minus times


_Node = Union[_Step, _Seq, _Alt, _Opt, _Rep]  # noqa: UP007 (a forward reference)


def _parse(text: str) -> _Node:
    tokens: list[str] = re.findall(r"[A-Z_]{2,}|N|x|\d+|[\[\](){}|\-]", text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = tokens[pos]
        assert expected is None or token == expected, (token, expected, text)
        pos += 1
        return token

    def alternatives() -> _Node:
        options = [sequence()]
        while peek() == "|":
            take()
            options.append(sequence())
        return options[0] if len(options) == 1 else _Alt(tuple(options))

    def sequence() -> _Node:
        items = []
        while peek() not in (None, "|", "]", ")", "}"):
            items.append(item())
        return _Seq(tuple(items))

    def item() -> _Node:
        token = take()
        if token == "[":
            body = alternatives()
            take("]")
            return _Opt(body)
        if token == "(":
            body = alternatives()
            take(")")
            return body
        if token == "{":
            body = alternatives()
            take("}")
            take("x")
            if peek() == "(":
                take("(")
                take("N")
                take("-")
                minus = int(take())
                take(")")
                return _Rep(body, minus)
            take("N")
            return _Rep(body, 0)
        if token in SPEC_FRAGMENTS:
            return _parse(SPEC_FRAGMENTS[token])
        assert token in LETTER, token
        return _Step(token)

    node = alternatives()
    assert pos == len(tokens), text
    return node


def _full(node: _Node, n: int) -> str:
    if isinstance(node, _Step):
        return LETTER[node.code]
    if isinstance(node, _Seq):
        return "".join(_full(i, n) for i in node.items)
    if isinstance(node, _Alt):
        return "(?:" + "|".join(_full(o, n) for o in node.options) + ")"
    if isinstance(node, _Opt):
        return "(?:" + _full(node.body, n) + ")?"
    return "(?:" + _full(node.body, n) + "){" + str(n - node.minus) + "}"


def _prefix(node: _Node, n: int) -> str:
    """A regex of every prefix (the empty one included) of the words of ``node``."""
    if isinstance(node, _Step):
        return "(?:" + LETTER[node.code] + ")?"
    if isinstance(node, _Seq):
        items = node.items
        parts = [
            "".join(_full(i, n) for i in items[:k]) + _prefix(items[k], n)
            for k in range(len(items))
        ]
        return "(?:" + "|".join(parts) + ")" if parts else ""
    if isinstance(node, _Alt):
        return "(?:" + "|".join(_prefix(o, n) for o in node.options) + ")"
    if isinstance(node, _Opt):
        return _prefix(node.body, n)
    count = n - node.minus
    if count == 0:
        return ""
    body = _full(node.body, n)
    return (
        "(?:"
        + "|".join("(?:" + body + "){" + str(k) + "}" + _prefix(node.body, n) for k in range(count))
        + ")"
    )


def _words(node: _Node, n: int) -> set[tuple[str, ...]]:
    if isinstance(node, _Step):
        return {(node.code,)}
    if isinstance(node, _Seq):
        result: set[tuple[str, ...]] = {()}
        for item in node.items:
            result = {a + b for a, b in itertools.product(result, _words(item, n))}
        return result
    if isinstance(node, _Alt):
        return set().union(*(_words(o, n) for o in node.options))
    if isinstance(node, _Opt):
        return {(), *_words(node.body, n)}
    result = {()}
    for _ in range(n - node.minus):
        result = {a + b for a, b in itertools.product(result, _words(node.body, n))}
    return result


@cache
def _compiled(flow: str, n: int) -> tuple[re.Pattern[str], re.Pattern[str]]:
    node = _parse(SPEC_FLOWS[flow])
    return re.compile(_full(node, n)), re.compile(_prefix(node, n))


def encode(path: Sequence[str]) -> str:
    return "".join(LETTER.get(code, "?") for code in path)


def complete(flow: str, n: int, path: Sequence[str]) -> bool:
    """``path`` is a whole claimed order of ``flow`` with N = n."""
    return _compiled(flow, n)[0].fullmatch(encode(path)) is not None


def viable(flow: str, n: int, path: Sequence[str]) -> bool:
    """``path`` is the beginning of some claimed order."""
    return _compiled(flow, n)[1].fullmatch(encode(path)) is not None


def next_steps(flow: str, n: int, path: Sequence[str]) -> frozenset[str]:
    return frozenset(code for code in STEP_CODES if viable(flow, n, [*path, code]))


@cache
def words(flow: str, n: int) -> frozenset[tuple[str, ...]]:
    """Every complete path of ``flow`` with N = n (small n only: the set grows fast)."""
    return frozenset(_words(_parse(SPEC_FLOWS[flow]), n))
