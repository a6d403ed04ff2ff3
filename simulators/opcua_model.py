"""The pkgline OPC UA information model, as the simulator serves it: the variables and methods
of one tool, the alarm event type, how a virtual tool's state maps onto the variables, how method
arguments are checked, and a lean copy of asyncua's standard address space.

The model (namespace ``urn:pkgline:equipment``; docs/equipment.md, "OPC UA")::

    Objects/Tools/<tool_id>                  object, EventNotifier: emits AlarmEventType events
        Identification/  EquipmentClass, Manufacturer, Model, SerialNumber, SoftwareVersion
        State (Int32 ProcessState), StateName (String), Mode (Int32 Mode)
        Progress/        SitesDone, SitesTotal (UInt32)
        Recipe/          ActiveName (String), ActiveVersion (Int32), ActiveChecksum (UInt32)
        Job/             JobId, LotId, Step, CarrierId (String)
        Results/         Available (Boolean), JobId, LotId, Step, CarrierId (String),
                         SiteMapRows, SiteMapCols (UInt16), SiteMapCodes (ByteString),
                         Measured/<value> (Double | Int32 | String, per the class catalogue)
        Alarm/           ActiveCode (Int32, 0 = none), Text (String), Severity (Int32, 0 = none)
        LoadRecipe, StartJob, Abort, ResetAlarm, AcknowledgeResults, SetMode   (methods)

Every method answers ``RefusalCode`` (Int32) and ``Reason`` (String) with a Good status; a call
whose arguments do not fit the declared types or count fails with BadInvalidArgument /
BadArgumentsMissing / BadTooManyArguments instead. Node ids are strings,
``ns=<pkgline>;s=<tool_id>/<path>``, stable across restarts.

The standard address space (~6,000 nodes, ~2 s to build in asyncua) is built once per process
and each server copies a node only when it first touches it (:class:`LeanInternalServer`).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import json
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any, cast

from asyncua import ua
from asyncua.server.address_space import (
    AddressSpace,
    AttributeValue,
    NodeData,
    NodeManagementService,
)
from asyncua.server.internal_server import InternalServer
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from drivers.model import Job, Mode, Recipe, RecipeValue, RefusalCode, SiteMap
from simulators.engine import Refused, VirtualTool

NAMESPACE_URI = "urn:pkgline:equipment"
APPLICATION_URI = "urn:pkgline:simulator"

V = ua.VariantType


def node_id(identifier: int | str, namespace: int = 0) -> ua.NodeId:
    # asyncua annotates identifiers and indexes with its own int/str subclasses.
    return ua.NodeId(cast(ua.String, identifier), ua.Int16(namespace))


def status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


SEVERITY_1000 = {1: 300, 2: 600, 3: 900}
"""BaseEventType.Severity (1..1000) for our alarm severities (warning, error, fatal)."""

# -- the standard address space, built once per process ---------------------------------------

_standard: AddressSpace | None = None
_IMMUTABLE = (
    str,
    bytes,
    int,
    float,
    bool,
    type(None),
    ua.LocalizedText,
    ua.QualifiedName,
    ua.NodeId,
    datetime.datetime,
)


def _copy_value(value: ua.DataValue | None) -> ua.DataValue | None:
    # Values are replaced, not changed, on writes, so immutable ones are shared; asyncua does
    # change lists (NamespaceArray) and structures (ServerStatus) in place, so those are copied.
    if value is None or value.Value is None or isinstance(value.Value.Value, _IMMUTABLE):
        return value
    if isinstance(value.Value.Value, list):
        return dataclasses.replace(
            value, Value=dataclasses.replace(value.Value, Value=list(value.Value.Value))
        )
    return copy.deepcopy(value)


def _copy_node(source: NodeData) -> NodeData:
    node = NodeData(source.nodeid)
    node.attributes = {}
    for attr, value in source.attributes.items():
        copied = AttributeValue(ua.DataValue())
        copied.value = _copy_value(value.value)  # may be None, as in asyncua's own nodes
        node.attributes[attr] = copied
    # ReferenceDescriptions are only changed when a node is renamed; we never rename standard
    # nodes, so they are shared (the lists are not: servers add references to standard nodes).
    node.references = list(source.references)
    node.call = source.call
    return node


class _StandardNodes(MutableMapping[ua.NodeId, NodeData]):
    """A server's nodes: its own, plus the standard address space copied node by node the
    first time each is touched (most never are)."""

    def __init__(self, template: AddressSpace):
        self._template = template
        self._own: dict[ua.NodeId, NodeData] = {}
        self._deleted: set[ua.NodeId] = set()

    def __getitem__(self, key: ua.NodeId) -> NodeData:
        try:
            return self._own[key]
        except KeyError:
            if key in self._deleted or key not in self._template:
                raise
        node = self._own[key] = _copy_node(self._template[key])
        return node

    def __setitem__(self, key: ua.NodeId, value: NodeData) -> None:
        self._own[key] = value
        self._deleted.discard(key)

    def __delitem__(self, key: ua.NodeId) -> None:
        if key not in self:
            raise KeyError(key)
        self._own.pop(key, None)
        self._deleted.add(key)

    def __contains__(self, key: object) -> bool:
        return key in self._own or (
            isinstance(key, ua.NodeId) and key not in self._deleted and key in self._template
        )

    def __iter__(self) -> Iterator[ua.NodeId]:
        yield from self._own
        for key in self._template.keys():  # noqa: SIM118 (AddressSpace has no __iter__)
            if key not in self._own and key not in self._deleted:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)


class LeanInternalServer(InternalServer):
    """An InternalServer whose standard address space is copied on access from one built
    once per process, instead of being built again (asyncua does the same from a shelve file
    with ``load_aspace_shelf``; this keeps it in memory)."""

    async def load_standard_address_space(self, shelf_file: Any = None) -> None:
        global _standard
        if _standard is None:
            from asyncua.server.standard_address_space import standard_address_space

            space = AddressSpace()
            await asyncio.to_thread(
                standard_address_space.fill_address_space, NodeManagementService(space)
            )
            _standard = space
        self.aspace._nodes = _StandardNodes(_standard)  # type: ignore[assignment]


# -- the model of one tool ---------------------------------------------------------------------

FOLDERS = ("Identification", "Progress", "Recipe", "Job", "Results", "Results/Measured", "Alarm")

VARIABLES: tuple[tuple[str, ua.VariantType, str], ...] = (
    ("Identification/EquipmentClass", V.String, "equipment class (drivers/classes.yaml)"),
    ("Identification/Manufacturer", V.String, "manufacturer"),
    ("Identification/Model", V.String, "model"),
    ("Identification/SerialNumber", V.String, "serial number"),
    ("Identification/SoftwareVersion", V.String, "software version"),
    ("State", V.Int32, "process state, wire value (0 IDLE .. 6 ABORTED)"),
    ("StateName", V.String, "process state name, for people"),
    ("Mode", V.Int32, "mode, wire value (1 PRODUCTION .. 4 MAINTENANCE)"),
    ("Progress/SitesDone", V.UInt32, "sites processed in the running job"),
    ("Progress/SitesTotal", V.UInt32, "good sites the running job will process"),
    ("Recipe/ActiveName", V.String, "active recipe name ('' when none)"),
    ("Recipe/ActiveVersion", V.Int32, "active recipe version"),
    ("Recipe/ActiveChecksum", V.UInt32, "CRC-32 of the active recipe, computed by the tool"),
    ("Job/JobId", V.String, "job id of the running or finished job ('' when none)"),
    ("Job/LotId", V.String, "lot id of that job"),
    ("Job/Step", V.String, "step code of that job"),
    ("Job/CarrierId", V.String, "carrier id of that job"),
    ("Results/Available", V.Boolean, "results wait for acknowledgement"),
    ("Results/JobId", V.String, "job the results belong to"),
    ("Results/LotId", V.String, "lot id of that job"),
    ("Results/Step", V.String, "step code of that job"),
    ("Results/CarrierId", V.String, "carrier id of that job"),
    ("Results/SiteMapRows", V.UInt16, "rows of the outgoing site map"),
    ("Results/SiteMapCols", V.UInt16, "columns of the outgoing site map"),
    ("Results/SiteMapCodes", V.ByteString, "outgoing site codes, one byte per site, row-major"),
    ("Alarm/ActiveCode", V.Int32, "active alarm code, 0 when none"),
    ("Alarm/Text", V.String, "active alarm text"),
    ("Alarm/Severity", V.Int32, "1 warning, 2 error, 3 fatal; 0 when no alarm"),
)

MEASURED_TYPES = {"float": V.Double, "int": V.Int32, "enum": V.String}
DEFAULTS: dict[ua.VariantType, object] = {
    V.String: "",
    V.Int32: 0,
    V.UInt32: 0,
    V.UInt16: 0,
    V.Boolean: False,
    V.ByteString: b"",
    V.Double: 0.0,
}

Argument = tuple[str, ua.VariantType, str]
REFUSAL_OUTPUTS: tuple[Argument, ...] = (
    ("RefusalCode", V.Int32, "0 accepted, else why the tool refused (docs/equipment.md)"),
    ("Reason", V.String, "the refusal in words ('' when accepted)"),
)
METHODS: dict[str, tuple[Argument, ...]] = {
    "LoadRecipe": (
        ("Name", V.String, "recipe name"),
        ("Version", V.Int32, "recipe version"),
        ("Body", V.String, 'JSON object of body values, e.g. {"mold_temperature_c": 175.0}'),
    ),
    "StartJob": (
        ("JobId", V.String, "job id, chosen by the controller"),
        ("LotId", V.String, "lot id"),
        ("Step", V.String, "step code"),
        ("CarrierId", V.String, "carrier id"),
        ("Rows", V.UInt16, "site map rows"),
        ("Cols", V.UInt16, "site map columns"),
        ("SiteMap", V.ByteString, "incoming site codes, row-major: 0 process, else skip"),
    ),
    "Abort": (),
    "ResetAlarm": (),
    "AcknowledgeResults": (("JobId", V.String, "job whose results are recorded"),),
    "SetMode": (("Mode", V.Int32, "1 PRODUCTION, 2 ENGINEERING, 3 SETUP, 4 MAINTENANCE"),),
}

ALARM_EVENT_FIELDS: tuple[Argument, ...] = (
    ("AlarmCode", V.Int32, "alarm code"),
    ("AlarmText", V.String, "alarm text (also the event's Message)"),
    ("AlarmSeverity", V.Int32, "1 warning, 2 error, 3 fatal (Severity: 300, 600, 900)"),
)


def argument(name: str, vtype: ua.VariantType, description: str) -> ua.Argument:
    return ua.Argument(
        Name=name,
        DataType=node_id(vtype.value),
        ValueRank=-1,
        ArrayDimensions=[],
        Description=ua.LocalizedText(description),
    )


def variable_item(
    parent: ua.NodeId,
    new_node: ua.NodeId,
    name: ua.QualifiedName,
    value: ua.Variant,
    description: str,
) -> ua.AddNodesItem:
    """A read-only scalar BaseDataVariable, as asyncua's add_variable makes, with a description."""
    attributes = ua.VariableAttributes(
        DisplayName=ua.LocalizedText(name.Name),
        Description=ua.LocalizedText(description or name.Name),
        Value=value,
        DataType=node_id(value.VariantType.value),
        ValueRank=ua.ValueRank.Scalar,
        AccessLevel=ua.AccessLevel.CurrentRead.mask,
        UserAccessLevel=ua.AccessLevel.CurrentRead.mask,
    )
    return ua.AddNodesItem(
        ParentNodeId=parent,
        ReferenceTypeId=node_id(ObjectIds.HasComponent),
        RequestedNewNodeId=new_node,
        BrowseName=name,
        NodeClass=ua.NodeClass.Variable,
        NodeAttributes=attributes,
        TypeDefinition=node_id(ObjectIds.BaseDataVariableType),
    )


