"""What an operator does with a lot's steps on its page, as ``pkgline lot`` does: the steps
run by hand (on no tool: a substrate prepared, a carrier loaded) tracked in and out, with the
recipe values (the flow's defaults, the claimed limits), the measured values and rejected
sites (on a real line no controller completes them: ``auto_manual_steps = false``); a lot
merged into another; a lot completed where its flow may end. Against a real server over
HTTP; each refusal is shown on the page and changes nothing."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path

import httpx

from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.domain.model import LotState
from pkgline.api.server import open_state
from tests.station.client import csrf, logged_in, lot_state, lot_version, message
from tests.station.conftest import Station
from tests.station.seed import OWNER, fast_passwords, migrate


def _start(client: httpx.Client, lot: str) -> None:
    form = client.get("/station/start", params={"flow": "fo-organic"}).text
    started = client.post(
        "/station/start",
        data={"csrf": csrf(form), "flow": "fo-organic", "lot": lot, "carriers": "2"},
    )
    assert started.status_code == 303, started.text


def _form(client: httpx.Client, lot: str, **fields: str | list[str]) -> dict[str, object]:
    page = client.get(f"/station/lots/{lot}").text
    return {"csrf": csrf(page), "lot_version": lot_version(page), **fields}


def test_a_manual_step_is_tracked_in_and_out_on_the_lot_page(station: Station) -> None:
    with logged_in(station, "olga") as client:
        _start(client, "H-1")
        page = html.unescape(client.get("/station/lots/H-1").text)
        form = re.search(r'id="track-in-SUBSTRATE_PREP">(.*?)</form>', page, re.S)
        assert form is not None, page
        assert 'name="value.cavity_method" maxlength="1024" value="injection_molding"' in form[1]
        assert "claimed: one of organic (002: 61, 64-68)" in form[1]
        assert 'id="track-out-' not in page

        wrong = _form(client, "H-1", step="SUBSTRATE_PREP", **{"value.substrate_material": "glass"})
        refused = client.post("/station/lots/H-1/track-in", data=wrong)
        assert refused.status_code == 422
        said = html.unescape(message(refused.text))
        assert "substrate_material" in said and "002: 61, 64-68" in said
        assert 'value="glass"' in refused.text  # what was typed stays in the field
        assert lot_state(client, "H-1") == "WAITING"

        done = client.post(
            "/station/lots/H-1/track-in", data=_form(client, "H-1", step="SUBSTRATE_PREP")
        )
        assert done.status_code == 303, done.text
        page = client.get(done.headers["location"]).text
        assert "The step was tracked in" in page and lot_state(client, "H-1") == "RUNNING"
        assert 'id="track-out-SUBSTRATE_PREP"' in page and 'id="track-in-' not in page

        bad = client.post(
            "/station/lots/H-1/track-out", data=_form(client, "H-1", rejects="H-1-01:1")
        )
        assert bad.status_code == 422
        assert "expected CARRIER:ROW:COL:CODE" in html.unescape(message(bad.text))
        outside = client.post(
            "/station/lots/H-1/track-out", data=_form(client, "H-1", rejects="H-1-01:9:9:VOID")
        )
        assert outside.status_code == 422 and "outside the carrier" in message(outside.text)
        assert lot_state(client, "H-1") == "RUNNING"

        out = client.post(
            "/station/lots/H-1/track-out", data=_form(client, "H-1", rejects="H-1-01:1:2:VOID")
        )
        assert out.status_code == 303, out.text
        page = client.get(out.headers["location"]).text
        assert "The step was tracked out." in page and lot_state(client, "H-1") == "WAITING"
        assert "31/32 good" in page  # the reject on carrier 1


def _limits_row(lot_page: str, value: str) -> str:
    """The claimed and spec limits the lot page gives ``value`` (measured) at its step."""
    rows = re.findall(
        rf'<tr data-value="{value}"><td>[^<]*</td><td>measured</td><td>([^<]*)</td>', lot_page
    )
    assert len(rows) == 1, lot_page
    return html.unescape(rows[0])


def _tile_lot(line_page: str, tool: str) -> str:
    """What the line page's tile of ``tool`` says of its lot, as text."""
    tile = re.search(rf'data-tool="{tool}".*?<p class="lot">(.*?)</p>', line_page, re.S)
    assert tile is not None, line_page
    return html.unescape(re.sub(r"<[^>]+>", "", tile[1])).strip()


