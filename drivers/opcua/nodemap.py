"""The OPC UA node map: where each signal and method of the equipment model lives in a server's
address space.

A node map is a checked YAML file (``drivers/maps/opcua/*.yaml``). It names, for every signal
the driver reads and every method it calls, either a *browse path* relative to the tool's object
or a *node id*; so a third-party server with another information model is a new map file, not
new code. The packaged map ``pkgline.yaml`` describes the model our simulators serve
(docs/equipment.md, "OPC UA").

Browse paths are written ``Element/Element/...``; an element is ``alias:Name`` or just ``Name``
for the map's default namespace. Aliases stand for namespace URIs (never indexes: a server may
renumber its namespaces when it restarts). Node ids are written ``s=...``, ``i=...``, ``g=...``
or ``b=...`` without a namespace index, may contain ``{object}`` (the tool's object name), and
take the default namespace unless they name another alias.

Nothing here talks to a server: the driver resolves a map against a live connection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.errors import ConfigurationError
from pkgline.datafiles import DataFileError, YamlDocument, read_yaml, validate

MAPS_DIR = Path(__file__).resolve().parents[1] / "maps" / "opcua"
DEFAULT_MAP_PATH = MAPS_DIR / "pkgline.yaml"

OBJECT_PLACEHOLDER = "{object}"
NAME_PLACEHOLDER = "{name}"


class Signal(StrEnum):
    """Every variable the driver reads, in equipment words."""

    EQUIPMENT_CLASS = "equipment_class"
    MANUFACTURER = "manufacturer"
    MODEL = "model"
    SERIAL_NUMBER = "serial_number"
    SOFTWARE_VERSION = "software_version"
    STATE = "state"
    MODE = "mode"
    SITES_DONE = "sites_done"
    SITES_TOTAL = "sites_total"
    RECIPE_NAME = "recipe_name"
    RECIPE_VERSION = "recipe_version"
    RECIPE_CHECKSUM = "recipe_checksum"
    JOB_ID = "job_id"
    ALARM_CODE = "alarm_code"
    ALARM_TEXT = "alarm_text"
    ALARM_SEVERITY = "alarm_severity"
    RESULTS_AVAILABLE = "results_available"
    RESULTS_JOB_ID = "results_job_id"
    RESULTS_LOT_ID = "results_lot_id"
    RESULTS_STEP = "results_step"
    RESULTS_CARRIER_ID = "results_carrier_id"
    RESULTS_ROWS = "results_rows"
    RESULTS_COLS = "results_cols"
    RESULTS_CODES = "results_codes"


class Method(StrEnum):
    """Every command the driver sends, as a method of the tool's object."""

    LOAD_RECIPE = "load_recipe"
    START_JOB = "start_job"
    ABORT = "abort"
    RESET_ALARM = "reset_alarm"
    ACKNOWLEDGE_RESULTS = "acknowledge_results"
    SET_MODE = "set_mode"


STATUS_SIGNALS: tuple[Signal, ...] = (
    Signal.STATE,
    Signal.MODE,
    Signal.SITES_DONE,
    Signal.SITES_TOTAL,
    Signal.JOB_ID,
    Signal.ALARM_CODE,
    Signal.ALARM_TEXT,
    Signal.ALARM_SEVERITY,
    Signal.RESULTS_AVAILABLE,
)
"""The signals that make one :class:`~drivers.model.ToolStatus` (read together, monitored)."""


@dataclass(frozen=True, slots=True)
class QName:
    """A browse name: a namespace URI and a name."""

    namespace_uri: str
    name: str


@dataclass(frozen=True, slots=True)
class Address:
    """Where a node is: a browse path from a starting node, or a node id.

    ``node_id`` is the identifier part (``s=MOLD-1/State``) after ``{object}`` is filled in;
    ``namespace_uri`` qualifies it.
    """

    browse_path: tuple[QName, ...] = ()
    node_id: str | None = None
    namespace_uri: str | None = None

    def for_object(self, object_name: str) -> Address:
        if self.node_id is None or OBJECT_PLACEHOLDER not in self.node_id:
            return self
        return Address(
            node_id=self.node_id.replace(OBJECT_PLACEHOLDER, object_name),
            namespace_uri=self.namespace_uri,
        )


@dataclass(frozen=True, slots=True)
class AlarmEventMap:
    """The alarm event type (browse path from BaseEventType, or node id) and its fields."""

    event_type: Address
    code: QName
    text: QName
    severity: QName


@dataclass(frozen=True, slots=True)
class NodeMap:
    """A checked node map. Addresses of signals, methods and measured values are relative to
    the tool's object; ``tool_object`` is relative to the Objects folder."""

    path: Path
    namespaces: Mapping[str, str]
    tool_object: Address
    signals: Mapping[Signal, Address]
    methods: Mapping[Method, Address]
    measured_template: Address
    measured_names: Mapping[str, Address]
    alarm_event: AlarmEventMap

    def tool_object_for(self, object_name: str) -> Address:
        """The tool object's address, with ``{object}`` filled in."""
        path = tuple(
            QName(q.namespace_uri, q.name.replace(OBJECT_PLACEHOLDER, object_name))
            for q in self.tool_object.browse_path
        )
        if path:
            return Address(browse_path=path)
        return self.tool_object.for_object(object_name)

    def measured(self, name: str) -> Address:
        """The address of a measured value (catalogue name), relative to the tool object."""
        if name in self.measured_names:
            return self.measured_names[name]
        template = self.measured_template
        if template.browse_path:
            return Address(
                browse_path=tuple(
                    QName(q.namespace_uri, q.name.replace(NAME_PLACEHOLDER, name))
                    for q in template.browse_path
                )
            )
        assert template.node_id is not None
        return Address(
            node_id=template.node_id.replace(NAME_PLACEHOLDER, name),
            namespace_uri=template.namespace_uri,
        )


