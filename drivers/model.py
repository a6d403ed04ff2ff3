"""The equipment model shared by every equipment class and both transports.

Every tool on the line, whatever it does and whatever protocol it speaks, is seen through
this one model: a process state machine in the spirit of OPC 40001 Machinery / PackML, an
operating mode that maps onto the six SEMI E10 equipment states, recipes with checksums,
jobs (one carrier each) with site maps in and out, results kept until acknowledged, and
alarms.

Process states (numbers are the wire values used by both transports)::

    IDLE --load_recipe--> SETUP --(setup done)--> READY --start_job--> EXECUTING
      ^                                             ^  \\                  |   \\
      |                                             |   load_recipe       |    abort
      |                                   acknowledge (results kept       v      v
      |                                   until then) <------------- COMPLETE  ABORTED
      +---- reset (no recipe) ---- ALARM <--(fault, any busy state)           |
                                     |---- reset (recipe kept) --> READY <-- reset

Nothing here does I/O: these are plain values shared by drivers, simulators and the
controller.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TypeAlias

RecipeValue: TypeAlias = float | int | str
"""A recipe body value: a number (sent as float32/int on Modbus, Double/Int on OPC UA) or an
enumerated word such as ``epoxy_resin``."""

MeasuredValue: TypeAlias = float | int | str
"""A value a tool reports for a finished job: a number, or an enumerated word."""

ToolId: TypeAlias = str
JobId: TypeAlias = str


class EquipmentClass(StrEnum):
    """The equipment classes of the packaging line (flows.md, "Step codes")."""

    DIE_BONDER = "die_bonder"
    WIRE_BONDER = "wire_bonder"
    MOLDER = "molder"
    DICER = "dicer"
    BALL_MOUNTER = "ball_mounter"
    SPUTTER = "sputter"
    PLATER = "plater"
    COATER = "coater"
    LITHO = "litho"
    GRINDER = "grinder"
    LAMINATOR = "laminator"
    DEBONDER = "debonder"


class ProcessState(IntEnum):
    """The process state of a tool. The integer is the value on the wire."""

    IDLE = 0
    """No recipe is active; the tool waits for one."""
    SETUP = 1
    """A recipe has been loaded and the tool is setting itself up for it."""
    READY = 2
    """A recipe is active and the tool can start a job."""
    EXECUTING = 3
    """A job is running: progress counts the sites done."""
    COMPLETE = 4
    """The job is finished; its results wait until the controller acknowledges them."""
    ALARM = 5
    """A fault stopped the tool; it needs a reset. A job running at the time is lost."""
    ABORTED = 6
    """The job was aborted on request; it needs a reset."""


BUSY_STATES = frozenset({ProcessState.SETUP, ProcessState.EXECUTING})


class Mode(IntEnum):
    """The operating mode of a tool, set by people at the tool or by the controller."""

    PRODUCTION = 1
    ENGINEERING = 2
    SETUP = 3
    """Changeover: conversion, consumables, setup (SEMI E10 counts it as scheduled down)."""
    MAINTENANCE = 4


class E10State(StrEnum):
    """The six basic equipment states of SEMI E10."""

    PRODUCTIVE = "productive"
    STANDBY = "standby"
    ENGINEERING = "engineering"
    SCHEDULED_DOWN = "scheduled_down"
    UNSCHEDULED_DOWN = "unscheduled_down"
    NON_SCHEDULED = "non_scheduled"


def e10_state(state: ProcessState | None, mode: Mode | None, *, scheduled: bool = True) -> E10State:
    """Map what a tool reports onto SEMI E10.

    ``state``/``mode`` of None mean the tool cannot be reached: unscheduled down. A tool the
    plant has taken out of its production plan (``scheduled=False``) is non-scheduled
    whatever it says.
    """
    if not scheduled:
        return E10State.NON_SCHEDULED
    if state is None or mode is None or state is ProcessState.ALARM:
        return E10State.UNSCHEDULED_DOWN
    if mode in (Mode.MAINTENANCE, Mode.SETUP):
        return E10State.SCHEDULED_DOWN
    if mode is Mode.ENGINEERING:
        return E10State.ENGINEERING
    if state is ProcessState.EXECUTING:
        return E10State.PRODUCTIVE
    return E10State.STANDBY


class AlarmSeverity(IntEnum):
    """How bad an alarm is. Every alarm stops the tool (state ALARM) until it is reset."""

    WARNING = 1
    ERROR = 2
    FATAL = 3


@dataclass(frozen=True, slots=True)
class Alarm:
    code: int
    text: str
    severity: AlarmSeverity = AlarmSeverity.ERROR


def _canonical_number(value: float | int) -> str:
    # Six significant digits survive a float32 round trip, so a tool that stores the value
    # in a 32-bit register computes the same text as the controller that sent it.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"recipe values must be finite, not {value!r}")
    return format(float(value), ".6g")


@dataclass(frozen=True, slots=True)
class Recipe:
    """A recipe as the controller downloads it: a name, a version and body values."""

    name: str
    version: int
    body: Mapping[str, RecipeValue] = field(default_factory=dict)
    equipment_class: str | None = None
    """The equipment class the recipe is for (None: not said; not part of the checksum). A
    driver refuses a recipe for another class before sending anything: :meth:`wrong_class`."""

    def wrong_class(self, equipment_class: str) -> str | None:
        """Why a tool of ``equipment_class`` must not take this recipe (None: it may)."""
        if self.equipment_class is None or self.equipment_class == equipment_class:
            return None
        return (
            f"recipe {self.name} is for a {self.equipment_class}, this tool is a "
            f"{equipment_class}; expected a {equipment_class} recipe"
        )

    def canonical_text(self) -> str:
        """The text the checksum is computed over (docs/equipment.md, "Recipe checksum").

        ``name\\nversion\\n`` then one ``key=value\\n`` line per body value in key order;
        numbers written with six significant digits (``format(v, ".6g")``), words as they are.
        """
        lines = [self.name, str(self.version)]
        for key in sorted(self.body):
            value = self.body[key]
            text = value if isinstance(value, str) else _canonical_number(value)
            lines.append(f"{key}={text}")
        return "\n".join(lines) + "\n"

    def checksum(self) -> int:
        """CRC-32 (zlib) of :meth:`canonical_text` encoded as UTF-8: an unsigned 32-bit int."""
        return zlib.crc32(self.canonical_text().encode()) & 0xFFFFFFFF

    def info(self) -> RecipeInfo:
        return RecipeInfo(self.name, self.version, self.checksum())


@dataclass(frozen=True, slots=True)
class RecipeInfo:
    """What a tool reports about its active recipe."""

    name: str
    version: int
    checksum: int


SITE_GOOD = 0
"""Site map code of a good site."""
SITE_SKIPPED = 1
"""Site map code of a site that was not processed because it came in bad."""


@dataclass(frozen=True, slots=True)
class SiteMap:
    """The sites of one carrier, row-major from (0, 0): one code per site.

    Incoming to a job: 0 for a good site to process, anything else to skip. Outgoing from a
    job: 0 good, 1 skipped (came in bad), any other value a reject code of the equipment
    class (see the class catalogue).
    """

    rows: int
    cols: int
    codes: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ValueError(
                f"a site map needs at least one row and column, not {self.rows}x{self.cols}"
            )
        if len(self.codes) != self.rows * self.cols:
            raise ValueError(
                f"a {self.rows}x{self.cols} site map needs {self.rows * self.cols} codes, "
                f"got {len(self.codes)}"
            )
        if any(not 0 <= c <= 0xFF for c in self.codes):
            raise ValueError("site codes are 0..255")

    @classmethod
    def all_good(cls, rows: int, cols: int) -> SiteMap:
        return cls(rows, cols, (SITE_GOOD,) * (rows * cols))

    def code(self, row: int, col: int) -> int:
        return self.codes[row * self.cols + col]

    @property
    def good_count(self) -> int:
        return sum(1 for c in self.codes if c == SITE_GOOD)

    def is_good(self, row: int, col: int) -> bool:
        return self.code(row, col) == SITE_GOOD


@dataclass(frozen=True, slots=True)
class Job:
    """One carrier to process: the controller's request to start."""

    job_id: JobId
    lot_id: str
    step: str
    carrier_id: str
    site_map: SiteMap