async def _another_die_bonder(tool: str, db: str) -> None:
    """``tool``, a die bonder of another line qualified for no step, switched to manual."""
    async with open_state(db, passwords=fast_passwords()) as state:
        await state.services.equipment.acting_as(CONTROLLER).register(
            "line-2", [ToolRegistration(tool, "die_bonder", "127.0.0.1:1599", ())]
        )
        await state.services.equipment.acting_as(OWNER).set_dispatch(
            tool, DispatchMode.MANUAL, "tom", "engineering lot"
        )


async def _up(tool: str, db: str) -> None:
    async with open_state(db, passwords=fast_passwords()) as state:
        await state.services.equipment.acting_as(CONTROLLER).report(
            tool, ToolSnapshot(connected=True, e10="standby", process_state="READY")
        )


async def _dispatch(tool: str, mode: DispatchMode, db: str) -> None:
    async with open_state(db, passwords=fast_passwords()) as state:
        await state.services.equipment.acting_as(OWNER).set_dispatch(tool, mode, "tom", "done")


def test_a_tool_step_is_run_by_hand_on_a_tool_switched_to_manual(station: Station) -> None:
    """DA-1, the die bonder, is in manual (seeded so): DIE_ATTACH is the operator's there,
    with the interlocks of any track-in (it is in alarm, and DAF-7 on it is not thawed)."""
    with logged_in(station, "olga") as client:
        _start(client, "H-5")
        prep = client.post(
            "/station/lots/H-5/track-in", data=_form(client, "H-5", step="SUBSTRATE_PREP")
        )
        assert prep.status_code == 303, prep.text
        out = client.post("/station/lots/H-5/track-out", data=_form(client, "H-5"))
        assert out.status_code == 303, out.text
        asyncio.run(_another_die_bonder("DA-2", station.db))  # in manual, not for DIE_ATTACH
        # the line says why nobody starts it: DA-1, the one die bonder for it, is in manual
        line = html.unescape(client.get("/station/").text)
        note = re.search(r'class="note manual-only"[^>]*data-step="DIE_ATTACH">(.*?)</p>', line)
        assert note is not None, line
        assert re.sub(r"<[^>]+>", "", note[1]) == (
            "every tool qualified for DIE_ATTACH is in manual (DA-1): no line controller "
            "starts these lots; track them in by hand on their pages"
        )
        page = client.get("/station/lots/H-5").text
        form = re.search(r'id="track-in-DIE_ATTACH">(.*?)</form>', page, re.S)
        assert form is not None, page
        # in manual and qualified for the step only (DA-2's track-in would only be refused)
        assert re.findall(r'<option value="([^"]+)"', form[1]) == ["DA-1"]
        # which says, before a value is typed, that DA-1 refuses track-ins now and why (DAF-7
        # on it thaws), as its tile on the line does
        picked = re.findall(r'<option value="[^"]+"[^>]*>([^<]+)</option>', form[1])
        assert picked == ["DA-1 (track-ins refused)"]
        why = re.search(r'class="refused-tool" data-tool="DA-1">([^<]*)<', form[1])
        assert why is not None, form[1]
        assert html.unescape(why[1]).startswith("DA-1 refuses track-ins now: die_attach_film DAF-7")
        assert "is thawing since" in why[1]
        data = _form(client, "H-5", step="DIE_ATTACH", tool="DA-1")
        down = client.post("/station/lots/H-5/track-in", data=data)
        assert down.status_code == 409
        assert "DA-1 is unscheduled_down" in html.unescape(message(down.text))  # its alarm
        asyncio.run(_up("DA-1", station.db))  # the alarm cleared: its controller reports it
        frozen = client.post("/station/lots/H-5/track-in", data=_form(client, "H-5", **data))
        assert frozen.status_code == 409
        assert "DAF-7" in html.unescape(message(frozen.text))
        assert lot_state(client, "H-5") == "WAITING"
        tool_page = client.get("/station/tools/DA-1").text
        unloaded = client.post(
            "/station/tools/DA-1/unload",
            data={"csrf": csrf(tool_page), "material": "DAF-7", "reason": "not thawed yet"},
        )
        assert unloaded.status_code == 303, unloaded.text
        done = client.post("/station/lots/H-5/track-in", data=_form(client, "H-5", **data))
        assert done.status_code == 303, done.text
        page = client.get("/station/lots/H-5").text
        assert lot_state(client, "H-5") == "RUNNING" and "on DA-1" in page
        assert 'id="track-out-DIE_ATTACH"' in page  # tracked in by hand: the operator's
        assert "on DA-1 (by hand)" in page
        # another lot's picker says DA-1 is taken (its track-in there would be refused)
        _start(client, "H-7")
        for action in ("track-in", "track-out"):
            moved = client.post(
                f"/station/lots/H-7/{action}", data=_form(client, "H-7", step="SUBSTRATE_PREP")
            )
            assert moved.status_code == 303, moved.text
        other = client.get("/station/lots/H-7").text
        picker = re.search(r'id="track-in-DIE_ATTACH">(.*?)</form>', other, re.S)
        assert picker is not None, other
        assert re.findall(r'<option value="[^"]+"[^>]*>([^<]+)</option>', picker[1]) == [
            "DA-1 (running H-5)"
        ]
        # the spec limits of what the track-out measures, in words: an upper one alone is
        # no target (it read "spec 15.0")
        assert _limits_row(page, "xy_offset_um") == (
            "spec at most 15.0 um, target 0.0 um (line practice: die placement)"
        )
        assert _limits_row(page, "bond_line_thickness_um") == (
            "spec 10.0 to 40.0 um, target 25.0 um (line practice: die attach film)"
        )
        # and beside the track-out's field, where the value is typed
        form = re.search(r'id="track-out-DIE_ATTACH">(.*?)</form>', html.unescape(page), re.S)
        assert form is not None, page
        assert (
            "spec at most 15.0 um, target 0.0 um (line practice: die placement) (past it, the "
            "lot is held)"
        ) in form[1]
        # DA-1 runs no job for it and reports no lot: its tile and page still say it is taken
        assert _tile_lot(client.get("/station/").text, "DA-1") == "H-5 (by hand)"
        tool_page = client.get("/station/tools/DA-1").text
        facts = re.search(r'id="tool-facts".*?<dt>lot</dt><dd>(.*?)</dd>', tool_page, re.S)
        assert facts is not None, tool_page
        assert re.sub(r"<[^>]+>", "", facts[1]) == "H-5 (tracked in by hand)"
        assert "DIE_ATTACH of H-5" in tool_page and "no lot runs on the tool" not in tool_page
        asyncio.run(_dispatch("DA-1", DispatchMode.AUTO, station.db))
        page = client.get("/station/lots/H-5").text  # tracked in by hand: still the operator's
        assert 'id="track-out-DIE_ATTACH"' in page
        # a measured value past its spec limit (15 um): tracked out, and the lot held
        past = _form(client, "H-5", **{"value.xy_offset_um": "20"})
        finished = client.post("/station/lots/H-5/track-out", data=past)
        assert finished.status_code == 303, finished.text
        page = html.unescape(client.get(finished.headers["location"]).text)
        assert lot_state(client, "H-5") == "HOLD"
        notice = re.search(r'id="notice">([^<]*)<', page)
        assert notice is not None, page
        assert notice[1] == (
            "The step was tracked out, and the lot was put on hold (its hold says why)."
        )
        assert "xy_offset_um 20 um is outside its upper spec limit 15 um" in page


