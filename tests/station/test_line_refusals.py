"""The station's line page shows the line controller's refused track-ins under the queue,
as ``line status`` does: the lot, the tool, since when and the interlock's own message, for
the lots still waiting for the step refused only (a refusal of a held lot, or of a step the
lot is past, is not shown)."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mes.domain.authority import CONTROLLER
from mes.domain.equipment import TrackInRefusal
from pkgline.api.auth import ApiState
from tests.station.client import logged_in
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER, _running_controller

SINCE = datetime(2026, 12, 7, 3, 4, 5, tzinfo=UTC)
WHY = (
    "track-in of lot S-1 at {step} on DA-1 refused: adhesive ADH-9 expired; "
    "expected a material lot within its expiry"
)


async def _prepare(state: ApiState) -> None:
    lots = state.services.lots.acting_as(OWNER)
    step = lots.next_in_order(await lots.get("S-1"))[0]
    record = _running_controller()
    refusals = (
        TrackInRefusal("DA-1", "S-1", step, "material_expired", WHY.format(step=step), SINCE),
        # S-1 is past this step, S-3 held: neither is kept off a tool by these any more
        TrackInRefusal("PREP-1", "S-1", "SUBSTRATE_PREP", "durable_life", "stale one", SINCE),
        TrackInRefusal("PREP-1", "S-3", "SUBSTRATE_PREP", "durable_life", "held one", SINCE),
    )
    equipment = state.services.equipment.acting_as(CONTROLLER)
    await equipment.heartbeat(replace(record, refusals=refusals))


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    where: Path = tmp_path_factory.mktemp("station")
    with running_station(where, prepare=_prepare) as running:
        yield running


def test_the_line_page_shows_why_a_waiting_lot_is_not_started(station: Station) -> None:
    with logged_in(station, "olga") as client:
        page = client.get("/station/")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert 'data-lot="S-1" data-tool="DA-1"' in text, text
    assert "not started on" in text
    assert '<time datetime="2026-12-07T03:04:05+00:00">2026-12-07 03:04:05 UTC</time>' in text
    assert "adhesive ADH-9 expired; expected a material lot within its expiry" in text
    assert "stale one" not in text and "held one" not in text


def test_the_lot_page_of_a_waiting_lot_says_why_it_is_not_started(station: Station) -> None:
    """The lot page says so too, as ``lot show`` does: the refusals of the lot at its next
    steps (not the stale one at a step it is past); a held lot's page shows none."""
    with logged_in(station, "olga") as client:
        page = client.get("/station/lots/S-1")
        held = client.get("/station/lots/S-3")
    assert page.status_code == 200
    text = html.unescape(page.text)
    shown = text[text.index('id="lot-refused"') :]
    shown = shown[: shown.index("</dd>")]
    assert shown.count('class="refused"') == 1, shown
    assert 'data-tool="DA-1"' in shown and "adhesive ADH-9 expired" in shown
    assert "2026-12-07 03:04:05 UTC" in shown
    assert "stale one" not in text
    assert 'id="lot-refused"' not in held.text and "held one" not in held.text