@dataclass(frozen=True, slots=True)
class JobResults:
    """What a tool keeps for a finished job until the controller acknowledges it."""

    job_id: JobId
    lot_id: str
    step: str
    carrier_id: str
    measured: Mapping[str, MeasuredValue]
    site_map: SiteMap


@dataclass(frozen=True, slots=True)
class ToolStatus:
    """One coherent reading of a tool: what the controller follows."""

    state: ProcessState
    mode: Mode
    sites_done: int = 0
    sites_total: int = 0
    job_id: JobId | None = None
    alarm: Alarm | None = None
    results_waiting: bool = False
    """True from COMPLETE until the results are acknowledged."""

    @property
    def e10(self) -> E10State:
        return e10_state(self.state, self.mode)


@dataclass(frozen=True, slots=True)
class ToolIdentity:
    tool_id: ToolId
    equipment_class: EquipmentClass
    manufacturer: str
    model: str
    serial_number: str
    software_version: str


class RefusalCode(IntEnum):
    """Why a tool refused a command. The integer is the value on the wire (Modbus command
    status register; OPC UA method output ``RefusalCode``)."""

    OK = 0
    WRONG_STATE = 1
    """The command is not allowed in the tool's current process state."""
    INVALID_ARGUMENT = 2
    """A recipe value, job field or site map is malformed or unknown to the tool."""
    UNKNOWN_JOB = 3
    """The job id does not name the job the tool holds."""
    WRONG_MODE = 4
    """The command is not allowed in the tool's current mode (e.g. start in maintenance)."""
    UNKNOWN_COMMAND = 5
    """The command code is not one the tool knows."""
