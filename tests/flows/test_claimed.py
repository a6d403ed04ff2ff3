"""flows.claimed: a published version keeps the limits the claims fix, equal or tighter.

``implies`` is held against the limits' own check (flows.limits.evaluate): on a grid of
values, a rule said to be as tight admits nothing the claimed rule refuses, and a rule said
not to be admits a value it refuses."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from flows import Flow, FlowLibrary
from flows.claimed import implies, loosened, reordered
from flows.limits import evaluate
from flows.loader import flow_sources, load_sources
from flows.model import Equals, GreaterThan, LessThan, Limit, OneOf, Range, Rule

GRID = [i / 4 for i in range(-40, 41)]
bound = st.integers(-6, 6).map(float)


@st.composite
def numeric_rules(draw: st.DrawFn) -> Rule:
    kind = draw(st.sampled_from(["range", "one_of", "equals", "greater", "less"]))
    if kind == "range":
        low, high = sorted((draw(bound), draw(bound)))
        return Range(low, high)
    if kind == "one_of":
        return OneOf(tuple(draw(st.lists(bound, min_size=1, max_size=4, unique=True))))
    if kind == "equals":
        return Equals(draw(bound), draw(st.sampled_from([0.0, 0.5, 1.0])))
    if kind == "greater":
        return GreaterThan(draw(bound))
    return LessThan(draw(bound))


def admits(rule: Rule, value: float) -> bool:
    limit = Limit("x", None, rule, "test")
    return evaluate(limit, value, lambda name: None, "test") is None


@given(numeric_rules(), numeric_rules())
def test_a_rule_as_tight_admits_nothing_the_claimed_one_refuses(new: Rule, old: Rule) -> None:
    loose = [v for v in GRID if admits(new, v) and not admits(old, v)]
    if implies(new, old):
        assert loose == [], (new, old, loose)
    else:
        assert loose, (new, old)  # a witness: a value the new rule lets through


def test_words_and_named_references() -> None:
    copper = OneOf(("copper",))
    assert implies(copper, OneOf(("copper", "aluminium")))
    assert not implies(OneOf(("copper", "aluminium")), copper)
    assert not implies(Range(0, 1), copper)
    same = Equals("site_cols")
    assert implies(same, same) and implies(same, Equals("site_cols", 1.0))
    assert not implies(Equals("site_cols", 1.0), same)
    assert not implies(Equals("site_rows"), same)
    assert not implies(Range(1, 2), same)
    assert implies(GreaterThan("die_area_mm2"), GreaterThan("die_area_mm2"))
    assert not implies(GreaterThan("die_area_mm2"), LessThan("die_area_mm2"))
    assert not implies(GreaterThan(5.0), GreaterThan("die_area_mm2"))


def _with_limit(library: FlowLibrary, flow: str, step: str, value: str, rule: Rule | None):
    """The flow with ``value``'s limits at ``step`` replaced by one ``rule`` (none: dropped)."""
    f = library.get(flow)
    spec = f.steps[step].recipe[value]
    limits = () if rule is None else (replace(spec.limits[0], rule=rule),)
    recipe = {**f.steps[step].recipe, value: replace(spec, limits=limits)}
    steps = {**f.steps, step: replace(f.steps[step], recipe=recipe)}
    return replace(f, steps=steps)


def test_every_packaged_flow_keeps_its_own_limits(library: FlowLibrary) -> None:
    for flow in library.flows.values():
        assert loosened(flow, flow) == []


def test_a_version_that_loosens_drops_or_tightens_a_claimed_limit(library: FlowLibrary) -> None:
    packaged = library.get("stiffener-bga")
    where = ("stiffener-bga", "SUBSTRATE_LOAD", "substrate_thickness_mm")
    wider = _with_limit(library, *where, Range(0.1, 0.6))
    assert loosened(packaged, wider) == [
        "SUBSTRATE_LOAD recipe: substrate_thickness_mm: claim 000: 14 fixes 0.1 to 0.5; "
        "this version allows 0.1 to 0.6"
    ]
    dropped = _with_limit(library, *where, None)
    assert loosened(packaged, dropped) == [
        "SUBSTRATE_LOAD recipe: substrate_thickness_mm: claim 000: 14 fixes 0.1 to 0.5; "
        "this version has no such limit"
    ]
    assert loosened(packaged, _with_limit(library, *where, Range(0.2, 0.4))) == []
    no_step = replace(
        packaged, steps={k: v for k, v in packaged.steps.items() if k != "STIFFENER_ATTACH"}
    )
    assert loosened(packaged, no_step) == [], "a step not run is the step order's question"


def _with_sequence(flow: str, old: str, new: str) -> Flow:
    """The packaged flow with its sequence (or a fragment's) rewritten, loaded as a version."""
    files = flow_sources(flow)
    changed = {k: v.replace(old, new) for k, v in files.items()}
    assert changed != files, f"{old!r} is not in {flow}'s files"
    return load_sources(changed).get(flow)