def test_a_set_point_outside_its_window_is_refused_on_its_field(station: Station) -> None:
    """The track-in form shows each recipe value's set-point window beside its field; a value
    outside it is refused (the lot tracker's InvalidInput, ``values.NAME``) on that field, as
    typed, and the lot still waits. DIE_ATTACH's form is there while DA-1 is in manual."""
    asyncio.run(_dispatch("DA-1", DispatchMode.MANUAL, station.db))
    with logged_in(station, "olga") as client:
        _start(client, "H-8")
        for action in ("track-in", "track-out"):
            moved = client.post(
                f"/station/lots/H-8/{action}", data=_form(client, "H-8", step="SUBSTRATE_PREP")
            )
            assert moved.status_code == 303, moved.text
        page = html.unescape(client.get("/station/lots/H-8").text)
        form = re.search(r'id="track-in-DIE_ATTACH">(.*?)</form>', page, re.S)
        assert form is not None, page
        assert (
            "window 100 to 160 degC, target 130 degC (line practice: die attach film tack "
            "temperature) (outside it, the track-in is refused)"
        ) in form[1]
        hot = _form(client, "H-8", step="DIE_ATTACH", **{"value.bond_temperature_c": "300"})
        refused = client.post("/station/lots/H-8/track-in", data=hot)
        assert refused.status_code == 422, refused.text
        said = html.unescape(message(refused.text))
        assert "bond_temperature_c 300 degC is outside its set-point window 100 to 160 degC" in said
        assert "expected bond_temperature_c from 100 to 160 degC (default 130 degC)" in said
        field = re.search(r'<input id="track-in-DIE_ATTACH-bond_temperature_c"[^>]*>', refused.text)
        assert field is not None, refused.text
        assert 'aria-invalid="true"' in field[0] and 'value="300"' in field[0]
        assert lot_state(client, "H-8") == "WAITING"


