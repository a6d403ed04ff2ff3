"""Register map files: reading, merging and checking a map (:mod:`drivers.modbus.regmap`).

A map is a YAML file (``drivers/maps/modbus/<class>.yaml``; a real tool's map is a new file
named by its endpoint). Class maps extend ``common.yaml``, which holds the blocks every tool
has (status, command handshake, identity, active recipe, results header, site maps); the class
file adds the recipe values (holding registers) and measured values (input registers) of its
class. A file's top-level keys replace the base's; ``blocks`` and ``site_maps`` are replaced
entry by entry, so a real tool can move one block and keep the rest.

Everything is checked on load and reported as ``path:line: what is wrong`` in a
:class:`~drivers.errors.ConfigurationError`: field types, required fields of the common
blocks, overlapping registers, blocks read in one request that exceed 125 registers, and
consistency with the class catalogue (every recipe and measured value mapped or listed as
unmapped, types and enum words as in ``classes.yaml``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.catalogue import ClassSpec, ValueSpec, class_spec
from drivers.errors import ConfigurationError
from drivers.modbus.codec import (
    FIXED_SIZES,
    INTEGER_KINDS,
    NUMERIC_KINDS,
    BlockCodec,
    FieldCodec,
    FieldKind,
    WordOrder,
    site_registers,
)
from drivers.modbus.regmap import (
    COMMON_BLOCKS,
    MAX_READ,
    MAX_WRITE,
    SITE_TABLES,
    BlockName,
    Command,
    RegisterMap,
    SiteArea,
    Table,
)
from drivers.model import EquipmentClass
from pkgline.datafiles import DataFileError, YamlDocument, read_yaml, validate

MAPS_DIR = Path(__file__).resolve().parent.parent / "maps" / "modbus"
PACKAGED_PREFIX = "pkgline:"
"""``extends: pkgline:common.yaml`` names a packaged map from a map file anywhere."""

FORMAT = "pkgline-modbus-map/1"


# -- the file format (one file, before extending) -------------------------------------------


class _FieldModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: int = Field(ge=0, le=65535, description="0-based protocol address")
    type: FieldKind
    length: int | None = Field(None, ge=1, le=MAX_READ, description="registers of a string")
    scale: float = Field(1.0, description="engineering value = raw * scale")
    unit: str | None = None
    enum: dict[str, int] | None = Field(None, description="word -> wire value")
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> _FieldModel:
        if (self.type == "string") != (self.length is not None):
            raise ValueError(
                "a string needs 'length' (registers, two characters each); no other type has one"
            )
        if self.enum is not None:
            if self.type != "enum":
                raise ValueError("only an enum field has 'enum' wire values")
            wires = list(self.enum.values())
            if any(not 0 <= w <= 0xFFFF for w in wires) or len(set(wires)) != len(wires):
                raise ValueError("enum wire values are distinct uint16 values (0..65535)")
        if self.scale != 1.0:
            if self.type not in NUMERIC_KINDS:
                raise ValueError(f"only numbers can be scaled, not a {self.type}")
            if self.scale == 0 or not math.isfinite(self.scale):
                raise ValueError("scale must be a finite, non-zero number")
        if self.address + self.size > 65536:
            raise ValueError(f"the field runs past address 65535 ({self.size} registers)")
        return self

    @property
    def size(self) -> int:
        return self.length if self.length is not None else FIXED_SIZES[self.type]


class _BlockModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Table
    description: str | None = None
    fields: dict[str, _FieldModel] = Field(min_length=1)


class _SiteAreaModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Table
    address: int = Field(ge=0, le=65535)
    max_sites: int = Field(ge=1, le=16384)
    description: str | None = None

    @model_validator(mode="after")
    def _fits(self) -> _SiteAreaModel:
        if self.address + site_registers(self.max_sites) > 65536:
            raise ValueError("the site map area runs past address 65535")
        return self


class _UnmappedModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    recipe: list[str] = Field(default_factory=list)
    measured: list[str] = Field(default_factory=list)


class _MapFileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["pkgline-modbus-map/1"] | None = None
    extends: str | None = None
    description: str | None = None
    equipment_class: EquipmentClass | None = None
    addressing: Literal["protocol"] | None = None
    word_order: WordOrder | None = None
    command_codes: dict[Command, int] | None = None
    blocks: dict[BlockName, _BlockModel] | None = None
    site_maps: dict[Literal["incoming", "outgoing"], _SiteAreaModel] | None = None
    recipe: dict[str, _FieldModel] | None = None
    measured: dict[str, _FieldModel] | None = None
    unmapped: _UnmappedModel | None = None

    @model_validator(mode="after")
    def _codes(self) -> _MapFileModel:
        if self.command_codes is not None:
            codes = list(self.command_codes.values())
            if any(not 1 <= c <= 0xFFFF for c in codes) or len(set(codes)) != len(codes):
                raise ValueError("command codes are distinct values 1..65535 (0 means none)")
        return self


# -- loading -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Merged:
    """The sections of a map and the file each came from (for line numbers)."""

    values: dict[str, object]
    sources: dict[str, YamlDocument]

    def source(self, *keys: str) -> YamlDocument:
        for depth in range(len(keys), 0, -1):
            doc = self.sources.get(".".join(keys[:depth]))
            if doc is not None:
                return doc
        raise KeyError(keys)  # pragma: no cover - every section has a source


def _resolve_extends(path: Path, extends: str) -> Path:
    if extends.startswith(PACKAGED_PREFIX):
        return MAPS_DIR / extends[len(PACKAGED_PREFIX) :]
    return (path.parent / extends).resolve()


def _read(path: Path) -> tuple[YamlDocument, _MapFileModel]:
    doc = read_yaml(path)
    return doc, validate(doc, _MapFileModel)


def _merge(path: Path) -> _Merged:
    doc, model = _read(path)
    chain = [(doc, model)]
    seen = {path.resolve()}
    while model.extends is not None:
        base_path = _resolve_extends(path, model.extends)
        if base_path in seen:
            raise doc.error(["extends"], f"{model.extends} is extended twice (a cycle)")
        if not base_path.is_file():
            raise doc.error(["extends"], f"the base map {base_path} does not exist")
        seen.add(base_path)
        path = base_path
        doc, model = _read(base_path)
        chain.append((doc, model))
    merged = _Merged({}, {})
    for doc, model in reversed(chain):  # base first, then each file over it
        for key in type(model).model_fields:
            value = getattr(model, key)
            if value is None or key == "extends":
                continue
            if key in ("blocks", "site_maps"):
                section = merged.values.setdefault(key, {})
                assert isinstance(section, dict)
                for name, entry in value.items():
                    section[name] = entry
                    merged.sources[f"{key}.{name}"] = doc
            else:
                merged.values[key] = value
                merged.sources[key] = doc
    return merged


def load_register_map(
    path: Path | str, *, equipment_class: EquipmentClass | None = None
) -> RegisterMap:
    """Read, merge and check a register map file; errors are ConfigurationError with
    ``path:line``. With ``equipment_class``, the map must be for that class."""
    path = Path(path)
    try:
        merged = _merge(path)
        register_map = _compile(path, merged)
    except DataFileError as exc:
        raise ConfigurationError(str(exc)) from exc
    if equipment_class is not None and register_map.equipment_class is not equipment_class:
        raise ConfigurationError(
            f"{path}: the map is for {register_map.equipment_class.value}, "
            f"not {equipment_class.value}"
        )
    return register_map


def packaged_map_path(equipment_class: EquipmentClass) -> Path:
    """The packaged map of a class: ``drivers/maps/modbus/<class>.yaml``."""
    return MAPS_DIR / f"{equipment_class.value}.yaml"


@cache
def packaged_map(equipment_class: EquipmentClass) -> RegisterMap:
    """The packaged map of a class, loaded once per process."""
    return load_register_map(packaged_map_path(equipment_class), equipment_class=equipment_class)


def register_map_for(equipment_class: EquipmentClass, path: Path | None = None) -> RegisterMap:
    """The map an endpoint names, or the packaged map of the class."""
    if path is None:
        return packaged_map(equipment_class)
    return load_register_map(path, equipment_class=equipment_class)


# -- checking and compiling --------------------------------------------------------------------

Location = list[str | int]


@dataclass(frozen=True, slots=True)
class _Span:
    """Registers something occupies, and where the map says so (for overlap errors)."""

    start: int
    count: int
    label: str
    doc: YamlDocument
    loc: Location


def _where(table: Table, start: int, count: int) -> str:
    span = f"{start}" if count == 1 else f"{start}..{start + count - 1}"
    return f"{table} register{'s' if count > 1 else ''} {span}"


def _field_codec(
    name: str, spec: _FieldModel, table: Table, word_order: WordOrder, label: str
) -> FieldCodec:
    return FieldCodec(
        name=name,
        address=spec.address,
        kind=spec.type,
        size=spec.size,
        label=f"{label} ({_where(table, spec.address, spec.size)})",
        word_order=word_order,
        scale=spec.scale,
        words=tuple(spec.enum.items()) if spec.enum is not None else (),
    )


def _require(merged: _Merged, key: str, path: Path) -> object:
    value = merged.values.get(key)
    if value is None:
        raise DataFileError(path, None, f"the map (with what it extends) has no {key!r}")
    return value


def _compile(path: Path, merged: _Merged) -> RegisterMap:
    if merged.values.get("format") != FORMAT:
        raise DataFileError(path, None, f"the map (with what it extends) needs format: {FORMAT}")
    equipment_class = _require(merged, "equipment_class", path)
    assert isinstance(equipment_class, EquipmentClass)
    word_order = _require(merged, "word_order", path)
    assert word_order == "big" or word_order == "little"
    _require(merged, "addressing", path)
    codes = _require(merged, "command_codes", path)
    assert isinstance(codes, dict)
    missing_codes = [c.value for c in Command if c not in codes]
    if missing_codes:
        raise merged.source("command_codes").error(
            ["command_codes"], f"missing command codes: {', '.join(missing_codes)}"
        )
    occupied: dict[Table, list[_Span]] = {"input": [], "holding": []}
    blocks = _compile_common(path, merged, word_order, occupied)
    incoming, outgoing = _compile_site_areas(path, merged, occupied)
    spec = class_spec(equipment_class)
    unmapped = merged.values.get("unmapped")
    if unmapped is None:
        unmapped = _UnmappedModel()
    assert isinstance(unmapped, _UnmappedModel)
    recipe = _compile_class_values(
        merged, "recipe", "holding", spec, spec.recipe, set(unmapped.recipe), word_order, occupied
    )
    measured = _compile_class_values(
        merged,
        "measured",
        "input",
        spec,
        spec.measured,
        set(unmapped.measured),
        word_order,
        occupied,
    )
    mask_bits = 16 * blocks["recipe_header"].field("present_mask").size
    if len(recipe.fields) > mask_bits:
        raise merged.source("recipe").error(
            ["recipe"],
            f"{len(recipe.fields)} recipe values do not fit the {mask_bits}-bit presence "
            "mask (recipe_header.present_mask)",
        )
    for table, spans in occupied.items():
        _check_overlaps(table, spans)
    return RegisterMap(
        path=path,
        equipment_class=equipment_class,
        word_order=word_order,
        command_codes=dict(codes),
        status=blocks["status"],
        answer=blocks["answer"],
        identity=blocks["identity"],
        active_recipe=blocks["active_recipe"],
        results=blocks["results"],
        command=blocks["command"],
        mode=blocks["mode"],
        recipe_header=blocks["recipe_header"],
        job=blocks["job"],
        acknowledge=blocks["acknowledge"],
        recipe=recipe,
        measured=measured,
        incoming=incoming,
        outgoing=outgoing,
        unmapped_recipe=frozenset(unmapped.recipe),
        unmapped_measured=frozenset(unmapped.measured),
    )


def _compile_common(
    path: Path, merged: _Merged, word_order: WordOrder, occupied: dict[Table, list[_Span]]
) -> dict[str, BlockCodec]:
    section = _require(merged, "blocks", path)
    assert isinstance(section, dict)
    blocks: dict[str, BlockCodec] = {}
    for name, (table, one_request, roles) in COMMON_BLOCKS.items():
        block = section.get(name)
        if block is None:
            raise DataFileError(path, None, f"the map (with what it extends) has no block {name}")
        assert isinstance(block, _BlockModel)
        doc = merged.source("blocks", name)
        loc: Location = ["blocks", name]
        if block.table != table:
            raise doc.error([*loc, "table"], f"block {name} is in {table} registers")
        missing = [role for role in roles if role not in block.fields]
        if missing:
            raise doc.error([*loc, "fields"], f"block {name} needs fields {', '.join(missing)}")
        codecs = []
        for field_name, spec in block.fields.items():
            field_loc: Location = [*loc, "fields", field_name]
            allowed = roles.get(field_name)
            if allowed is None:
                raise doc.error(
                    field_loc,
                    f"block {name} has no field {field_name!r}; its fields are {', '.join(roles)}",
                )
            if spec.type not in allowed or spec.scale != 1.0:
                raise doc.error(
                    [*field_loc, "type"],
                    f"{name}.{field_name} is one of {', '.join(sorted(allowed))} (unscaled), "
                    f"not {spec.type}",
                )
            codecs.append(_field_codec(field_name, spec, table, word_order, f"{name}.{field_name}"))
        codec = BlockCodec.of(name, codecs)
        limit = MAX_READ if table == "input" else MAX_WRITE
        if one_request and codec.count > limit:
            verb = "read" if table == "input" else "written"
            raise doc.error(
                loc,
                f"block {name} spans {codec.count} registers; it is {verb} in one request, "
                f"at most {limit}",
            )
        if name == "command" and codec.count != sum(f.size for f in codec.fields):
            raise doc.error(loc, "the command code and sequence must be adjacent registers")
        blocks[name] = codec
        occupied[table].append(_Span(codec.start, codec.count, f"block {name}", doc, loc))
    return blocks


def _compile_site_areas(
    path: Path, merged: _Merged, occupied: dict[Table, list[_Span]]
) -> tuple[SiteArea, SiteArea]:
    section = _require(merged, "site_maps", path)
    assert isinstance(section, dict)
    areas: dict[str, SiteArea] = {}
    for name, table in SITE_TABLES.items():
        spec = section.get(name)
        if spec is None:
            raise DataFileError(
                path, None, f"the map (with what it extends) has no site_maps.{name}"
            )
        assert isinstance(spec, _SiteAreaModel)
        doc = merged.source("site_maps", name)
        loc: Location = ["site_maps", name]
        if spec.table != table:
            raise doc.error([*loc, "table"], f"the {name} site map is in {table} registers")
        area = SiteArea(table, spec.address, spec.max_sites)
        areas[name] = area
        occupied[table].append(_Span(area.address, area.count, f"site_maps.{name}", doc, loc))
    return areas["incoming"], areas["outgoing"]


def _compile_class_values(
    merged: _Merged,
    section: Literal["recipe", "measured"],
    table: Table,
    spec: ClassSpec,
    catalogue: Mapping[str, ValueSpec],
    not_mapped: set[str],
    word_order: WordOrder,
    occupied: dict[Table, list[_Span]],
) -> BlockCodec:
    entries = merged.values.get(section) or {}
    assert isinstance(entries, dict)
    class_name = spec.equipment_class.value
    codecs = []
    for value_name, field_spec in entries.items():
        assert isinstance(field_spec, _FieldModel)
        doc = merged.source(section)
        loc: Location = [section, value_name]
        field_spec = _check_catalogue(
            doc, loc, class_name, section, value_name, field_spec, catalogue
        )
        if value_name in not_mapped:
            raise doc.error(loc, f"{value_name} is mapped and also listed as unmapped")
        codec = _field_codec(value_name, field_spec, table, word_order, f"{section}.{value_name}")
        codecs.append(codec)
        occupied[table].append(
            _Span(codec.address, codec.size, f"{section}.{value_name}", doc, loc)
        )
    for value_name in sorted(not_mapped - set(catalogue)):
        raise merged.source("unmapped").error(
            ["unmapped", section], f"{class_name} has no {section} value {value_name!r}"
        )
    missing = sorted(set(catalogue) - set(entries) - not_mapped)
    if missing:
        key = section if section in merged.sources else "equipment_class"
        raise merged.source(key).error(
            [key],
            f"{section} values of {class_name} neither mapped nor listed under "
            f"unmapped.{section}: {', '.join(missing)}",
        )
    return BlockCodec.of(section, codecs)


_COMPATIBLE: dict[str, frozenset[str]] = {
    "float": frozenset(NUMERIC_KINDS),
    "int": frozenset(INTEGER_KINDS),
    "enum": frozenset({"enum"}),
}


def _check_catalogue(
    doc: YamlDocument,
    loc: Location,
    class_name: str,
    section: str,
    name: str,
    field_spec: _FieldModel,
    catalogue: Mapping[str, ValueSpec],
) -> _FieldModel:
    """Check a class value against the catalogue; return it with enum wire values filled in
    (the catalogue's word order, from 0) when the map gives none."""
    value = catalogue.get(name)
    if value is None:
        raise doc.error(
            loc,
            f"{class_name} has no {section} value {name!r}; its {section} values are "
            f"{', '.join(sorted(catalogue))}",
        )
    allowed = _COMPATIBLE[value.type]
    if field_spec.type not in allowed:
        raise doc.error(
            [*loc, "type"],
            f"{name} is {value.type} in the class catalogue: its register type is one of "
            f"{', '.join(sorted(allowed))}, not {field_spec.type}",
        )
    if value.type == "int" and field_spec.scale != 1.0:
        raise doc.error([*loc, "scale"], f"{name} is a whole number: it cannot be scaled")
    if field_spec.unit is not None and field_spec.unit != value.unit:
        raise doc.error(
            [*loc, "unit"],
            f"{name} is in {value.unit} in the class catalogue, not {field_spec.unit} "
            "(maps do not convert units; scale is for decimal factors)",
        )
    if value.type != "enum":
        return field_spec
    words = value.values or ()
    if field_spec.enum is None:
        return field_spec.model_copy(update={"enum": {word: i for i, word in enumerate(words)}})
    if set(field_spec.enum) != set(words):
        raise doc.error(
            [*loc, "enum"],
            f"{name} has the words {', '.join(words)} in the class catalogue; the map gives "
            f"{', '.join(field_spec.enum)}",
        )
    return field_spec


def _check_overlaps(table: Table, spans: list[_Span]) -> None:
    ordered = sorted(spans, key=lambda s: (s.start, s.start + s.count))
    for before, after in itertools.pairwise(ordered):
        if after.start < before.start + before.count:
            raise after.doc.error(
                after.loc,
                f"{after.label} ({_where(table, after.start, after.count)}) overlaps "
                f"{before.label} ({_where(table, before.start, before.count)}, "
                f"{before.doc.path.name}:{before.doc.line_of(before.loc)})",
            )
