"""SEMI E142 substrate maps: a lot's site maps as XML, and an upstream map back to rejects.

Pure: text in, values out, no I/O. Writing uses the standard library's ElementTree (it
builds the document; nothing is parsed); reading uses defusedxml with DTDs, entities and
external references forbidden, so that a map from another system cannot reach a file or the
network (XXE) or blow up in memory (entity expansion).

What pkgline writes (docs/e142.md has the whole mapping)::

    MapData                                     namespace NAMESPACE
      Layouts/Layout LayoutId="SITES-4x8"       Dimension X=columns Y=rows
      Substrates/Substrate SubstrateType="Strip"|"Panel" SubstrateId=<carrier id>
                                                LotId, GoodDevices
      SubstrateMaps/SubstrateMap                OriginLocation="UpperLeft"
                                                AxisDirection="DownRight"
        Overlay MapName="<lot>/<carrier>"
          BinCodeMap BinType="Ascii" NullBin="."
            BinDefinitions/BinDefinition        "1" Pass: good; one Fail bin per reject
                                                code and step (pk:Step="MOLD")
            BinCode                             one line per row, row 1 first, one
                                                character per site, column 1 first

A map is read back into :class:`SubstrateMap` values (:func:`decode`), and
:func:`plan_import` says which sites of a lot it rejects, with which of our reject codes,
refusing a map whose carrier, layout or bins do not fit, naming what differed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from mes.domain.commands import SiteRejectGiven
from mes.domain.errors import InvalidInput
from mes.domain.model import REJECT_CODE_PATTERN, SiteRef, SiteReject
from mes.domain.text import counted

NAMESPACE = "urn:semi-org:xsd.E142-1.V1005.SubstrateMap"
"""The E142.1 namespace pkgline writes."""
NAMESPACE_PREFIX = "urn:semi-org:xsd.E142-1."
"""Maps in any E142.1 namespace (another version), or in none, are read."""
PKGLINE_NAMESPACE = "urn:pkgline:e142"
"""pkgline's own attributes (the step that rejected a bin's sites), allowed by the schema."""

ORIGIN_LOCATION = "UpperLeft"
AXIS_DIRECTION = "DownRight"
"""Site (row 1, column 1) is the upper left corner seen from the top side; columns (X)
increase to the right, rows (Y) downwards: the order of :class:`mes.domain.report.CarrierMap`
grids and of ``lot show``."""

GOOD_BIN = "1"
NULL_BIN = "."
REJECT_BINS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz023456789"
"""Bin codes given to the (reject code, step) pairs of one carrier, in sorted order."""
MAX_MAP_BYTES = 8_000_000
"""A map larger than this is refused unread (128 x 128 sites of 100 carriers fit easily)."""


def schema_text() -> str:
    """The XSD pkgline ships for the maps it writes (``mes/maps/e142.xsd``)."""
    return resources.files("mes.maps").joinpath("e142.xsd").read_text(encoding="utf-8")


def substrate_type(flow: str) -> str:
    """E142's substrate type of a flow's carriers: the fan-out flows build on panels
    (documents 002 and 003), the others on strips."""
    return "Panel" if flow.startswith("fo-") else "Strip"


@dataclass(frozen=True, slots=True)
class BinDefinition:
    code: str
    quality: str
    """Pass, Fail, Null or Unknown (E142)."""
    description: str | None = None
    count: int | None = None
    step: str | None = None
    """pkgline's extension: the step that rejected the bin's sites."""


@dataclass(frozen=True, slots=True)
class SubstrateMap:
    """One carrier's map as E142 tells it: every site's bin code, row 1 first."""

    substrate_type: str
    substrate_id: str
    rows: int
    cols: int
    bins: Mapping[str, BinDefinition]
    cells: tuple[tuple[str, ...], ...]
    """``cells[row - 1][col - 1]``: the site's bin code."""
    lot_id: str | None = None
    map_name: str | None = None
    null_bin: str = NULL_BIN


@dataclass(frozen=True, slots=True)
class CarrierSites:
    """What the export needs of one carrier: its id, layout and rejected sites."""

    carrier_id: str
    rows: int
    cols: int
    rejects: Sequence[SiteReject] = field(default_factory=tuple)


# -- writing ---------------------------------------------------------------------------------


def _q(tag: str) -> str:
    return f"{{{NAMESPACE}}}{tag}"


