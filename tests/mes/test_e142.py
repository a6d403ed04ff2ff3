"""SEMI E142 maps: every export is valid against the schema pkgline ships, a map read back
keeps every site, upstream maps are imported by their mapped bins, and a map that does not
parse or does not fit is refused saying what differed, changing nothing."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mes.domain import commands as cmd
from mes.domain.authority import Principal
from mes.domain.model import SiteRef, SiteReject
from mes.domain.signatures import SignatureGiven, SignatureRequired
from mes.maps import e142
from mes.maps.service import export_lot_maps, import_lot_map
from mes.service import LotService

SCHEMA = etree.XMLSchema(etree.fromstring(e142.schema_text().encode()))


def valid(xml: str) -> None:
    document = etree.fromstring(xml.encode())
    assert SCHEMA.validate(document), SCHEMA.error_log


def hand_written(
    *,
    substrate: str = "L2-01",
    rows: int = 2,
    cols: int = 3,
    lines: tuple[str, ...] = ("P.F", "PXP"),
    origin: str = "UpperLeft",
    axes: str = "DownRight",
    bin_type: str = "Ascii",
    lot: str | None = None,
    fail_count: str | None = None,
    layouts: int = 1,
) -> str:
    """An upstream inspection's map, not written by pkgline: its own bins and descriptions
    (``lot``: its Substrate's LotId; ``fail_count``: the F bin's BinCount; ``layouts``: how
    many times its Layout is written, the others 9 x 9)."""
    body = "".join(f"<BinCode>{line}</BinCode>" for line in lines)
    lot_id = f"<LotId>{lot}</LotId>" if lot is not None else ""
    count = f' BinCount="{fail_count}"' if fail_count is not None else ""
    other = '<Layout LayoutId="Strip"><Dimension X="9" Y="9"/></Layout>' * (layouts - 1)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<MapData xmlns="urn:semi-org:xsd.E142-1.V1005.SubstrateMap">
  <Layouts><Layout LayoutId="Strip"><Dimension X="{cols}" Y="{rows}"/></Layout>{other}</Layouts>
  <Substrates><Substrate SubstrateType="Strip" SubstrateId="{substrate}">{lot_id}</Substrate>
  </Substrates>
  <SubstrateMaps>
    <SubstrateMap SubstrateType="Strip" SubstrateId="{substrate}" LayoutSpecifier="Strip"
        OriginLocation="{origin}" AxisDirection="{axes}">
      <Overlay MapName="AOI-7">
        <BinCodeMap BinType="{bin_type}" NullBin=".">
          <BinDefinitions>
            <BinDefinition BinCode="P" BinQuality="Pass" BinDescription="ok"/>
            <BinDefinition BinCode="F" BinQuality="Fail" BinDescription="VOID"{count}/>
            <BinDefinition BinCode="X" BinQuality="Fail" BinDescription="foreign material"/>
          </BinDefinitions>
          {body}
        </BinCodeMap>
      </Overlay>
    </SubstrateMap>
  </SubstrateMaps>
</MapData>"""


# -- the codec alone ---------------------------------------------------------------------------


reject_codes = st.sampled_from(["VOID", "CRACK", "MISSING_BALL", "WIRE_SWEEP", "SCRAP"])
steps = st.sampled_from(["DIE_ATTACH", "WIRE_BOND", "MOLD", "SCRAP"])


@st.composite
def carriers(draw: st.DrawFn) -> list[e142.CarrierSites]:
    rows = draw(st.integers(1, 12))
    cols = draw(st.integers(1, 12))
    out = []
    for n in range(draw(st.integers(1, 3))):
        cid = f"L-{n + 1:02d}"
        sites = draw(
            st.sets(st.tuples(st.integers(1, rows), st.integers(1, cols)), max_size=rows * cols)
        )
        rejects = [
            SiteReject(cid, r, c, draw(reject_codes), draw(steps), 0) for r, c in sorted(sites)
        ]
        out.append(e142.CarrierSites(cid, rows, cols, rejects))
    return out


