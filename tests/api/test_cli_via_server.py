"""The operator CLI as a client of a running server (on a Unix socket in tmp_path): the
same JSON, output and exit codes as in direct mode, and each command says which it used."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mes.domain.authority import Role
from mes.domain.identity import EventKind
from mes.domain.signatures import SignaturePolicy
from tests.api.conftest import ACCOUNT, ADMIN, RunningApi, cli, start_api


@pytest.mark.slow
async def test_lot_commands_through_the_server_match_direct_mode(api: RunningApi) -> None:
    server = f"unix://{api.socket}"
    via = ("--server", server)
    started = await cli(
        "lot", "start", "A1", "--flow", "fo-organic", "--param", "layers=3", "--json", *via
    )
    assert started.returncode == 0, started.stderr
    assert f"via server {server} as {ACCOUNT} (os_account)" in started.stderr
    body = json.loads(started.stdout)
    assert body["id"] == "A1" and body["recorded"][0]["auth"] == "os_account"

    moved = await cli(
        "lot", "track-in", "A1", "--step", "SUBSTRATE_PREP", env={"PKGLINE_SERVER": server}
    )
    assert moved.returncode == 0, moved.stderr
    assert "✔ lot A1 tracked in: RUNNING at SUBSTRATE_PREP" in moved.stdout
    assert "via server" in moved.stderr

    refused = await cli("lot", "scrap", "A1", "--reason", "voids", "--json", *via)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"] == "not_authorized"
    assert json.loads(refused.stdout)["allowed"] == ["quality"]
    [logged] = [e for e in await api.state.identity.events(ADMIN) if e.kind is EventKind.REFUSED]
    assert logged.action == "scrap" and logged.detail["from"].startswith("local socket, pid ")
    unknown = await cli("lot", "hold", "NOPE", "--reason", "x", *via)
    assert unknown.returncode == 1 and "there is no lot NOPE" in unknown.stderr

    shown = await cli("lot", "show", "A1", "--json", *via)
    direct = await cli("lot", "show", "A1", "--json", "--db", api.db)
    assert shown.returncode == direct.returncode == 0, shown.stderr + direct.stderr
    assert json.loads(shown.stdout) == json.loads(direct.stdout)
    assert direct.stderr.startswith("direct database sqlite:///")
    assert f"as OS account {ACCOUNT}" in direct.stderr
    human = await cli("lot", "show", "A1", *via)
    human_direct = await cli("lot", "show", "A1", "--db", api.db)
    assert human.stdout == human_direct.stdout and "SUBSTRATE_PREP" in human.stdout

    listed = await cli("lot", "list", "--json", *via)
    assert [lot["id"] for lot in json.loads(listed.stdout)] == ["A1"]
    page = await cli("lot", "list", "--json", "--limit", "1", *via)
    notice = json.loads(page.stderr)
    assert notice["mode"].startswith(f"via server {server}") and notice["total"] == 1


async def test_a_bad_server_url_is_a_usage_error_and_no_server_is_unavailable(
    tmp_path: Path,
) -> None:
    bad = await cli("lot", "list", "--server", "http://example.invalid")
    assert bad.returncode == 2 and "unix:///PATH" in bad.stderr
    for url, expected in (
        ("https://127.0.0.1:99999", "the port is a number from 1 to 65535"),
        ("https://127.0.0.1:0", "the port is a number from 1 to 65535"),
        ("https://127.0.0.1:8443/api", "no path in the URL"),
    ):
        refused = await cli("lot", "list", "--server", url)
        assert refused.returncode == 2 and expected in refused.stderr, refused.stderr
    gone = await cli("lot", "list", "--json", "--server", f"unix://{tmp_path}/none.sock")
    assert gone.returncode == 4
    assert json.loads(gone.stdout)["error"] == "server"
    assert json.loads(gone.stdout)["message"].endswith("did not answer: No such file or directory")


@pytest.mark.slow
async def test_a_release_through_the_server_is_signed_with_the_password_given_again(
    api: RunningApi,
) -> None:
    """21 CFR 11.200 through the server: the requester's password, read again (here from
    standard input), signs the release; without it the server says a signature is needed
    and nothing changes; a wrong one is refused, and counts."""
    await api.roles(Role.OPERATOR, Role.QUALITY)
    await api.own_password()
    via = ("--server", f"unix://{api.socket}")
    assert (await cli("lot", "start", "S1", "--flow", "fo-organic", *via)).returncode == 0
    assert (await cli("lot", "hold", "S1", "--reason", "voids", *via)).returncode == 0

    unsigned = await cli("lot", "release", "S1", "--reason", "ok", "--json", *via, stdin="")
    assert unsigned.returncode == 1
    assert json.loads(unsigned.stdout)["error"] == "signature_required"
    assert "no password on standard input: sent without your signature" in unsigned.stderr
    wrong = await cli("lot", "release", "S1", "--json", *via, stdin="not-it\n")
    assert wrong.returncode == 1, wrong.stdout
    assert json.loads(wrong.stdout)["error"] == "login_refused"  # the password did not prove it
    two_lines = await cli(
        "lot", "release", "S1", "--reason", "ok\nthen", "--json", *via, stdin="own-Secret-22\n"
    )  # refused before any prompt, as in direct mode (no traceback)
    assert two_lines.returncode == 1 and "Traceback" not in two_lines.stderr, two_lines.stderr
    assert json.loads(two_lines.stdout)["error"] == "invalid_input"

    signed = await cli(
        "lot", "release", "S1", "--reason", "re-inspected", "--meaning", "approved release",
        "--json", *via, stdin="own-Secret-22\n",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stdout + signed.stderr
    shown = json.loads((await cli("lot", "show", "S1", "--json", *via)).stdout)
    assert shown["state"] == "WAITING"
    [signature] = shown["signatures"]
    assert signature["meaning"] == "approved release"
    assert signature["method"] == "password" and signature["signer"] == ACCOUNT


@pytest.mark.slow
async def test_a_scrap_asking_two_signers_is_signed_by_a_second_person_from_the_cli(
    sqlite_url: str, tmp_path: Path
) -> None:
    """[signatures] two_signers = ["scrap"] on the server: the requester alone is refused
    (signature_required, 2 needed); --second-signer names the second person, whose password
    is read after the requester's (here the second line of standard input), and both sign.
    Direct mode, which signs with the OS account alone, refuses the option before acting."""
    two = SignaturePolicy.from_names(["scrap"])
    async with start_api(sqlite_url, tmp_path / "api.sock", signatures=two) as api:
        identity = api.state.identity
        await api.roles(Role.OPERATOR, Role.QUALITY)
        await api.own_password()
        await identity.add_user(ADMIN, "qa2", "Quinn Two", [Role.QUALITY], password="set-by-ad-1")
        await identity.change_own_password("qa2", "set-by-ad-1", "qa2-Secret-33")
        via = ("--server", f"unix://{api.socket}")
        assert (await cli("lot", "start", "S2", "--flow", "fo-organic", *via)).returncode == 0
        scrap = ("lot", "scrap", "S2", "--reason", "voids", "--json", *via)

        alone = await cli(*scrap, stdin="own-Secret-22\n")
        assert alone.returncode == 1, alone.stdout
        assert json.loads(alone.stdout)["error"] == "signature_required"
        assert "--second-signer" not in json.loads(alone.stdout)["message"]  # the server's
        # found by a quality engineer's walkthrough: the refusal said a second person must
        # sign, not how to name them on this command
        said = await cli(*scrap[:-3], *via, stdin="own-Secret-22\n")
        assert said.returncode == 1, said.stdout
        assert "must be signed by two different people" in said.stderr
        assert "Name the second signer with --second-signer NAME" in said.stderr
        both = await cli(*scrap, "--second-signer", "qa2", stdin="own-Secret-22\nqa2-Secret-33\n")
        assert both.returncode == 0, both.stdout + both.stderr
        shown = json.loads((await cli("lot", "show", "S2", "--json", *via)).stdout)
        assert shown["state"] == "SCRAPPED"
        assert [s["signer"] for s in shown["signatures"]] == [ACCOUNT, "qa2"]
        assert {s["meaning"] for s in shown["signatures"]} == {"approved scrap: voids"}

        direct = await cli("lot", "release", "S2", "--second-signer", "qa2", "--db", api.db)
        assert direct.returncode == 2, direct.stdout + direct.stderr
        assert "direct mode signs with your OS account alone" in direct.stderr


async def test_events_status_and_audit_verify_through_the_server_match_direct_mode(
    api: RunningApi, tmp_path: Path
) -> None:
    via = ("--server", f"unix://{api.socket}")
    direct = ("--db", api.db)
    assert (await cli("lot", "start", "E1", "--flow", "fo-organic", *via)).returncode == 0
    served = await cli("events", "status", "--json", *via)
    assert served.returncode == 0, served.stderr
    assert "via server" in served.stderr
    mine = await cli("events", "status", "--json", *direct)
    assert mine.returncode == 0, mine.stderr
    assert "direct database" in mine.stderr
    drop = ("lag_s", "oldest_waiting_at")  # the clock moved between the two
    served_body = {k: v for k, v in json.loads(served.stdout).items() if k not in drop}
    assert served_body == {k: v for k, v in json.loads(mine.stdout).items() if k not in drop}
    assert served_body["backlog"] >= 1  # no relay runs here: the lot's events wait
    text = await cli("events", "status", *via)
    assert text.returncode == 0 and re.search(r"\d+ events? waiting", text.stdout)

    verified = await cli("audit", "verify", "--json", *via)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout) == json.loads(
        (await cli("audit", "verify", "--json", *direct)).stdout
    )
    shown = await cli("audit", "verify", *via)
    assert shown.returncode == 0 and "history verified" in shown.stdout
    bad = await cli("audit", "verify", "--anchor", "1" * 64, *via)
    assert bad.returncode == 6 and "does not verify" in bad.stderr
    start = await cli("audit", "verify", "--anchor", "0" * 64, *via)  # the chains' start
    assert start.returncode == 0, start.stderr
    heads = json.loads(verified.stdout)
    kept = tmp_path / "anchors.jsonl"  # many anchors: in the body (POST), not the query
    kept.write_text(
        "\n".join(
            json.dumps({"lots_head": heads["lots_head"], "security_head": h})
            for h in (heads["security_head"], "0" * 64)
        )
    )
    from_file = await cli("audit", "verify", "--anchors-from", str(kept), *via)
    assert from_file.returncode == 0, from_file.stderr
    kept.write_text(f"{'2' * 64}\n{heads['lots_head']}\n")
    missing = await cli("audit", "verify", "--json", "--anchors-from", str(kept), *via)
    assert missing.returncode == 6
    assert json.loads(missing.stdout)["problem"]["finding"] == "anchor_missing"


@pytest.mark.slow
async def test_audit_verify_through_the_server_takes_a_feed_kept_longer_than_one_request(
    api: RunningApi, tmp_path: Path
) -> None:
    """A subscriber's kept file holds a hash per lot event: past 3,000 of them (minutes of a
    line's feed), ``audit verify --anchors-from`` through the server was refused as a request
    not as expected (exit 2), however sound the history. The CLI sends them in parts (each
    part a POST /audit/verify), and stops at the first part that does not verify."""
    from sqlalchemy import text

    from mes.domain.authority import AuthMethod

    identity = api.state.identity
    for n in range(3001):  # 3,001 security events: 3,001 anchors that hold
        await identity.refused_credentials(f"probe {n}", AuthMethod.API_KEY, "a test")
    async with api.state.engine.connect() as connection:
        found = await connection.execute(text("SELECT hash FROM security_events ORDER BY seq"))
        hashes = [str(h) for h in found.scalars()]
    assert len(set(hashes)) >= 3001
    via = ("--server", f"unix://{api.socket}")
    kept = tmp_path / "kept.txt"
    kept.write_text("\n".join(hashes) + "\n")
    verified = await cli("audit", "verify", "--json", "--anchors-from", str(kept), *via)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
    kept.write_text("\n".join([*hashes, "3" * 64]) + "\n")  # the last one, in the second part
    missing = await cli("audit", "verify", "--json", "--anchors-from", str(kept), *via)
    assert missing.returncode == 6, missing.stdout + missing.stderr
    problem = json.loads(missing.stdout)["problem"]
    assert problem["finding"] == "anchor_missing" and "333333333333" in problem["message"]


@pytest.mark.slow
async def test_the_lines_history_through_the_server_matches_direct_mode(api: RunningApi) -> None:
    """``lot history``: the same pages, notice and refusals through the server as on the
    database; a held lot shows its reason in ``lot list --state HOLD``."""
    server = f"unix://{api.socket}"
    via = ("--server", server)
    for lot in ("H1", "H2", "H3"):
        assert (await cli("lot", "start", lot, "--flow", "fo-organic", *via)).returncode == 0
    assert (await cli("lot", "track-in", "H2", "--step", "SUBSTRATE_PREP", *via)).returncode == 0
    assert (await cli("lot", "hold", "H3", "--reason", "voids seen", *via)).returncode == 0

    page = await cli("lot", "history", "--json", "--limit", "2", *via)
    direct = await cli("lot", "history", "--json", "--limit", "2", "--db", api.db)
    assert page.returncode == direct.returncode == 0, page.stderr + direct.stderr
    assert json.loads(page.stdout) == json.loads(direct.stdout)
    assert [(e["lot"], e["operation"]) for e in json.loads(page.stdout)] == [
        ("H3", "hold"),
        ("H2", "track_in"),
    ]
    notice = json.loads(page.stderr.splitlines()[-1])  # after the line saying the mode
    assert notice["mode"].startswith(f"via server {server}")
    assert (notice["total"], notice["shown"], notice["more"]) == (5, 2, True)
    rest = await cli("lot", "history", "--after", str(notice["next_after"]), *via)
    assert rest.returncode == 0 and "3 of 5 entries" in rest.stdout, rest.stdout
    assert rest.stdout.count("start") == 3

    one = await cli("lot", "history", "--lot", "H2", "--operation", "track_in", "--json", *via)
    assert [e["lot"] for e in json.loads(one.stdout)] == ["H2"]
    for args, code, said in (
        (("--lot", "NOPE"), 1, "there is no lot NOPE"),
        (("--tool", "NOPE"), 1, "there is no tool NOPE"),
        (("--operation", "bogus"), 2, "expected one of start, track_in"),
        (("--since", "yesterday"), 2, "expected a duration ago (30m, 8h, 2d"),
        (("--since", "1h", "--until", "2h"), 1, "is not after its end"),
        (("--after", "999"), 1, "there is no history entry 999"),
    ):
        for mode in (via, ("--db", api.db)):
            refused = await cli("lot", "history", *args, *mode)
            assert refused.returncode == code and said in refused.stderr, refused.stderr
    for mode in (via, ("--db", api.db)):  # as lot list takes them, in both modes
        lately = await cli("lot", "history", "--since", "30m", "--json", *mode)
        assert lately.returncode == 0 and len(json.loads(lately.stdout)) == 5, lately.stderr
        local = datetime.now().astimezone().replace(tzinfo=None) + timedelta(minutes=1)
        before = await cli("lot", "history", "--until", f"{local:%Y-%m-%dT%H:%M}", "--json", *mode)
        assert before.returncode == 0 and len(json.loads(before.stdout)) == 5, before.stderr
        passed = await cli("lot", "history", "--since", f"{local:%Y-%m-%dT%H:%M}", *mode)
        assert passed.returncode == 0 and "0 of 0 entries" in passed.stdout, passed.stdout

    held = await cli("lot", "list", "--state", "HOLD", *via, env={"COLUMNS": "200"})
    assert "held for" in held.stdout and "voids seen" in held.stdout, held.stdout


@pytest.mark.slow
async def test_a_local_time_in_tz_selects_alike_through_the_server_and_directly(
    api: RunningApi,
) -> None:
    """``lot list``, ``lot history`` and ``tool jobs`` read ``--since``/``--until`` given
    without an offset in the local zone ($TZ, docs/cli.md) and send it to the server with its
    offset (the ``+`` of ``+09:00`` encoded): through the server they select what they select
    directly, in a zone east of UTC and one west of it."""
    from mes.domain.authority import CONTROLLER
    from mes.domain.equipment import ToolRegistration

    tool = ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1", ("DIE_ATTACH",))
    await api.state.services.equipment.register("line-1", [tool], by=CONTROLLER)
    via = ("--server", f"unix://{api.socket}")
    assert (await cli("lot", "start", "T1", "--flow", "fo-organic", *via)).returncode == 0
    for zone, hours in (("JST-9", 9), ("EST5", -5)):
        local = datetime.now(timezone(timedelta(hours=hours))) + timedelta(minutes=1)
        soon = f"{local:%Y-%m-%dT%H:%M}"  # a minute from now, in that zone, no offset
        for command, items in (
            (("lot", "list"), ["T1"]),
            (("lot", "history"), ["T1"]),
            (("tool", "jobs", "DB-1"), []),
        ):
            asked = [
                ((*command, option, soon, "--json", *mode), selected)
                for option, selected in (("--until", items), ("--since", []))
                for mode in (via, ("--db", api.db))
            ]
            answers = await asyncio.gather(*(cli(*a, env={"TZ": zone}) for a, _ in asked))
            for (args, selected), ran in zip(asked, answers, strict=True):
                assert ran.returncode == 0, (zone, args, ran.stderr)
                found = [x.get("lot", x.get("id")) for x in json.loads(ran.stdout)]
                assert found == selected, (zone, args, found)


@pytest.mark.slow
async def test_a_material_release_through_the_server_is_signed_with_the_password_again(
    api: RunningApi,
) -> None:
    """``material release`` through the server: the requester's password, read again, signs
    the release of the material lot at the version the server showed; without it the server
    says a signature is needed, and nothing changes."""
    await api.roles(Role.QUALITY)
    await api.own_password()
    via = ("--server", f"unix://{api.socket}")
    for args in (
        ("reason", "add", "RECALL", "--kind", "hold", "--text", "Material recall"),
        ("material", "add", "W-1", "--kind", "wire", "--expires", "2099-01-31"),
        ("material", "quarantine", "W-1", "--code", "RECALL", "--reason", "kinks"),
    ):
        done = await cli(*args, *via)
        assert done.returncode == 0, (args, done.stdout + done.stderr)
    release = ("material", "release", "W-1", "--reason", "cleared", "--json", *via)

    unsigned = await cli(*release, stdin="")
    assert unsigned.returncode == 1, unsigned.stdout
    assert json.loads(unsigned.stdout)["error"] == "signature_required"
    signed = await cli(*release, stdin="own-Secret-22\n")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    shown = json.loads((await cli("material", "show", "W-1", "--json", *via)).stdout)
    assert shown["quarantine"] is None and shown["version"] == 3
    [signature] = shown["history"][-1]["signatures"]
    assert (signature["signer"], signature["method"]) == (ACCOUNT, "password")
    events = await api.state.identity.events(ADMIN)
    refused = [e for e in events if e.kind is EventKind.SIGNATURE_REFUSED]
    assert [(e.action, e.lot_id) for e in refused] == [("material_release", "W-1")]