def to_substrate_map(lot_id: str, kind: str, carrier: CarrierSites) -> SubstrateMap:
    """A carrier's site map as bins: good sites in bin ``1``, the rejects in one bin per
    (reject code, step)."""
    pairs = sorted({(r.code, r.step) for r in carrier.rejects})
    if len(pairs) > len(REJECT_BINS):
        raise InvalidInput(
            f"carrier {carrier.carrier_id} has {len(pairs)} kinds of reject (code and step); "
            f"an E142 map of one character per site holds at most {len(REJECT_BINS)}",
            lot_id=lot_id,
        )
    code_of = {pair: REJECT_BINS[i] for i, pair in enumerate(pairs)}
    grid = [[GOOD_BIN] * carrier.cols for _ in range(carrier.rows)]
    counts: dict[str, int] = {}
    for r in carrier.rejects:
        grid[r.row - 1][r.col - 1] = code_of[(r.code, r.step)]
    for row in grid:
        for code in row:
            counts[code] = counts.get(code, 0) + 1
    bins = {GOOD_BIN: BinDefinition(GOOD_BIN, "Pass", "GOOD", counts.get(GOOD_BIN, 0))}
    for (reject, step), code in code_of.items():
        bins[code] = BinDefinition(code, "Fail", reject, counts.get(code, 0), step)
    return SubstrateMap(
        substrate_type=kind,
        substrate_id=carrier.carrier_id,
        rows=carrier.rows,
        cols=carrier.cols,
        bins=bins,
        cells=tuple(tuple(row) for row in grid),
        lot_id=lot_id,
        map_name=f"{lot_id}/{carrier.carrier_id}",
    )


def layout_id(rows: int, cols: int) -> str:
    return f"SITES-{rows}x{cols}"


def encode(maps: Sequence[SubstrateMap]) -> str:
    """The maps as one E142 document (XML text, UTF-8 declared)."""
    ET.register_namespace("", NAMESPACE)
    ET.register_namespace("pk", PKGLINE_NAMESPACE)
    root = ET.Element(_q("MapData"))
    layouts = ET.SubElement(root, _q("Layouts"))
    for rows, cols in dict.fromkeys((m.rows, m.cols) for m in maps):
        layout = ET.SubElement(
            layouts,
            _q("Layout"),
            {"LayoutId": layout_id(rows, cols), "DefaultUnits": "mm", "TopLevel": "true"},
        )
        ET.SubElement(layout, _q("Dimension"), {"X": str(cols), "Y": str(rows)})
    substrates = ET.SubElement(root, _q("Substrates"))
    for m in maps:
        substrate = ET.SubElement(
            substrates,
            _q("Substrate"),
            {"SubstrateType": m.substrate_type, "SubstrateId": m.substrate_id},
        )
        if m.lot_id:
            ET.SubElement(substrate, _q("LotId")).text = m.lot_id
        good = sum(1 for row in m.cells for c in row if m.bins[c].quality == "Pass")
        ET.SubElement(substrate, _q("GoodDevices")).text = str(good)
    substrate_maps = ET.SubElement(root, _q("SubstrateMaps"))
    for m in maps:
        smap = ET.SubElement(
            substrate_maps,
            _q("SubstrateMap"),
            {
                "SubstrateType": m.substrate_type,
                "SubstrateId": m.substrate_id,
                "LayoutSpecifier": layout_id(m.rows, m.cols),
                "SubstrateSide": "TopSide",
                "Orientation": "0",
                "OriginLocation": ORIGIN_LOCATION,
                "AxisDirection": AXIS_DIRECTION,
            },
        )
        overlay = ET.SubElement(
            smap, _q("Overlay"), {"MapName": m.map_name or m.substrate_id, "MapVersion": "1"}
        )
        bcm = ET.SubElement(overlay, _q("BinCodeMap"), {"BinType": "Ascii", "NullBin": m.null_bin})
        definitions = ET.SubElement(bcm, _q("BinDefinitions"))
        for b in m.bins.values():
            attrs = {"BinCode": b.code, "BinQuality": b.quality}
            if b.count is not None:
                attrs["BinCount"] = str(b.count)
            if b.description:
                attrs["BinDescription"] = b.description
            attrs["Pick"] = "true" if b.quality == "Pass" else "false"
            if b.step:
                attrs[f"{{{PKGLINE_NAMESPACE}}}Step"] = b.step
            ET.SubElement(definitions, _q("BinDefinition"), attrs)
        for row in m.cells:
            ET.SubElement(bcm, _q("BinCode")).text = "".join(row)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def export_maps(lot_id: str, flow: str, carriers: Iterable[CarrierSites]) -> str:
    """A lot's carriers as one E142 document."""
    kind = substrate_type(flow)
    return encode([to_substrate_map(lot_id, kind, c) for c in carriers])


# -- reading ---------------------------------------------------------------------------------