def _state(carrier: e142.CarrierSites) -> dict[tuple[int, int], tuple[str, str]]:
    return {(r.row, r.col): (r.code, r.step) for r in carrier.rejects}


@settings(max_examples=60, deadline=None)
@given(carriers(), st.sampled_from(["stiffener-bga", "fo-metal"]))
def test_every_export_is_valid_and_reads_back_site_for_site(
    lot: list[e142.CarrierSites], flow: str
) -> None:
    xml = e142.export_maps("L", flow, lot)
    valid(xml)
    maps = e142.decode(xml)
    assert [m.substrate_id for m in maps] == [c.carrier_id for c in lot]
    for carrier, m in zip(lot, maps, strict=True):
        assert m.substrate_type == ("Panel" if flow.startswith("fo-") else "Strip")
        assert (m.rows, m.cols) == (carrier.rows, carrier.cols)
        read = {
            (r, c): (m.bins[code].description, m.bins[code].step)
            for r, row in enumerate(m.cells, 1)
            for c, code in enumerate(row, 1)
            if m.bins[code].quality == "Fail"
        }
        assert read == _state(carrier)
        plan = e142.plan_import("L", {carrier.carrier_id: (m.rows, m.cols)}, [m], {})
        assert {(g.row, g.col): g.code for g in plan.rejects} == {
            k: v[0] for k, v in _state(carrier).items()
        }


def test_a_hand_written_map_is_read_with_its_bins_mapped_to_reject_codes() -> None:
    (m,) = e142.decode(hand_written())
    plan = e142.plan_import("L2", {"L2-01": (2, 3)}, [m], {}, bin_codes={"X": "PARTICLE"})
    assert {(g.carrier, g.row, g.col, g.code) for g in plan.rejects} == {
        ("L2-01", 1, 3, "VOID"),
        ("L2-01", 2, 2, "PARTICLE"),
    }


def hexadecimal(rows: tuple[str, ...], fail_bin: str = "FF") -> str:
    """An upstream map with two hexadecimal digits a site: bin 01 passes, ``fail_bin``
    fails (VOID), the NullBin is 00."""
    body = "".join(f"<BinCode>{line}</BinCode>" for line in rows)
    return f"""<MapData xmlns="urn:semi-org:xsd.E142-1.V1005.SubstrateMap">
  <Layouts><Layout LayoutId="Strip"><Dimension X="3" Y="2"/></Layout></Layouts>
  <SubstrateMaps>
    <SubstrateMap SubstrateType="Strip" SubstrateId="L2-01" LayoutSpecifier="Strip"
        OriginLocation="UpperLeft" AxisDirection="DownRight">
      <Overlay><BinCodeMap BinType="HexaDecimal" NullBin="00">
        <BinDefinitions>
          <BinDefinition BinCode="01" BinQuality="Pass"/>
          <BinDefinition BinCode="{fail_bin}" BinQuality="Fail" BinDescription="VOID"/>
        </BinDefinitions>
        {body}
      </BinCodeMap></Overlay>
    </SubstrateMap>
  </SubstrateMaps>
</MapData>"""


@pytest.mark.parametrize(
    ("fail_bin", "rows"),
    [("FF", ("01FF01", "0101ff")), ("fF", ("01ff01", "0101FF")), ("Ab", ("01AB01", "0101ab"))],
)
def test_hexadecimal_bins_are_read_in_either_case(fail_bin: str, rows: tuple[str, ...]) -> None:
    """Hexadecimal digits are one number in either case: a map whose rows write 'ff' for the
    bin its BinDefinition writes 'FF' was refused ('site 2:3 has bin 'ff', which no
    BinDefinition defines (defined: 01, FF)')."""
    (m,) = e142.decode(hexadecimal(rows, fail_bin))
    plan = e142.plan_import("L2", {"L2-01": (2, 3)}, [m], {})
    assert {(g.row, g.col, g.code) for g in plan.rejects} == {(1, 2, "VOID"), (2, 3, "VOID")}