# -- the file format ---------------------------------------------------------------------------

_ELEMENT = re.compile(r"^(?:(?P<alias>[A-Za-z_][A-Za-z0-9_]*):)?(?P<name>[^/:]+)$")
_NODE_ID = re.compile(r"^(?:[isgb])=.+$")


class _NodeIdSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    node_id: str = Field(description="s=..., i=..., g=... or b=..., without a namespace index")
    namespace: str | None = Field(None, description="Namespace alias; default: the map's")

    @field_validator("node_id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _NODE_ID.fullmatch(value):
            raise ValueError(
                f"a node id is written s=..., i=..., g=... or b=... (no ns=: the namespace is "
                f"an alias), not {value!r}"
            )
        return value


def _check_browse_path(value: str) -> str:
    elements = value.split("/")
    for element in elements:
        if not _ELEMENT.fullmatch(element):
            raise ValueError(
                f"bad browse path {value!r}: each element is Name or alias:Name, "
                f"separated by '/' (element {element!r})"
            )
    return value


_AddressSpec = str | _NodeIdSpec


class _MeasuredSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    template: _AddressSpec = Field(description="Address of a measured value; {name} = its name")
    names: dict[str, _AddressSpec] = Field(default_factory=dict)


class _AlarmEventSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: _AddressSpec = Field(description="Browse path from BaseEventType, or a node id")
    code: str
    text: str
    severity: str


class _NodeMapSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    namespaces: dict[str, str] = Field(min_length=1, description="alias -> namespace URI")
    default_namespace: str
    tool_object: _AddressSpec
    signals: dict[Signal, _AddressSpec]
    methods: dict[Method, _AddressSpec]
    measured: _MeasuredSpec
    alarm_event: _AlarmEventSpec

    @field_validator("signals")
    @classmethod
    def _every_signal(cls, value: dict[Signal, _AddressSpec]) -> dict[Signal, _AddressSpec]:
        missing = [s.value for s in Signal if s not in value]
        if missing:
            raise ValueError(f"signals missing from the map: {', '.join(missing)}")
        return value

    @field_validator("methods")
    @classmethod
    def _every_method(cls, value: dict[Method, _AddressSpec]) -> dict[Method, _AddressSpec]:
        missing = [m.value for m in Method if m not in value]
        if missing:
            raise ValueError(f"methods missing from the map: {', '.join(missing)}")
        return value


class _Builder:
    """Turns the validated spec into a NodeMap, reporting alias and path errors by line."""

    def __init__(self, doc: YamlDocument, spec: _NodeMapSpec):
        self.doc = doc
        self.spec = spec
        if spec.default_namespace not in spec.namespaces:
            raise doc.error(
                ["default_namespace"],
                f"default_namespace {spec.default_namespace!r} is not one of the namespaces "
                f"({', '.join(spec.namespaces)})",
            )

    def uri(self, alias: str | None, loc: Sequence[str | int]) -> str:
        alias = alias or self.spec.default_namespace
        try:
            return self.spec.namespaces[alias]
        except KeyError:
            raise self.doc.error(
                loc,
                f"unknown namespace alias {alias!r}; declared: {', '.join(self.spec.namespaces)}",
            ) from None

    def qname(self, element: str, loc: Sequence[str | int]) -> QName:
        match = _ELEMENT.fullmatch(element)
        if match is None:
            raise self.doc.error(loc, f"bad browse name {element!r}: write Name or alias:Name")
        return QName(self.uri(match["alias"], loc), match["name"])

    def address(self, spec: _AddressSpec, loc: Sequence[str | int]) -> Address:
        if isinstance(spec, _NodeIdSpec):
            return Address(node_id=spec.node_id, namespace_uri=self.uri(spec.namespace, loc))
        try:
            _check_browse_path(spec)
        except ValueError as exc:
            raise self.doc.error(loc, str(exc)) from None
        return Address(browse_path=tuple(self.qname(e, loc) for e in spec.split("/")))

    def build(self, path: Path) -> NodeMap:
        spec = self.spec
        event = spec.alarm_event
        return NodeMap(
            path=path,
            namespaces=dict(spec.namespaces),
            tool_object=self.address(spec.tool_object, ["tool_object"]),
            signals={s: self.address(a, ["signals", s.value]) for s, a in spec.signals.items()},
            methods={m: self.address(a, ["methods", m.value]) for m, a in spec.methods.items()},
            measured_template=self.address(spec.measured.template, ["measured", "template"]),
            measured_names={
                n: self.address(a, ["measured", "names", n]) for n, a in spec.measured.names.items()
            },
            alarm_event=AlarmEventMap(
                event_type=self.address(event.type, ["alarm_event", "type"]),
                code=self.qname(event.code, ["alarm_event", "code"]),
                text=self.qname(event.text, ["alarm_event", "text"]),
                severity=self.qname(event.severity, ["alarm_event", "severity"]),
            ),
        )


def parse_node_map(path: Path | str, text: str | None = None) -> NodeMap:
    """Read and check a node map (``text`` reported as coming from ``path``, for tests).

    Raises :class:`ConfigurationError` whose message starts ``path:line:``.
    """
    path = Path(path)
    try:
        doc = read_yaml(path, text)
        spec = validate(doc, _NodeMapSpec)
        return _Builder(doc, spec).build(path)
    except DataFileError as exc:
        raise ConfigurationError(str(exc)) from exc


@cache
def load_node_map(path: Path = DEFAULT_MAP_PATH) -> NodeMap:
    """The node map at ``path`` (default: the packaged pkgline model), read once per process."""
    return parse_node_map(path)
