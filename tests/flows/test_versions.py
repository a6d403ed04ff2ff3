"""Flow versions as data: the content hash names the files, and the diff of two versions says
in words what an engineer changed (sequence, steps, defaults, limits and claims, queue times)."""

from __future__ import annotations

from flows import Flow
from flows.loader import flow_sources, load_sources
from flows.versions import content_hash, diff

FLOW = "fo-organic"


def _built(edits: dict[str, list[tuple[str, str]]]) -> Flow:
    files = flow_sources(FLOW)
    for name, pairs in edits.items():
        for old, new in pairs:
            assert old in files[name], old
            files[name] = files[name].replace(old, new)
    return load_sources(files).get(FLOW)


def test_the_content_hash_names_the_files_and_nothing_else() -> None:
    files = flow_sources(FLOW)
    assert content_hash(files) == content_hash(dict(reversed(files.items())))
    changed = {**files, f"{FLOW}.yaml": files[f"{FLOW}.yaml"] + "\n# a comment\n"}
    assert content_hash(changed) != content_hash(files)


def test_the_same_files_differ_in_nothing() -> None:
    assert diff(_built({}), _built({})) == []


def test_the_diff_of_two_constructed_versions_names_each_change_in_words() -> None:
    b = _built(
        {
            f"{FLOW}.yaml": [
                ("version: 1", "version: 2"),
                ("warn_minutes: 180, max_minutes: 240", "warn_minutes: 120, max_minutes: 200"),
            ],
            "steps.yaml": [
                (
                    "bond_line_thickness_um: {spec: {lower: 10.0, upper: 40.0,",
                    "bond_line_thickness_um: {spec: {lower: 12.0, upper: 40.0,",
                ),
            ],
        }
    )
    changes = diff(_built({}), b)
    assert "version: 1 -> 2" in changes
    assert any(
        c.startswith("queue time DIELECTRIC_COAT -> VIA_PATTERN: at most 240 -> 200 min")
        for c in changes
    ), changes
    assert any(
        c.startswith("DIE_ATTACH measured: bond_line_thickness_um spec limits [10.0, 40.0]")
        and "[12.0, 40.0]" in c
        for c in changes
    ), changes
    assert len(changes) == 3, changes


def test_a_queue_time_changed_names_only_what_changed() -> None:
    """Found by the probe: a version that changed only a queue time's maximum was shown as
    "at most 240 -> 200 min, warning 180.0 -> 180.0 min", and one that changed only its
    origin as "at most 240 -> 240 min, warning 180.0 -> 180.0 min": a change the approver
    could not see."""
    line = 'warn_minutes: 180, max_minutes: 240, origin: "line practice: dielectric'
    changed = {
        "max": (line, line.replace("240", "200")),
        "origin": (line, line.replace("line practice: dielectric", "line practice: resist")),
        "warning": (line, line.replace("warn_minutes: 180, ", "")),
    }
    what = "queue time DIELECTRIC_COAT -> VIA_PATTERN"
    said = {k: diff(_built({}), _built({f"{FLOW}.yaml": [pair]})) for k, pair in changed.items()}
    assert said["max"] == [f"{what}: at most 240 -> 200 min"]
    assert said["origin"] == [
        f"{what}: origin 'line practice: dielectric moisture uptake before exposure' -> "
        "'line practice: resist moisture uptake before exposure'"
    ]
    assert said["warning"] == [f"{what}: warning 180 min -> none"]
    added = _built(
        {
            f"{FLOW}.yaml": [
                (
                    "queue_times:\n",
                    "queue_times:\n  - {from: DIE_ATTACH, to: DIELECTRIC_COAT, warn_minutes: 30, "
                    'max_minutes: 60, origin: "line practice: test"}\n',
                )
            ]
        }
    )
    assert diff(_built({}), added) == [
        "queue time DIE_ATTACH -> DIELECTRIC_COAT added: at most 60 min, warning 30 min "
        "(line practice: test)"
    ]