def mirror_values(tool: VirtualTool) -> dict[str, object]:
    """What the tool's variables hold now (paths as in VARIABLES, measured values included)."""
    status, recipe, job, results = tool.status, tool.active_recipe, tool.job, tool.results
    alarm = status.alarm
    values: dict[str, object] = {
        "State": int(status.state),
        "StateName": status.state.name,
        "Mode": int(status.mode),
        "Progress/SitesDone": status.sites_done,
        "Progress/SitesTotal": status.sites_total,
        "Recipe/ActiveName": recipe.name if recipe else "",
        "Recipe/ActiveVersion": recipe.version if recipe else 0,
        "Recipe/ActiveChecksum": recipe.checksum if recipe else 0,
        "Job/JobId": job.job_id if job else "",
        "Job/LotId": job.lot_id if job else "",
        "Job/Step": job.step if job else "",
        "Job/CarrierId": job.carrier_id if job else "",
        "Results/Available": results is not None,
        "Results/JobId": results.job_id if results else "",
        "Results/LotId": results.lot_id if results else "",
        "Results/Step": results.step if results else "",
        "Results/CarrierId": results.carrier_id if results else "",
        "Results/SiteMapRows": results.site_map.rows if results else 0,
        "Results/SiteMapCols": results.site_map.cols if results else 0,
        "Results/SiteMapCodes": bytes(results.site_map.codes) if results else b"",
        "Alarm/ActiveCode": alarm.code if alarm else 0,
        "Alarm/Text": alarm.text if alarm else "",
        "Alarm/Severity": int(alarm.severity) if alarm else 0,
    }
    for name, spec in tool.spec.measured.items():
        value = results.measured.get(name) if results else None
        default = DEFAULTS[MEASURED_TYPES[spec.type]]
        values[f"Results/Measured/{name}"] = default if value is None else value
    return values