class MapRefused(InvalidInput):
    """An E142 map that does not parse, or does not fit the lot: says what differed."""

    kind = "map_refused"


def _local(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return None, tag


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag)[1] == name]


def _child(element: ET.Element, name: str, where: str) -> ET.Element:
    found = _children(element, name)
    if len(found) != 1:
        raise MapRefused(
            f"{where}: expected one {name} element, found {len(found)}",
        )
    return found[0]


def _attr(element: ET.Element, name: str, where: str) -> str:
    value = element.get(name)
    if value is None or not value.strip():
        raise MapRefused(f"{where}: the attribute {name} is missing")
    return value.strip()


def _count(element: ET.Element, name: str, where: str, least: int = 1) -> int:
    text = _attr(element, name, where)
    if not re.fullmatch(r"[0-9]{1,6}", text) or int(text) < least:
        what = "a positive whole number" if least else "a whole number"
        raise MapRefused(f"{where}: {name}={text!r} is not {what}")
    return int(text)


BIN_WIDTHS = {"Ascii": 1, "HexaDecimal": 2}
"""Characters per site in a BinCode line, for the bin types pkgline reads."""


def decode(text: str | bytes) -> list[SubstrateMap]:
    """Every substrate map of an E142 document; a document that is not XML, not E142, or
    not one pkgline can read (another orientation, bin type) is refused saying what."""
    if len(text) > MAX_MAP_BYTES:
        raise MapRefused(f"the map is {len(text):,} bytes; at most {MAX_MAP_BYTES:,} are read")
    try:
        root = fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MapRefused(
            "the map is refused: it declares a DTD, entities or external references "
            f"({type(exc).__name__}), which a map never needs and pkgline never reads"
        ) from None
    except ET.ParseError as exc:
        raise MapRefused(f"the map is not well-formed XML: {exc}") from None
    ns, name = _local(root.tag)
    if name != "MapData" or not (ns is None or ns.startswith(NAMESPACE_PREFIX)):
        raise MapRefused(
            f"the document's root is {root.tag!r}: expected MapData in the E142.1 namespace "
            f"({NAMESPACE})"
        )
    layouts: dict[str, tuple[int, int]] = {}
    for layout in _children(_child(root, "Layouts", "MapData"), "Layout"):
        lid = _attr(layout, "LayoutId", "Layout")
        if lid in layouts:
            raise MapRefused(f"Layout {lid} is defined twice; expected one Layout per LayoutId")
        dim = _child(layout, "Dimension", f"Layout {lid}")
        where = f"Layout {lid} Dimension"
        layouts[lid] = (_count(dim, "Y", where), _count(dim, "X", where))
    lots: dict[str, str | None] = {}
    substrates = _children(root, "Substrates")
    for s in _children(substrates[0], "Substrate") if substrates else []:
        lot = _children(s, "LotId")
        lots[_attr(s, "SubstrateId", "Substrate")] = (lot[0].text or "").strip() if lot else None
    maps = [
        _decode_map(smap, layouts, lots)
        for smap in _children(_child(root, "SubstrateMaps", "MapData"), "SubstrateMap")
    ]
    if not maps:
        raise MapRefused("the document has no SubstrateMap")
    return maps


