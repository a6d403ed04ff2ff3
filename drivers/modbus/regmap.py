"""Register maps: where a tool keeps each value of the equipment model, as checked data.

A :class:`RegisterMap` holds every block a driver reads or writes as a codec, the class's
recipe and measured values, the site map areas and the handshake's command codes. It is read
from its YAML file, merged with what it extends and checked by :mod:`drivers.modbus.mapfile`
(``load_register_map``, ``packaged_map``, ``register_map_for``).

Addresses are 0-based protocol addresses (the number in the request PDU): input register
``30001 + address`` and holding register ``40001 + address`` in the 1-based numbering of
many tool manuals. Word order (``big``: high word first) applies to 32-bit values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from drivers.modbus.codec import INTEGER_KINDS, BlockCodec, WordOrder, site_registers
from drivers.model import EquipmentClass

MAX_READ = 125
"""Registers one read request may return (Modbus function codes 3 and 4)."""
MAX_WRITE = 123
"""Registers one write request may carry (function code 16)."""

Table = Literal["input", "holding"]


class Command(StrEnum):
    """The commands of the handshake; the map gives each its wire code."""

    LOAD_RECIPE = "load_recipe"
    START_JOB = "start_job"
    ABORT = "abort"
    RESET_ALARM = "reset_alarm"
    ACKNOWLEDGE_RESULTS = "acknowledge_results"
    SET_MODE = "set_mode"


BlockName = Literal[
    "status",
    "answer",
    "identity",
    "active_recipe",
    "results",
    "command",
    "mode",
    "recipe_header",
    "job",
    "acknowledge",
]

_INT = frozenset(INTEGER_KINDS)
_FLAG = _INT | {"bool"}
_STR = frozenset({"string"})
_U16 = frozenset({"uint16"})
_U32 = frozenset({"uint32"})

COMMON_BLOCKS: dict[str, tuple[Table, bool, dict[str, frozenset[str]]]] = {
    "status": (
        "input",
        True,
        {
            "state": _INT,
            "mode": _INT,
            "sites_done": _INT,
            "sites_total": _INT,
            "results_waiting": _FLAG,
            "alarm_code": _INT,
            "alarm_severity": _INT,
            "alarm_text": _STR,
            "job_id": _STR,
        },
    ),
    "answer": ("input", True, {"sequence": _U16, "code": _INT, "reason": _STR}),
    "identity": (
        "input",
        True,
        {
            "tool_id": _STR,
            "equipment_class": _STR,
            "manufacturer": _STR,
            "model": _STR,
            "serial_number": _STR,
            "software_version": _STR,
        },
    ),
    "active_recipe": (
        "input",
        True,
        {"present": _FLAG, "name": _STR, "version": _INT, "checksum": _U32},
    ),
    "results": (
        "input",
        True,
        {
            "sequence": _U16,
            "present": _FLAG,
            "job_id": _STR,
            "lot_id": _STR,
            "step": _STR,
            "carrier_id": _STR,
            "rows": _INT,
            "cols": _INT,
        },
    ),
    "command": ("holding", True, {"code": _U16, "sequence": _U16}),
    "mode": ("holding", False, {"mode": _INT}),
    "recipe_header": (
        "holding",
        False,
        {"name": _STR, "version": _INT, "present_mask": frozenset({"uint16", "uint32"})},
    ),
    "job": (
        "holding",
        False,
        {
            "job_id": _STR,
            "lot_id": _STR,
            "step": _STR,
            "carrier_id": _STR,
            "rows": _INT,
            "cols": _INT,
        },
    ),
    "acknowledge": ("holding", False, {"job_id": _STR}),
}
"""Per common block: its table, whether it is read in one request, and its fields with the
types each may have."""
SITE_TABLES: dict[str, Table] = {"incoming": "holding", "outgoing": "input"}


# -- the compiled map --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteArea:
    """Where a site map lives: ``max_sites`` codes packed two per register from ``address``."""

    table: Table
    address: int
    max_sites: int

    @property
    def count(self) -> int:
        return site_registers(self.max_sites)


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A checked register map: every block as a codec, ready for a driver or a simulator."""

    path: Path
    equipment_class: EquipmentClass
    word_order: WordOrder
    command_codes: Mapping[Command, int]
    status: BlockCodec
    answer: BlockCodec
    identity: BlockCodec
    active_recipe: BlockCodec
    results: BlockCodec
    command: BlockCodec
    mode: BlockCodec
    recipe_header: BlockCodec
    job: BlockCodec
    acknowledge: BlockCodec
    recipe: BlockCodec
    """The class's recipe values (holding registers). Bit ``i`` of
    ``recipe_header.present_mask`` says whether the ``i``-th of them, in address order, is
    part of the recipe sent."""
    measured: BlockCodec
    """The class's measured values (input registers), read with the results."""
    incoming: SiteArea
    outgoing: SiteArea
    unmapped_recipe: frozenset[str]
    unmapped_measured: frozenset[str]

    def block(self, name: str) -> BlockCodec:
        block = getattr(self, name)
        assert isinstance(block, BlockCodec)
        return block

    def command_name(self, code: int) -> Command | None:
        for command, wire in self.command_codes.items():
            if wire == code:
                return command
        return None

    def spans(self, table: Table) -> list[tuple[int, int]]:
        """The registers of ``table`` this map uses, as ``(address, count)`` spans: whole
        common blocks, runs of class values, site map areas. A simulator serves exactly
        these; anything else is an illegal address."""
        spans: list[tuple[int, int]] = []
        for name, (block_table, _, _) in COMMON_BLOCKS.items():
            if block_table == table:
                block = self.block(name)
                spans.append((block.start, block.count))
        class_block = self.recipe if table == "holding" else self.measured
        spans.extend(class_block.runs())
        for area in (self.incoming, self.outgoing):
            if area.table == table:
                spans.append((area.address, area.count))
        return sorted(spans)