async def _dispatched(lot: str, tool: str, db: str) -> None:
    """``lot`` tracked in at DIE_ATTACH on ``tool`` as the tool's line controller does (the
    film thawing on DA-1, which would refuse it, taken off first if it is still there)."""
    async with open_state(db, passwords=fast_passwords()) as state:
        materials = state.services.materials.acting_as(OWNER)
        if (await materials.show("DAF-7")).material.tool_id is not None:
            await materials.unload("DAF-7", "tom", "not thawed yet")
        await state.services.lots.acting_as(CONTROLLER).track_in(
            cmd.TrackIn(lot, "DIE_ATTACH", "line-1", tool, {}, dispatched=True)
        )


def test_a_step_its_line_controller_tracked_in_is_not_tracked_out_on_the_page(
    station: Station,
) -> None:
    """The controller tracks its step out with the tool's results, whatever the tool's mode
    (DA-1 is in manual, seeded so): the page offers no track-out, says whose the step is and
    how to take the lot off the tool; a track-out posted anyway is refused, nothing changed."""
    with logged_in(station, "olga") as client:
        _start(client, "H-6")
        for action in ("track-in", "track-out"):
            done = client.post(
                f"/station/lots/H-6/{action}", data=_form(client, "H-6", step="SUBSTRATE_PREP")
            )
            assert done.status_code == 303, done.text
        asyncio.run(_dispatched("H-6", "DA-1", station.db))
        page = html.unescape(client.get("/station/lots/H-6").text)
        assert "on DA-1 (its line controller's)" in page
        assert 'id="track-out-' not in page
        note = re.search(r'id="controller-step">([^<]*)<', page)
        assert note is not None, page
        assert note[1] == (
            "The line controller of DA-1 (line-1) tracked DIE_ATTACH in and tracks it out "
            "with the tool's results. To take the lot off the tool, abort the step (the lot "
            "waits at DIE_ATTACH again, the tool's job is aborted) or hold the lot."
        )
        assert 'id="abort-form"' in page and 'id="hold-form"' in page
        version = lot_version(page)
        refused = client.post(
            "/station/lots/H-6/track-out", data=_form(client, "H-6", step="DIE_ATTACH")
        )
        assert refused.status_code == 409
        assert "tracked in by its line controller (line-1)" in html.unescape(message(refused.text))
        after = client.get("/station/lots/H-6").text
        assert lot_state(client, "H-6") == "RUNNING" and lot_version(after) == version


def test_a_stale_page_tracks_nothing_in(station: Station) -> None:
    with logged_in(station, "olga") as client:
        _start(client, "H-2")
        stale = _form(client, "H-2", step="SUBSTRATE_PREP")
        client.post("/station/lots/H-2/hold", data={"csrf": stale["csrf"], "reason": "check"})
        again = client.post("/station/lots/H-2/track-in", data=stale)
        assert again.status_code == 409 and "changed since" in message(again.text)
        assert lot_state(client, "H-2") == "HOLD"


def test_a_waiting_lot_is_merged_into_another_at_the_same_position(station: Station) -> None:
    with logged_in(station, "olga") as client:
        for lot in ("H-3", "H-4"):
            _start(client, lot)
        unknown = client.post("/station/lots/H-3/merge", data=_form(client, "H-3", into="NOPE"))
        assert unknown.status_code == 404 and "NOPE" in message(unknown.text)
        assert 'value="NOPE"' in unknown.text  # the merge form keeps what was typed
        done = client.post(
            "/station/lots/H-3/merge", data=_form(client, "H-3", into="H-4", reason="one run")
        )
        assert done.status_code == 303, done.text
        page = client.get(done.headers["location"]).text
        assert "The lot was merged into" in page and '/station/lots/H-4">H-4</a>' in page
        assert lot_state(client, "H-3") == "MERGED"
        target = client.get("/station/lots/H-4").text
        assert 'data-carrier="H-3-01"' in target
        assert 'id="lot-family">merged in <a href="/station/lots/H-3">H-3</a></dd>' in target
        assert 'id="lot-family">merged into <a href="/station/lots/H-4">H-4</a></dd>' in page