def test_a_hexadecimal_bin_that_is_not_two_hex_digits_is_refused() -> None:
    with pytest.raises(e142.MapRefused, match=r"BinCode 'ZZ' of a BinDefinition is not 2 hex"):
        e142.decode(hexadecimal(("01ZZ01", "010101"), "ZZ"))


@pytest.mark.parametrize("code", ["é", " ", "\u00a0"])
def test_an_ascii_bin_that_is_not_a_printable_ascii_character_is_refused(code: str) -> None:
    """BinType Ascii: one printable ASCII character a site. 'é' was taken as a bin, and a
    space bin gave 'BinCode row 1 has 2 characters' (a row's text is stripped)."""
    text = hand_written(lines=("P.F", f"P{code}P")).replace('BinCode="X"', f'BinCode="{code}"')
    with pytest.raises(e142.MapRefused, match="is not a printable ASCII character other than"):
        e142.decode(text)


def test_a_failing_bin_without_a_reject_code_is_refused_naming_the_bin() -> None:
    (m,) = e142.decode(hand_written())
    with pytest.raises(e142.MapRefused, match=r"failing bin 'X' has no reject code.*--bin X="):
        e142.plan_import("L2", {"L2-01": (2, 3)}, [m], {})


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"X": "lower"}, "--bin X=lower: 'lower' is not a reject code; expected an upper-case"),
        ({"X": ""}, "--bin X=: '' is not a reject code"),
        ({"X": "PARTICLE", "P": "VOID"}, "--bin names bins that do not fail: P"),
    ],
)
def test_a_bin_code_given_that_cannot_be_used_is_refused_naming_it(
    given: dict[str, str], says: str
) -> None:
    (m,) = e142.decode(hand_written())
    with pytest.raises(e142.MapRefused, match=re.escape(says)):
        e142.plan_import("L2", {"L2-01": (2, 3)}, [m], {}, bin_codes=given)


def test_sites_rejected_already_stay_as_they_are() -> None:
    (m,) = e142.decode(hand_written())
    before = {SiteRef("L2-01", 1, 3): SiteReject("L2-01", 1, 3, "CRACK", "MOLD", 3)}
    plan = e142.plan_import("L2", {"L2-01": (2, 3)}, [m], before, bin_codes={"X": "PARTICLE"})
    assert [(g.row, g.col) for g in plan.rejects] == [(2, 2)]
    assert plan.already_rejected == (SiteRef("L2-01", 1, 3),)


@pytest.mark.parametrize(
    ("document", "carriers_of_lot", "said"),
    [
        ("not xml at all <", {"L2-01": (2, 3)}, "not well-formed XML"),
        ("<Other/>", {"L2-01": (2, 3)}, "root is 'Other': expected MapData"),
        (hand_written(substrate="OTHER-01"), {"L2-01": (2, 3)}, "OTHER-01 is not a carrier"),
        (hand_written(), {"L2-01": (3, 3)}, "layout is 2 rows x 3 columns; carrier L2-01 .* 3 x 3"),
        (hand_written(lines=("P.F",)), {"L2-01": (2, 3)}, "1 BinCode rows; .* has 2 rows"),
        (hand_written(lines=("P.F", "PX")), {"L2-01": (2, 3)}, "row 2 has 2 characters"),
        (hand_written(lines=("P.F", "PZP")), {"L2-01": (2, 3)}, "site 2:2 has bin 'Z'"),
        (hand_written(origin="LowerLeft"), {"L2-01": (2, 3)}, "OriginLocation is LowerLeft"),
        (hand_written(bin_type="Decimal"), {"L2-01": (2, 3)}, "BinType Decimal is not read"),
        # found by the probe: each was taken
        (hand_written(lot="L7"), {"L2-01": (2, 3)}, "LotId is L7, not L2; expected a map of"),
        (hand_written(fail_count="5"), {"L2-01": (2, 3)}, "BinCount 5; the map has 1 site in"),
        (hand_written(fail_count="x"), {"L2-01": (2, 3)}, "BinCount='x' is not a whole number"),
        (hand_written(layouts=2), {"L2-01": (2, 3)}, "Layout Strip is defined twice"),
        (hand_written(), {}, "lot L2 has no carriers"),
    ],
)
def test_a_malformed_or_mismatched_map_is_refused_saying_what_differed(
    document: str, carriers_of_lot: Mapping[str, tuple[int, int]], said: str
) -> None:
    def read_and_plan() -> None:
        maps = e142.decode(document)
        e142.plan_import("L2", carriers_of_lot, maps, {}, bin_codes={"X": "PARTICLE"})

    with pytest.raises(e142.MapRefused, match=said):
        read_and_plan()