def test_every_packaged_flow_keeps_its_own_order(library: FlowLibrary) -> None:
    for flow in library.flows.values():
        assert reordered(flow, flow) == []


def test_a_version_that_reorders_or_skips_a_claimed_step_is_refused(library: FlowLibrary) -> None:
    """Found by the probe: a version with MOLD before STIFFENER_ATTACH (claim 000: 1) and the
    wire bond optional (claim 7) was published."""
    packaged = library.get("stiffener-bga")
    seq = "SUBSTRATE_LOAD DIE_ATTACH WIRE_BOND STIFFENER_ATTACH MOLD"
    swapped = _with_sequence(
        "stiffener-bga", seq, "SUBSTRATE_LOAD DIE_ATTACH WIRE_BOND MOLD STIFFENER_ATTACH"
    )
    assert reordered(packaged, swapped) == [
        "step order: document 000, claims 1-8 (structure claims 9-19), fixes 'SUBSTRATE_LOAD "
        "DIE_ATTACH WIRE_BOND STIFFENER_ATTACH MOLD (BALL_MOUNT DICE | DICE BALL_MOUNT)'; this "
        "version allows MOLD after SUBSTRATE_LOAD DIE_ATTACH WIRE_BOND, which that order does "
        "not"
    ]
    optional = _with_sequence(
        "stiffener-bga", seq, "SUBSTRATE_LOAD DIE_ATTACH [WIRE_BOND] STIFFENER_ATTACH MOLD"
    )
    (said,) = reordered(packaged, optional)
    assert said.endswith(
        "this version allows STIFFENER_ATTACH after SUBSTRATE_LOAD DIE_ATTACH, which that "
        "order does not"
    )
    no_balls = _with_sequence("stiffener-bga", "| DICE BALL_MOUNT)", "| DICE [BALL_MOUNT])")
    (said,) = reordered(packaged, no_balls)
    assert said.endswith(
        "this version may complete after SUBSTRATE_LOAD DIE_ATTACH WIRE_BOND STIFFENER_ATTACH "
        "MOLD DICE, which that order does not"
    )


def test_a_version_may_add_its_own_steps_and_require_an_optional_one(
    library: FlowLibrary,
) -> None:
    """Claims "comprising" the steps leave room for the line's own (an inspection between
    two claimed steps); an optional step made required narrows the order, per layer count."""
    packaged = library.get("fo-organic")
    stricter = _with_sequence("fo-organic", "DIE_ATTACH [FILL]", "DIE_ATTACH FILL")
    assert reordered(packaged, stricter) == []
    inspected = _with_sequence(
        "stiffener-bga", "WIRE_BOND STIFFENER_ATTACH", "WIRE_BOND DIE_ATTACH STIFFENER_ATTACH"
    )
    assert (
        "DIE_ATTACH after SUBSTRATE_LOAD DIE_ATTACH WIRE_BOND"
        in reordered(library.get("stiffener-bga"), inspected)[0]
    ), "a claimed step twice is not the line's own step"
    looser = _with_sequence("fo-organic", "{ LAYER } x layers", "{ LAYER } x (layers - 1)")
    said = reordered(packaged, looser)
    assert said and said[0].startswith("step order with layers = 1: ")


def test_a_version_may_leave_out_an_optional_step_with_its_claimed_limits(
    library: FlowLibrary,
) -> None:
    """Found by the probe: a version of fo-organic without the optional FILL (the claims
    leave it open, claims 70, 71) was refused, "FILL recipe: filling_material: claim 002: 71
    fixes one of epoxy, polymer; this version has no such limit", though no lot of it can
    fill with anything. A claimed step left out is still refused, by the step order."""
    packaged = library.get("fo-organic")
    files = flow_sources("fo-organic")
    fill = '  FILL:\n    recipe:\n      filling_material: {one_of: [epoxy, polymer], claim: "002: 71"}\n'
    assert fill in files["fo-organic.yaml"]
    changed = {
        k: v.replace(fill, "").replace("DIE_ATTACH [FILL]", "DIE_ATTACH") for k, v in files.items()
    }
    no_fill = load_sources(changed).get("fo-organic")
    assert "FILL" not in no_fill.steps
    assert loosened(packaged, no_fill) == [] and reordered(packaged, no_fill) == []

    stiffener = library.get("stiffener-bga")
    files = flow_sources("stiffener-bga")
    attach = next(k for k, v in files.items() if "  STIFFENER_ATTACH:\n" in v)
    text = files[attach]
    start = text.index("  STIFFENER_ATTACH:\n")
    end = text.index("  BALL_MOUNT:\n")
    changed = {**files, attach: text[:start] + text[end:]}
    changed = {
        k: v.replace("WIRE_BOND STIFFENER_ATTACH MOLD", "WIRE_BOND MOLD")
        for k, v in changed.items()
    }
    no_stiffener = load_sources(changed).get("stiffener-bga")
    assert loosened(stiffener, no_stiffener) == []
    (said,) = reordered(stiffener, no_stiffener)
    assert "this version allows MOLD after SUBSTRATE_LOAD DIE_ATTACH WIRE_BOND" in said
