"""What the edge node publishes of each tool: its metrics, their datatypes and aliases, and
their values from what the controller observes.

A tool is a Sparkplug device named by its tool id. Its metrics (every one in its DBIRTH, by
name and alias; in DDATA by alias only):

    Properties/Equipment Class   String    die_bonder, molder, ... (never changes)
    Process/State                String    IDLE, SETUP, READY, EXECUTING, COMPLETE, ALARM, ABORTED
    Process/Mode                 String    PRODUCTION, ENGINEERING, SETUP, MAINTENANCE
    E10/State                    String    productive, standby, engineering, scheduled_down, ...
                                           (the declared state while a person declared the
                                           tool down, as equipment tracking records it)
    E10/Declared                 String    scheduled_down or non_scheduled while declared
                                           (pkgline tool down), null otherwise
    E10/Declared By              String    the name given for who declared it, null
    E10/Declared Reason          String    why, null
    E10/Declared At              DateTime  since when (ms since the epoch), null
    Recipe/Name                  String    the active recipe, null when none is known
    Recipe/Version               Int32
    Recipe/Checksum              UInt32    the CRC-32 the tool computed
    Job/Id, Job/Lot              String    the job the tool runs and its lot
    Job/Sites Done               UInt32    progress
    Job/Sites Total              UInt32
    Alarm/Active                 Boolean
    Alarm/Code                   Int32     null without an alarm
    Alarm/Text, Alarm/Severity   String
    Measured/Job                 String    the job the measured values below come from
    Measured/<name>              Double (float), Int64 (int), String (enum): every measured
                                 value of the tool's class (drivers/classes.yaml)

Aliases are unique across the edge node: 1, 2, ... in the order of the tools in line.toml and
of the metrics above. The node's own ``bdSeq`` and ``Node Control/Rebirth`` carry none (the
specification forbids one for Rebirth; bdSeq never appears in a data message).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from drivers.catalogue import class_spec
from drivers.model import EquipmentClass, JobResults, RecipeInfo
from mes.domain.equipment import ToolSnapshot
from mes.domain.tool_down import InForce
from pkgline.sparkplug.codec import DataType, MetricValue

BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"

EQUIPMENT_CLASS = "Properties/Equipment Class"
PROCESS_STATE = "Process/State"
MODE = "Process/Mode"
E10_STATE = "E10/State"
E10_DECLARED = "E10/Declared"
E10_DECLARED_BY = "E10/Declared By"
E10_DECLARED_REASON = "E10/Declared Reason"
E10_DECLARED_AT = "E10/Declared At"
RECIPE_NAME = "Recipe/Name"
RECIPE_VERSION = "Recipe/Version"
RECIPE_CHECKSUM = "Recipe/Checksum"
JOB_ID = "Job/Id"
JOB_LOT = "Job/Lot"
SITES_DONE = "Job/Sites Done"
SITES_TOTAL = "Job/Sites Total"
ALARM_ACTIVE = "Alarm/Active"
ALARM_CODE = "Alarm/Code"
ALARM_TEXT = "Alarm/Text"
ALARM_SEVERITY = "Alarm/Severity"
MEASURED_JOB = "Measured/Job"
MEASURED = "Measured/"

_COMMON: tuple[tuple[str, DataType], ...] = (
    (EQUIPMENT_CLASS, DataType.String),
    (PROCESS_STATE, DataType.String),
    (MODE, DataType.String),
    (E10_STATE, DataType.String),
    (E10_DECLARED, DataType.String),
    (E10_DECLARED_BY, DataType.String),
    (E10_DECLARED_REASON, DataType.String),
    (E10_DECLARED_AT, DataType.DateTime),
    (RECIPE_NAME, DataType.String),
    (RECIPE_VERSION, DataType.Int32),
    (RECIPE_CHECKSUM, DataType.UInt32),
    (JOB_ID, DataType.String),
    (JOB_LOT, DataType.String),
    (SITES_DONE, DataType.UInt32),
    (SITES_TOTAL, DataType.UInt32),
    (ALARM_ACTIVE, DataType.Boolean),
    (ALARM_CODE, DataType.Int32),
    (ALARM_TEXT, DataType.String),
    (ALARM_SEVERITY, DataType.String),
    (MEASURED_JOB, DataType.String),
)
_MEASURED_TYPES = {"float": DataType.Double, "int": DataType.Int64, "enum": DataType.String}


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    datatype: DataType
    alias: int


@dataclass(frozen=True, slots=True)
class Device:
    """One tool as a Sparkplug device: its metrics in birth order."""

    tool_id: str
    equipment_class: EquipmentClass
    metrics: tuple[MetricDef, ...]

    def initial_values(self) -> dict[str, MetricValue]:
        """What is known before the tool is first seen: its class, nothing else."""
        values: dict[str, MetricValue] = {m.name: None for m in self.metrics}
        values[EQUIPMENT_CLASS] = self.equipment_class.value
        return values


def devices_of(tools: Sequence[tuple[str, EquipmentClass]]) -> dict[str, Device]:
    """The devices of an edge node, aliases numbered across all of them from 1."""
    devices: dict[str, Device] = {}
    alias = 1
    for tool_id, equipment_class in tools:
        spec = class_spec(equipment_class)
        named = [
            *_COMMON,
            *((MEASURED + n, _MEASURED_TYPES[v.type]) for n, v in spec.measured.items()),
        ]
        metrics = tuple(MetricDef(name, kind, alias + n) for n, (name, kind) in enumerate(named))
        alias += len(metrics)
        devices[tool_id] = Device(tool_id, equipment_class, metrics)
    return devices


_NO_RECIPE: Mapping[str, MetricValue] = {
    RECIPE_NAME: None,
    RECIPE_VERSION: None,
    RECIPE_CHECKSUM: None,
}


def from_snapshot(snapshot: ToolSnapshot) -> dict[str, MetricValue]:
    """The metrics a state observation sets. An IDLE tool has no active recipe (the process
    state machine, drivers/model.py), so its recipe metrics become null."""
    alarm = snapshot.alarm
    values: dict[str, MetricValue] = {
        PROCESS_STATE: snapshot.process_state,
        MODE: snapshot.mode,
        E10_STATE: snapshot.e10,
        JOB_ID: snapshot.job_id,
        JOB_LOT: snapshot.lot_id,
        SITES_DONE: snapshot.sites_done,
        SITES_TOTAL: snapshot.sites_total,
        ALARM_ACTIVE: alarm is not None,
        ALARM_CODE: int(alarm["code"]) if alarm is not None else None,
        ALARM_TEXT: str(alarm["text"]) if alarm is not None else None,
        ALARM_SEVERITY: str(alarm["severity"]) if alarm is not None else None,
    }
    if snapshot.connected and snapshot.process_state == "IDLE":
        values.update(_NO_RECIPE)
    return values


def from_declaration(declared: InForce | None) -> dict[str, MetricValue]:
    """The metrics of a person's declaration in force (all null without one). ``E10/State``
    is the node's to set: the declared state, or the tool's own when there is none."""
    if declared is None:
        return dict.fromkeys((E10_DECLARED, E10_DECLARED_BY, E10_DECLARED_REASON, E10_DECLARED_AT))
    at = declared.at
    return {
        E10_DECLARED: declared.state,
        E10_DECLARED_BY: declared.user,
        E10_DECLARED_REASON: declared.reason,
        E10_DECLARED_AT: None if at is None else int(at.timestamp() * 1000),
    }


def from_recipe(recipe: RecipeInfo) -> dict[str, MetricValue]:
    return {
        RECIPE_NAME: recipe.name,
        RECIPE_VERSION: recipe.version,
        RECIPE_CHECKSUM: recipe.checksum,
    }


def from_results(device: Device, results: JobResults) -> dict[str, MetricValue]:
    """The measured values of a finished job, as the class catalogue types them; a value the
    class does not measure, or one of the wrong type, is left out."""
    spec = class_spec(device.equipment_class)
    values: dict[str, MetricValue] = {MEASURED_JOB: results.job_id}
    for name, value_spec in spec.measured.items():
        value = results.measured.get(name)
        if value is None:
            continue
        try:
            values[MEASURED + name] = value_spec.check(value)
        except ValueError:
            continue
    return values


def same(a: MetricValue, b: MetricValue) -> bool:
    """Equal values of the same type (True is not 1 here, nor 1 1.0)."""
    return type(a) is type(b) and a == b