def test_entities_and_external_references_are_refused_unread() -> None:
    """No XXE, no entity expansion: a DTD is refused before anything is resolved."""
    xxe = (
        '<?xml version="1.0"?><!DOCTYPE MapData [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<MapData>&x;</MapData>"
    )
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE MapData [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><MapData>&b;</MapData>'
    )
    for document in (xxe, bomb):
        with pytest.raises(e142.MapRefused, match="DTDForbidden"):
            e142.decode(document)


# -- through the lot service, on every store --------------------------------------------------


async def _lot(service: LotService, lot_id: str, carriers: int = 2) -> None:
    await service.start(
        cmd.StartLot(lot_id, "stiffener-bga", "op1", carriers=carriers, site_rows=3, site_cols=4)
    )


async def test_a_lot_round_trips_through_e142_into_another_lot(service: LotService) -> None:
    await _lot(service, "A")
    await service.track_in(cmd.TrackIn("A", "SUBSTRATE_LOAD", "op1"))
    rejects = (cmd.SiteRejectGiven("1", 1, 2, "VOID"), cmd.SiteRejectGiven("2", 3, 4, "CRACK"))
    await service.track_out(cmd.TrackOut("A", "op1", rejects=rejects))
    await service.scrap_sites(
        cmd.ScrapSites("A", "op1", "chipped", (cmd.SiteRejectGiven("1", 2, 1, "CHIP"),))
    )
    await _lot(service, "B", carriers=1)
    exported = await export_lot_maps(service, "A", carrier="1")
    valid(exported.xml)
    done = await import_lot_map(service, "B", exported.xml, source="a.xml", user="op1", onto="B-01")
    assert done.outcome is not None and done.outcome.lot.good_sites == 10
    a = {
        (r.row, r.col, r.code) for r in await service.rejected_sites("A") if r.carrier_id == "A-01"
    }
    b = {(r.row, r.col, r.code) for r in await service.rejected_sites("B")}
    assert a == b == {(1, 2, "VOID"), (2, 1, "CHIP")}
    (entry,) = done.outcome.entries
    assert entry.data["e142_import"]["carriers"] == {"A-01": "B-01"}
    again = await import_lot_map(service, "B", exported.xml, source="a.xml", user="op1", onto="1")
    assert again.outcome is None and len(again.plan.already_rejected) == 2


def test_a_map_of_the_lot_itself_and_counts_that_agree_are_read() -> None:
    (m,) = e142.decode(hand_written(lot="L2", fail_count="1"))
    assert m.lot_id == "L2" and m.bins["F"].count == 1
    plan = e142.plan_import("L2", {"L2-01": (2, 3)}, [m], {}, bin_codes={"X": "PARTICLE"})
    assert len(plan.rejects) == 2