class BadCall(Exception):
    def __init__(self, result: ua.CallMethodResult):
        self.result = result


def check_arguments(variants: Sequence[ua.Variant], declared: Sequence[Argument]) -> list[object]:
    if len(variants) < len(declared):
        raise BadCall(ua.CallMethodResult(StatusCode=status(StatusCodes.BadArgumentsMissing)))
    if len(variants) > len(declared):
        raise BadCall(ua.CallMethodResult(StatusCode=status(StatusCodes.BadTooManyArguments)))
    statuses = [
        ua.StatusCode() if v.VariantType == vtype else status(StatusCodes.BadTypeMismatch)
        for v, (_, vtype, _) in zip(variants, declared, strict=True)
    ]
    if any(not s.is_good() for s in statuses):
        raise BadCall(
            ua.CallMethodResult(
                StatusCode=status(StatusCodes.BadInvalidArgument),
                InputArgumentResults=statuses,
            )
        )
    return [v.Value for v in variants]


def _refused(code: RefusalCode, reason: str) -> Refused:
    return Refused(code, reason)


def recipe_from(name: object, version: object, body: object) -> Recipe:
    try:
        values = json.loads(str(body)) if body else {}
    except json.JSONDecodeError as exc:
        raise _refused(RefusalCode.INVALID_ARGUMENT, f"recipe body is not JSON: {exc}") from None
    if not isinstance(values, dict) or not all(
        isinstance(v, int | float | str) and not isinstance(v, bool) for v in values.values()
    ):
        raise _refused(
            RefusalCode.INVALID_ARGUMENT, "recipe body must be a JSON object of numbers and words"
        )
    body_values: dict[str, RecipeValue] = dict(values)
    assert isinstance(name, str)
    assert isinstance(version, int)
    return Recipe(name, version, body_values)


def job_from(values: Sequence[object]) -> Job:
    job_id, lot_id, step, carrier_id, rows, cols, codes = values
    # check_arguments has checked the variant types.
    assert isinstance(rows, int)
    assert isinstance(cols, int)
    assert codes is None or isinstance(codes, bytes)
    try:
        site_map = SiteMap(rows, cols, tuple(codes or b""))
    except ValueError as exc:
        raise _refused(RefusalCode.INVALID_ARGUMENT, f"site map: {exc}") from None
    return Job(str(job_id), str(lot_id), str(step), str(carrier_id), site_map)


def mode_from(value: object) -> Mode:
    try:
        return Mode(int(value) if isinstance(value, int) else -1)
    except ValueError:
        raise _refused(RefusalCode.INVALID_ARGUMENT, f"unknown mode {value!r}") from None
