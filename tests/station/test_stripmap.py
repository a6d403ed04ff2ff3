"""The strip map as SVG, without a browser: one rect per site, coloured by state and code,
named in its title; the legend says every colour used."""

from __future__ import annotations

import re

from mes.domain.model import SCRAP_STEP, Carrier, SiteReject
from mes.domain.report import CarrierMap
from pkgline.station.stripmap import GOOD_COLOUR, code_colours, legend, strip_map_svg


def _map() -> CarrierMap:
    carrier = Carrier("L1-01", "L1", 1, 3, 4)
    rejects = (
        SiteReject("L1-01", 1, 2, "VOID", "MOLD", 3),
        SiteReject("L1-01", 3, 4, "CRACK", SCRAP_STEP, 4),
    )
    return CarrierMap(carrier, rejects)


def test_every_site_is_drawn_once_with_its_state_code_and_title() -> None:
    carrier_map = _map()
    colours = code_colours(r.code for r in carrier_map.rejects)
    svg = strip_map_svg(carrier_map, colours)
    sites = re.findall(r'<rect class="site"[^>]*>', svg)
    assert len(sites) == 12
    void = re.search(r'<rect class="site"[^>]*data-row="1" data-col="2"[^>]*>', svg)
    assert void is not None and f'fill="{colours["VOID"]}"' in void[0]
    assert 'data-state="rejected" data-code="VOID"' in void[0]
    assert "L1-01 row 1 col 2: rejected VOID at MOLD" in svg
    assert "L1-01 row 3 col 4: scrapped by hand (CRACK)" in svg
    good = re.search(r'<rect class="site"[^>]*data-row="2" data-col="1"[^>]*>', svg)
    assert good is not None and f'fill="{GOOD_COLOUR}"' in good[0]


def test_the_legend_names_good_each_code_and_hand_scrap_with_the_maps_colours() -> None:
    carrier_map = _map()
    entries = legend([carrier_map])
    colours = code_colours(["VOID", "CRACK"])
    assert [(e.label, e.colour) for e in entries[:3]] == [
        ("good", GOOD_COLOUR),
        ("CRACK", colours["CRACK"]),
        ("VOID", colours["VOID"]),
    ]
    assert entries[-1].label == "scrapped by hand" and entries[-1].hatched


def test_a_carrier_id_is_escaped_in_the_markup() -> None:
    carrier_map = CarrierMap(Carrier('<x">', "L", 1, 1, 1), ())
    svg = strip_map_svg(carrier_map, {})
    assert '<x">' not in svg and "&lt;x&quot;&gt;" in svg