async def test_a_lot_with_no_carriers_has_no_map_to_export(service: LotService) -> None:
    """A merged lot's carriers went to the target: its export was an empty document, invalid
    against the schema, reported as written (found by the probe)."""
    await _lot(service, "A")
    await _lot(service, "B")
    await service.merge(cmd.MergeLots("A", "B", "op1"))
    with pytest.raises(e142.MapRefused, match="lot A is MERGED and has no carriers"):
        await export_lot_maps(service, "A")
    with pytest.raises(e142.MapRefused, match="lot A has no carriers"):
        await import_lot_map(service, "A", hand_written(), source="x", user="op1", onto="1")
    valid((await export_lot_maps(service, "B")).xml)


async def test_a_scrapped_lot_has_no_map_to_export(service: LotService) -> None:
    """A scrapped lot keeps its carriers on record, and its export said every site not
    rejected before was good: Pass, Pick="true", GoodDevices 12 for a lot of 0 good sites
    (found by the probe; docs/e142.md says a scrapped lot has none to export)."""
    await _lot(service, "A", carriers=1)
    await service.scrap(cmd.ScrapLot("A", "qa1", "dropped"))
    assert (await service.get("A")).good_sites == 0
    with pytest.raises(e142.MapRefused, match="lot A is SCRAPPED: every site was scrapped"):
        await export_lot_maps(service, "A")
    with pytest.raises(e142.MapRefused, match="lot A is SCRAPPED"):
        await export_lot_maps(service, "A", carrier="1")


async def test_a_scrapped_lots_carriers_have_no_good_site(service: LotService) -> None:
    """Found by the probe: `lot show` of a scrapped lot said "0 good of 12" for the lot and
    "carrier A-01 (3x4, 11 good)" below it; --json's carriers[].good_sites said 11 too."""
    await _lot(service, "A", carriers=1)
    await service.scrap_sites(
        cmd.ScrapSites("A", "op1", "chipped", (cmd.SiteRejectGiven("1", 2, 1, "CHIP"),))
    )
    assert [m.good_sites for m in (await service.report("A")).carriers] == [11]
    await service.scrap(cmd.ScrapLot("A", "qa1", "dropped"))
    report = await service.report("A")
    assert [m.good_sites for m in report.carriers] == [0]
    assert [len(m.rejects) for m in report.carriers] == [1]  # the rejects before stay


async def test_a_refused_import_changes_nothing(service: LotService) -> None:
    await _lot(service, "B", carriers=1)
    before = await service.report("B")
    for document, onto in (
        (hand_written(substrate="B-01"), None),  # 2 x 3, the carrier is 3 x 4
        (hand_written(substrate="B-09", rows=3, cols=4, lines=("PPPP",) * 3), None),
        ("<MapData", None),
    ):
        with pytest.raises(e142.MapRefused):
            await import_lot_map(service, "B", document, source="x", user="op1", onto=onto)
    after = await service.report("B")
    assert after.lot == before.lot and after.history == before.history


async def test_an_imported_map_is_a_scrap_of_sites_and_is_signed(service: LotService) -> None:
    await _lot(service, "A")
    await service.scrap_sites(
        cmd.ScrapSites("A", "op1", "chipped", (cmd.SiteRejectGiven("1", 2, 1, "CHIP"),))
    )
    await _lot(service, "B", carriers=1)
    exported = await export_lot_maps(service, "A", carrier="1")
    owner = service.acting_as(Principal.file_owner("alice", "Alice Liddell"))
    with pytest.raises(SignatureRequired, match="scrap of sites of lot B"):
        await import_lot_map(owner, "B", exported.xml, source="a.xml", user="alice", onto="1")
    assert await service.rejected_sites("B") == []
    signed = (SignatureGiven("alice", "approved scrap of sites: AOI map a.xml"),)
    done = await import_lot_map(
        owner, "B", exported.xml, source="a.xml", user="alice", onto="1", signatures=signed
    )
    assert done.outcome is not None
    [signature] = (await service.report("B")).signatures
    assert (signature.printed_name, signature.meaning) == (
        "Alice Liddell",
        "approved scrap of sites: AOI map a.xml",
    )
    assert signature.entry_hash == done.outcome.entries[0].hash
