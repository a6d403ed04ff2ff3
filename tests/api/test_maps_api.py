"""SEMI E142 maps through the server: ``pkgline lot map export | import`` as clients of a
running server give what direct mode gives; an import is signed with the password given
again; a map that is not XML (422), too large (413) or from someone without the role (403,
recorded) changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mes.domain import commands as cmd
from mes.domain.authority import Role
from mes.domain.identity import EventKind
from mes.domain.signatures import SignaturePolicy
from tests.api.conftest import ACCOUNT, ADMIN, RunningApi, cli, start_api
from tests.mes.test_e142 import hand_written

OWN = "own-Secret-22"


async def _lot_b(api: RunningApi) -> None:
    """Lot B: one strip of 2 x 3 sites."""
    start = cmd.StartLot(
        lot_id="B", flow="stiffener-bga", user="test-admin", carriers=1, site_rows=2, site_cols=3
    )
    await api.state.services.lots.start(start, by=ADMIN)


async def _version(api: RunningApi) -> tuple[int, int]:
    report = await api.state.services.lots.report("B", by=ADMIN)
    return report.lot.version, report.lot.good_sites


@pytest.mark.slow
async def test_map_commands_through_the_server_match_direct_mode(
    api: RunningApi, tmp_path: Path
) -> None:
    await _lot_b(api)
    await api.roles(Role.OPERATOR, Role.QUALITY)
    await api.state.identity.set_password(ADMIN, ACCOUNT, "set-by-the-admin")
    await api.state.identity.change_own_password(ACCOUNT, "set-by-the-admin", OWN)
    server = f"unix://{api.socket}"
    via, direct = ("--server", server), ("--db", api.db)
    upstream = tmp_path / "aoi.xml"
    upstream.write_text(hand_written(substrate="B-01"))
    broken = tmp_path / "broken.xml"
    broken.write_text("<MapData><Layouts>")
    before = await _version(api)

    bad = await cli("lot", "map", "import", "B", str(broken), "--json", *via, stdin=OWN + "\n")
    assert bad.returncode == 1, bad.stderr
    assert json.loads(bad.stdout)["error"] == "map_refused"  # 422
    assert "not well-formed" in json.loads(bad.stdout)["message"]
    unsigned = await cli("lot", "map", "import", "B", str(upstream), "--bin", "X=PARTICLE",
                         "--json", *via, stdin="")  # fmt: skip
    assert unsigned.returncode == 1
    assert json.loads(unsigned.stdout)["error"] == "signature_required"
    assert await _version(api) == before  # refused: nothing changed

    imported = await cli(
        "lot", "map", "import", "B", str(upstream), "--bin", "X=PARTICLE", "--json", *via,
        stdin=OWN + "\n",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert f"via server {server} as {ACCOUNT} (os_account)" in imported.stderr
    done = json.loads(imported.stdout)
    assert done["rejected"] == ["B-01:1:3:VOID", "B-01:2:2:PARTICLE"]
    assert (done["good_sites"], done["total_sites"]) == (4, 6)
    async with api.client() as client:
        shown = (await client.get("/lots/B")).json()
    [signature] = shown["signatures"]
    assert (signature["signer"], signature["method"]) == (ACCOUNT, "password")

    for shape in ((), ("--json",)):
        through = await cli("lot", "map", "export", "B", *shape, *via)
        local = await cli("lot", "map", "export", "B", *shape, *direct)
        assert through.returncode == local.returncode == 0, through.stderr + local.stderr
        assert through.stdout == local.stdout
        assert "via server" in through.stderr and "direct database" in local.stderr
    out = tmp_path / "b.xml"
    written = await cli("lot", "map", "export", "B", "--carrier", "1", "--out", str(out), *via)
    assert written.returncode == 0, written.stderr
    assert "1 carrier map (B-01) written to" in written.stdout
    assert out.read_text() == json.loads(local.stdout)["xml"]


@pytest.mark.slow
async def test_an_import_two_must_sign_takes_the_second_signer_from_the_cli(
    sqlite_url: str, tmp_path: Path
) -> None:
    """[signatures] two_signers = ["scrap_sites"]: an imported map is a scrap of sites, so
    --second-signer names the second person, whose password is read after the requester's."""
    two = SignaturePolicy.from_names(["scrap_sites"])
    async with start_api(sqlite_url, tmp_path / "api.sock", signatures=two) as api:
        await _lot_b(api)
        identity = api.state.identity
        await api.roles(Role.OPERATOR, Role.QUALITY)
        await identity.set_password(ADMIN, ACCOUNT, "set-by-the-admin")
        await identity.change_own_password(ACCOUNT, "set-by-the-admin", OWN)
        await identity.add_user(ADMIN, "qa2", "Quinn Two", [Role.QUALITY], password="set-by-ad-1")
        await identity.change_own_password("qa2", "set-by-ad-1", "qa2-Secret-33")
        upstream = tmp_path / "aoi.xml"
        upstream.write_text(hand_written(substrate="B-01"))
        imported = await cli(
            "lot", "map", "import", "B", str(upstream), "--bin", "X=PARTICLE", "--json",
            "--second-signer", "qa2", "--server", f"unix://{api.socket}",
            stdin=f"{OWN}\nqa2-Secret-33\n",
        )  # fmt: skip
        assert imported.returncode == 0, imported.stdout + imported.stderr
        async with api.client() as client:
            shown = (await client.get("/lots/B")).json()
        assert [s["signer"] for s in shown["signatures"]] == [ACCOUNT, "qa2"]