async def _at_its_optional_steps(db: str) -> None:
    """M-1, an fc-heatsink-muf lot, through every step but the optional ones."""
    async with open_state(db, passwords=fast_passwords()) as state:
        lots = state.services.lots.acting_as(OWNER)
        await lots.start(cmd.StartLot("M-1", "fc-heatsink-muf", "olga", carriers=1))
        while not (await lots.report("M-1")).may_complete:
            step = lots.next_in_order(await lots.get("M-1"))[0]
            await lots.track_in(cmd.TrackIn("M-1", step, "olga", None, {}))
            await lots.track_out(cmd.TrackOut("M-1", "olga", {}, ()))


def test_a_lot_whose_flow_may_end_is_completed_from_its_page(station: Station) -> None:
    asyncio.run(_at_its_optional_steps(station.db))
    with logged_in(station, "olga") as client:
        assert 'id="complete-form"' not in client.get("/station/lots/H-1").text
        page = client.get("/station/lots/M-1").text
        assert 'id="complete-form"' in page and "(may complete)" in page
        done = client.post("/station/lots/M-1/complete", data=_form(client, "M-1", reason="done"))
        assert done.status_code == 303, done.text
        assert "The lot was completed." in client.get(done.headers["location"]).text
        assert lot_state(client, "M-1") == "COMPLETED"


async def test_the_toolstools_in_manual_are_found_past_the_first_page_of_their_class(
    tmp_path: Path,
) -> None:
    """A class of 150 tools (a page holds 100): the one in manual, far down, is offered."""
    from pkgline.station.views import tools_in_manual

    db = f"sqlite:///{tmp_path / 'many.db'}"
    await migrate(db)
    async with open_state(db, passwords=fast_passwords()) as state:
        equipment = state.services.equipment.acting_as(CONTROLLER)
        await equipment.register(
            "line-9",
            [
                ToolRegistration(f"DB-{n:03}", "die_bonder", f"127.0.0.1:{2000 + n}", ())
                for n in range(150)
            ],
        )
        owner = state.services.equipment.acting_as(OWNER)
        await owner.set_dispatch("DB-140", DispatchMode.MANUAL, "eng", "engineering lot")
        assert await tools_in_manual(owner, "die_bonder") == ("DB-140",)


def test_numbers_in_a_form_are_read_as_ascii_digits_only(station: Station) -> None:
    """str.isdigit() is true of a superscript two, which int() refuses: each of these was a
    500 before; a form now says what it expected and nothing changes."""
    with logged_in(station, "olga") as client:
        form = client.get("/station/start", params={"flow": "fo-organic"}).text
        for carriers in ("--3", "\u00b2", "\u0663"):
            refused = client.post(
                "/station/start",
                data={"csrf": csrf(form), "flow": "fo-organic", "lot": "D-1", "carriers": carriers},
            )
            assert refused.status_code == 422, refused.text
            assert "expected a whole number from 1" in html.unescape(refused.text)
        assert client.get("/station/lots/D-1").status_code == 404

        _start(client, "D-2")
        version = _form(client, "D-2", step="SUBSTRATE_PREP", lot_version="\u00b2")
        refused = client.post("/station/lots/D-2/track-in", data=version)
        assert refused.status_code == 422, refused.text
        assert "lot_version: expected the version" in html.unescape(message(refused.text))
        assert lot_state(client, "D-2") == "WAITING"
        del version["lot_version"]  # a form that says no version is checked all the same
        refused = client.post("/station/lots/D-2/track-in", data=version)
        assert refused.status_code == 422, refused.text
        assert lot_state(client, "D-2") == "WAITING"

        done = client.post(
            "/station/lots/D-2/track-in", data=_form(client, "D-2", step="SUBSTRATE_PREP")
        )
        assert done.status_code == 303, done.text
        site = _form(client, "D-2", rejects="D-2-01:\u00b2:1:VOID")
        refused = client.post("/station/lots/D-2/track-out", data=site)
        assert refused.status_code == 422, refused.text
        assert "with whole numbers" in html.unescape(message(refused.text))
        assert lot_state(client, "D-2") == "RUNNING"


def test_a_track_in_or_out_that_put_the_lot_on_hold_is_not_said_to_have_moved_it() -> None:
    """A track-in past a queue time holds the lot instead: the notice does not say it runs
    the step (the track-out past a spec limit is shown on a page above)."""
    from pkgline.station.lot_pages import NOTICES, done_as

    assert NOTICES[done_as("track-in", LotState.HOLD)] == (
        "The step was not tracked in: the lot was put on hold instead (its hold says why)."
    )
    assert done_as("track-in", LotState.RUNNING) == "track-in"
    assert done_as("track-out", LotState.WAITING) == "track-out"
    assert done_as("hold", LotState.HOLD) == "hold"