def _decode_map(
    smap: ET.Element, layouts: Mapping[str, tuple[int, int]], lots: Mapping[str, str | None]
) -> SubstrateMap:
    sid = _attr(smap, "SubstrateId", "SubstrateMap")
    where = f"SubstrateMap {sid}"
    kind = _attr(smap, "SubstrateType", where)
    spec = _attr(smap, "LayoutSpecifier", where)
    lid = spec.rsplit("/", 1)[-1]
    if lid not in layouts:
        raise MapRefused(
            f"{where}: LayoutSpecifier {spec!r} names no Layout; layouts: {', '.join(layouts)}"
        )
    rows, cols = layouts[lid]
    for attr, expected in (
        ("OriginLocation", ORIGIN_LOCATION),
        ("AxisDirection", AXIS_DIRECTION),
    ):
        got = _attr(smap, attr, where)
        if got != expected:
            raise MapRefused(
                f"{where}: {attr} is {got}; pkgline reads maps with {attr} {expected} "
                "(site 1:1 upper left, rows downwards, columns to the right)"
            )
    for attr, expected in (("Orientation", "0"), ("SubstrateSide", "TopSide")):
        got = smap.get(attr, expected).strip()
        if got != expected:
            raise MapRefused(f"{where}: {attr} is {got}; pkgline reads maps with {expected}")
    overlays = [o for o in _children(smap, "Overlay") if _children(o, "BinCodeMap")]
    if len(overlays) != 1:
        raise MapRefused(f"{where}: expected one Overlay with a BinCodeMap, found {len(overlays)}")
    overlay = overlays[0]
    bcm = _child(overlay, "BinCodeMap", where)
    bin_type = _attr(bcm, "BinType", f"{where} BinCodeMap")
    width = BIN_WIDTHS.get(bin_type)
    if width is None:
        raise MapRefused(
            f"{where}: BinType {bin_type} is not read; expected one of {', '.join(BIN_WIDTHS)}"
        )
    # Hexadecimal digits are the same number in either case ('ff' is bin FF): kept upper-case.
    hexa = bin_type == "HexaDecimal"
    null_bin = bcm.get("NullBin", "")
    null_bin = null_bin.upper() if hexa else null_bin
    bins: dict[str, BinDefinition] = {}
    for d in _children(_child(bcm, "BinDefinitions", where), "BinDefinition"):
        code = d.get("BinCode", "")
        if len(code) != width:
            raise MapRefused(
                f"{where}: BinCode {code!r} of a BinDefinition is not "
                f"{counted(width, 'character')} long, as BinType {bin_type} needs"
            )
        if hexa:
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", code):
                raise MapRefused(
                    f"{where}: BinCode {code!r} of a BinDefinition is not 2 hexadecimal "
                    "digits, as BinType HexaDecimal needs"
                )
            code = code.upper()
        elif not (code.isascii() and code.isprintable() and not code.isspace()):
            # a row's spaces at either end are not kept (its text is stripped): no space bin
            raise MapRefused(
                f"{where}: BinCode {code!r} of a BinDefinition is not a printable ASCII "
                "character other than a space, as BinType Ascii needs"
            )
        quality = _attr(d, "BinQuality", f"{where} bin {code!r}")
        if quality not in ("Pass", "Fail", "Null", "Unknown"):
            raise MapRefused(
                f"{where}: bin {code!r} has BinQuality {quality}; expected Pass, Fail, Null "
                "or Unknown"
            )
        if code in bins:
            raise MapRefused(f"{where}: bin {code!r} is defined twice")
        declared = d.get("BinCount")
        bins[code] = BinDefinition(
            code,
            quality,
            d.get("BinDescription"),
            None if declared is None else _count(d, "BinCount", f"{where} bin {code!r}", 0),
            d.get(f"{{{PKGLINE_NAMESPACE}}}Step"),
        )
    lines = [(line.text or "").strip() for line in _children(bcm, "BinCode")]
    if len(lines) != rows:
        raise MapRefused(
            f"{where}: {len(lines)} BinCode rows; its layout {lid} has {rows} rows (Y)"
        )
    cells: list[tuple[str, ...]] = []
    for n, line in enumerate(lines, 1):
        if len(line) != cols * width:
            raise MapRefused(
                f"{where}: BinCode row {n} has {len(line)} characters; its layout {lid} has "
                f"{cols} columns (X) of {counted(width, 'character')}"
            )
        row = tuple(line[i : i + width] for i in range(0, len(line), width))
        row = tuple(code.upper() for code in row) if hexa else row
        for c, code in enumerate(row, 1):
            if code not in bins and code != null_bin:
                raise MapRefused(
                    f"{where}: site {n}:{c} has bin {code!r}, which no BinDefinition defines "
                    f"(defined: {', '.join(bins)})"
                )
        cells.append(row)
    for b in bins.values():
        found = sum(row.count(b.code) for row in cells)
        if b.count is not None and b.count != found:
            raise MapRefused(
                f"{where}: bin {b.code!r} declares BinCount {b.count}; the map has "
                f"{counted(found, 'site')} in it (a map cut or edited: expected them to agree)"
            )
    return SubstrateMap(
        substrate_type=kind,
        substrate_id=sid,
        rows=rows,
        cols=cols,
        bins=bins,
        cells=tuple(cells),
        lot_id=lots.get(sid),
        map_name=overlay.get("MapName"),
        null_bin=null_bin,
    )


# -- importing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What a map does to a lot: the sites it rejects (with our codes), and what it left."""

    rejects: tuple[SiteRejectGiven, ...]
    already_rejected: tuple[SiteRef, ...]
    """Sites the map rejects that the lot had rejected already (they stay as they are)."""
    carriers: Mapping[str, str]
    """Substrate id in the map -> carrier of the lot it was applied to."""