async def test_map_refusals_change_nothing(sqlite_url: str, tmp_path: Path) -> None:
    """An operator without the quality role is refused (403, recorded); a body past the
    server's limit is 413, an unknown field or a path in the source name 422."""
    async with start_api(sqlite_url, tmp_path / "api.sock", max_body_kb=16) as api:
        await _lot_b(api)
        before = await _version(api)
        xml = hand_written(substrate="B-01")
        async with api.client() as client:
            body = {"xml": xml, "source": "aoi.xml", "bins": {"X": "PARTICLE"}}
            refused = await client.post("/lots/B/maps/e142", json=body)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"] == "not_authorized"
            events = await api.state.identity.events(ADMIN)
            assert [(e.actor, e.action) for e in events if e.kind is EventKind.REFUSED][-1] == (
                ACCOUNT,
                "scrap_sites",
            )
            huge = {**body, "xml": xml + " " * 20_000}
            large = await client.post("/lots/B/maps/e142", json=huge)
            assert large.status_code == 413 and large.json()["error"] == "too_large"
            pathy = await client.post("/lots/B/maps/e142", json={**body, "source": "../a.xml"})
            assert pathy.status_code == 422 and pathy.json()["error"] == "invalid_request"
            extra = await client.post("/lots/B/maps/e142", json={**body, "user": "mallory"})
            assert extra.status_code == 422
            exported = await client.get("/lots/B/maps/e142", params={"carrier": "9"})
            assert exported.status_code == 422 and exported.json()["allowed"] == ["B-01"]
            unknown = await client.get("/lots/NOPE/maps/e142")
            assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_lot"
        assert await _version(api) == before


async def test_an_import_answers_the_lots_version_as_an_etag_and_takes_if_match(
    api: RunningApi,
) -> None:
    """A map import is an operation on a lot like the others (docs/api.md, "Acting on the
    lot one saw"): sent with a stale ``If-Match`` it is refused (409, nothing changed), and
    its answer carries the lot's version as an ``ETag``, the new one when it rejected sites
    and the same when the map rejected nothing new. The answer carried none, so a system
    importing maps had to read the lot again before its next operation."""
    await _lot_b(api)
    await api.roles(Role.OPERATOR, Role.QUALITY)
    await api.state.identity.set_password(ADMIN, ACCOUNT, "set-by-the-admin")
    await api.state.identity.change_own_password(ACCOUNT, "set-by-the-admin", OWN)
    xml = hand_written(substrate="B-01")
    async with api.client() as client:
        seen = await client.get("/lots/B")
        version = seen.json()["version"]
        assert seen.headers["etag"] == f'"{version}"'

        def body(lot_version: int) -> dict[str, object]:
            signature = {"username": ACCOUNT, "password": OWN, "meaning": "AOI map",
                         "lot_version": lot_version}  # fmt: skip
            return {"xml": xml, "source": "aoi.xml", "bins": {"X": "PARTICLE"},
                    "signatures": [signature]}  # fmt: skip

        stale = await client.post(
            "/lots/B/maps/e142", json=body(version), headers={"If-Match": f'"{version - 1}"'}
        )
        assert stale.status_code == 409 and stale.json()["error"] == "conflict", stale.text
        assert await _version(api) == (version, 6)

        done = await client.post(
            "/lots/B/maps/e142", json=body(version), headers={"If-Match": seen.headers["etag"]}
        )
        assert done.status_code == 200, done.text
        assert done.json()["good_sites"] == 4
        now, _ = await _version(api)
        assert now > version
        assert done.headers["etag"] == f'"{now}"'

        again = await client.post(
            "/lots/B/maps/e142", json=body(now), headers={"If-Match": done.headers["etag"]}
        )
        assert again.status_code == 200, again.text
        assert again.json()["rejected"] == [] and again.json()["good_sites"] is None
        assert again.headers["etag"] == f'"{now}"'
        assert await _version(api) == (now, 4)