def reject_code_of(b: BinDefinition, bin_codes: Mapping[str, str], where: str) -> str:
    """Our reject code for a failing bin: given (``--bin``), else its description when that
    is one of our codes (a map pkgline wrote)."""
    code = bin_codes.get(b.code) or (b.description or "").strip()
    if not REJECT_CODE_PATTERN.fullmatch(code):
        given = (
            f" (its description {b.description!r} is not a reject code)" if b.description else ""
        )
        raise MapRefused(
            f"{where}: failing bin {b.code!r} has no reject code{given}; give one with "
            f"--bin {b.code}=CODE (an upper-case word such as VOID)"
        )
    return code


def plan_import(
    lot_id: str,
    lot_carriers: Mapping[str, tuple[int, int]],
    maps: Sequence[SubstrateMap],
    rejected: Mapping[SiteRef, SiteReject],
    *,
    onto: str | None = None,
    bin_codes: Mapping[str, str] | None = None,
) -> ImportPlan:
    """The rejects an imported map makes in lot ``lot_id``, whose carriers are
    ``lot_carriers`` (id -> (rows, cols)) with ``rejected`` sites already.

    Each map's SubstrateId must be a carrier of the lot; ``onto`` applies a document of one
    map to that carrier instead (another lot's map, say). The layout must be the carrier's.
    Sites in a Fail bin are rejected with the bin's code; Pass, Null and Unknown sites are
    left as they are, as are sites the lot has rejected already (a reject is final)."""
    codes = dict(bin_codes or {})
    if not lot_carriers:
        raise MapRefused(
            f"lot {lot_id} has no carriers (merged into another lot, or scrapped): no map "
            "applies to it; expected a lot with carriers",
            lot_id=lot_id,
        )
    if onto is not None and len(maps) != 1:
        raise MapRefused(
            f"--carrier {onto}: the document holds {len(maps)} substrate maps; a carrier "
            "takes exactly one",
            lot_id=lot_id,
        )
    unused = set(codes) - {b for m in maps for b in m.bins}
    if unused:
        raise MapRefused(
            f"--bin names bins the map does not define: {', '.join(sorted(unused))}",
            lot_id=lot_id,
        )
    for name, code in sorted(codes.items()):
        if not REJECT_CODE_PATTERN.fullmatch(code):
            raise MapRefused(
                f"--bin {name}={code}: {code!r} is not a reject code; expected an upper-case "
                "word such as VOID",
                lot_id=lot_id,
            )
    passing = {b for m in maps for b, d in m.bins.items() if d.quality != "Fail"} - {
        b for m in maps for b, d in m.bins.items() if d.quality == "Fail"
    }
    if set(codes) & passing:
        raise MapRefused(
            f"--bin names bins that do not fail: {', '.join(sorted(set(codes) & passing))}; "
            "only a failing bin's sites are rejected, with its code",
            lot_id=lot_id,
        )
    out: list[SiteRejectGiven] = []
    already: list[SiteRef] = []
    applied: dict[str, str] = {}
    for m in maps:
        carrier = onto or m.substrate_id
        where = f"map of {m.substrate_id}"
        if carrier not in lot_carriers:
            raise MapRefused(
                f"{where}: {carrier} is not a carrier of lot {lot_id}; its carriers are "
                f"{', '.join(lot_carriers)} (--carrier C applies a map to carrier C)",
                lot_id=lot_id,
                allowed=lot_carriers,
            )
        if onto is None and m.lot_id and m.lot_id != lot_id:
            raise MapRefused(
                f"{where}: its Substrate's LotId is {m.lot_id}, not {lot_id}; expected a map of "
                f"lot {lot_id}'s carriers (--carrier C applies another lot's map to carrier C)",
                lot_id=lot_id,
            )
        if carrier in applied.values():
            raise MapRefused(f"{where}: carrier {carrier} is mapped twice", lot_id=lot_id)
        rows, cols = lot_carriers[carrier]
        if (m.rows, m.cols) != (rows, cols):
            raise MapRefused(
                f"{where}: its layout is {m.rows} rows x {m.cols} columns; carrier {carrier} "
                f"of lot {lot_id} is {rows} x {cols}",
                lot_id=lot_id,
            )
        applied[m.substrate_id] = carrier
        fail_codes = {
            b.code: reject_code_of(b, codes, where) for b in m.bins.values() if b.quality == "Fail"
        }
        for r, row in enumerate(m.cells, 1):
            for c, code in enumerate(row, 1):
                if code not in fail_codes:
                    continue
                site = SiteRef(carrier, r, c)
                if site in rejected:
                    already.append(site)
                else:
                    out.append(SiteRejectGiven(carrier, r, c, fail_codes[code]))
    return ImportPlan(tuple(out), tuple(already), applied)
