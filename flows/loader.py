"""Read the defs directory, merge and check it, and build the flow library.

Merge order for every step of a flow: ``steps.yaml`` <- the fragment that specifies the step
(if the flow uses it) <- the flow file. Value specs merge field by field, so a flow file can
override a default or a claim and inherit the rest; ``default: null`` removes a default.
Everything is checked before a flow is built; every problem is a :class:`FlowError` naming
the file and line.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from flows.errors import FlowError
from flows.flow import Flow, FlowLibrary
from flows.grammar import (
    Alt,
    Expr,
    Group,
    Name,
    Opt,
    Repeat,
    Seq,
    SequenceError,
    Step,
    counts,
    parse,
    step_codes,
)
from flows.limits import evaluate
from flows.model import (
    GEOMETRY,
    RULE_KINDS,
    Equals,
    GreaterThan,
    LessThan,
    Limit,
    OneOf,
    Range,
    ReworkSpec,
    Rule,
    StepCodeInfo,
    StepSpec,
    Value,
    ValueSpec,
    ValueType,
    frozen_mapping,
)
from flows.schema import (
    FlowModel,
    FragmentModel,
    FragmentsFile,
    LimitModel,
    StepBodyModel,
    StepCodeModel,
    StepsFile,
)
from pkgline.datafiles import DataFileError, YamlDocument, read_yaml, validate

DEFS = Path(__file__).with_name("defs")
STEPS_FILE = "steps.yaml"
FRAGMENTS_FILE = "fragments.yaml"

# The unit of a value follows from its name ("units in the names"); longest suffix first.
_UNIT_SUFFIXES = (
    ("_w_mk", "W/m.K"),
    ("_mj_cm2", "mJ/cm2"),
    ("_a_dm2", "A/dm2"),
    ("_mm_s", "mm/s"),
    ("_mm2", "mm2"),
    ("_rpm", "rpm"),
    ("_mpa", "MPa"),
    ("_pct", "%"),
    ("_um", "um"),
    ("_mm", "mm"),
    ("_ms", "ms"),
    ("_nl", "nL"),
    ("_mw", "mW"),
    ("_kw", "kW"),
    ("_c", "degC"),
    ("_n", "N"),
    ("_s", "s"),
    ("_g", "gf"),
)

Kind = Literal["recipe", "measured", "lot"]


def unit_of(name: str) -> str | None:
    """The unit a value name ends with (``_um`` -> ``um``), or None (counts, words)."""
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return None


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


@dataclass(frozen=True)
class _Origin:
    """Where something was written: a document and the key path inside it."""

    doc: YamlDocument
    loc: tuple[str | int, ...]

    def child(self, *keys: str | int) -> _Origin:
        return _Origin(self.doc, self.loc + keys)

    def line(self) -> int | None:
        """The line of the last key of ``loc`` (of the nearest one present): for a key whose
        value is a block below it, the key's own line is where an engineer looks."""
        node = self.doc.node
        if node is None:
            return None
        line: int = node.start_mark.line + 1
        for key in self.loc:
            if isinstance(node, yaml.MappingNode):
                pair = next(((k, v) for k, v in node.value if str(k.value) == str(key)), None)
                if pair is None:
                    return line
                line = pair[0].start_mark.line + 1
                node = pair[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                if not 0 <= key < len(node.value):
                    return line
                node = node.value[key]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def error(self, message: str) -> FlowError:
        return FlowError(self.doc.path, self.line(), message)

    def node(self) -> yaml.Node | None:
        node = self.doc.node
        for key in self.loc:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if str(k.value) == str(key)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                node = node.value[key] if 0 <= key < len(node.value) else None
            else:
                return None
        return node

    def sequence_error(self, text: str, column: int, message: str) -> FlowError:
        """An error at ``column`` (1-based) of the sequence text written here."""
        line = self.line()
        offset = column - 1
        line_start = text.rfind("\n", 0, offset) + 1
        node = self.node()
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            # A block scalar keeps its lines; its text starts on the line after the indicator.
            line = node.start_mark.line + 2 + text.count("\n", 0, offset)
        else:
            line_start = 0
        return FlowError(
            self.doc.path, line, f"sequence, column {offset - line_start + 1}: {message}"
        )


def _validated(doc: YamlDocument, model: type[Any]) -> Any:
    try:
        return validate(doc, model)
    except DataFileError as exc:
        raise FlowError(exc.path, exc.line, exc.message) from exc


def _read(path: Path) -> YamlDocument:
    try:
        doc = read_yaml(path)
    except DataFileError as exc:
        raise FlowError(exc.path, exc.line, exc.message) from exc
    if doc.data is None:
        raise FlowError(path, None, "the file is empty")
    return doc


# --- drafts: merged field by field, remembering where each field was written ----------------


class _Draft:
    """A value spec (or a ``checks`` limit) being merged from several files."""

    def __init__(self, name: str, origin: _Origin):
        self.name = name
        self.origin = origin
        self.fields: dict[str, tuple[Any, _Origin]] = {}

    def merge(self, model: BaseModel, origin: _Origin) -> None:
        for key in model.model_fields_set:
            self.fields[key] = (getattr(model, key), origin.child(key))

    def get(self, key: str) -> Any:
        return self.fields[key][0] if key in self.fields else None

    def where(self, key: str) -> _Origin:
        return self.fields[key][1] if key in self.fields else self.origin


@dataclass
class _StepDraft:
    code: str
    info: StepCodeModel
    recipe: dict[str, _Draft] = field(default_factory=dict)
    measured: dict[str, _Draft] = field(default_factory=dict)
    checks: dict[str, _Draft] = field(default_factory=dict)
    rework: tuple[Any, _Origin] | None = None

    def merge(self, body: StepBodyModel, origin: _Origin) -> None:
        for section in ("recipe", "measured", "checks"):
            drafts: dict[str, _Draft] = getattr(self, section)
            models: dict[str, LimitModel] = getattr(body, section)
            for name, model in models.items():
                where = origin.child(section, name)
                draft = drafts.setdefault(name, _Draft(name, where))
                draft.merge(model, where)
        if body.rework is not None:
            self.rework = (body.rework, origin.child("rework"))


# --- fragments and sequences -----------------------------------------------------------------


@dataclass(frozen=True)
class _Fragment:
    name: str
    model: FragmentModel
    expr: Expr
    origin: _Origin
    shared: bool


def _parse_sequence(text: str, origin: _Origin) -> Expr:
    try:
        return parse(text)
    except SequenceError as exc:
        raise origin.sequence_error(text, exc.column, exc.message) from exc


class _Resolver:
    """Turns names into steps and fragment groups, checking what the notation cannot."""

    def __init__(self, codes: Mapping[str, StepCodeInfo], shared: Mapping[str, _Fragment]):
        self.codes = codes
        self.shared = shared

    def resolve(
        self,
        expr: Expr,
        text: str,
        origin: _Origin,
        local: Mapping[str, _Fragment],
        stack: tuple[str, ...] = (),
        conditional: bool = False,
        in_layer: bool = False,
    ) -> Expr:
        def again(e: Expr, cond: bool = conditional) -> Expr:
            return self.resolve(e, text, origin, local, stack, cond, in_layer)

        if isinstance(expr, Name):
            if expr.name in self.codes:
                return Step(expr.name)
            fragment = local.get(expr.name) or self.shared.get(expr.name)
            if fragment is None:
                known = [*self.codes, *self.shared, *local]
                raise origin.sequence_error(
                    text,
                    expr.column,
                    f"unknown step code or fragment {expr.name!r}{_suggest(expr.name, known)}; "
                    f"fragments: {', '.join(sorted([*self.shared, *local]))}; step codes are "
                    f"those of {STEPS_FILE}",
                )
            if expr.name in stack:
                cycle = " -> ".join([*stack, expr.name])
                raise origin.sequence_error(
                    text, expr.column, f"fragment {expr.name} refers to itself: {cycle}"
                )
            wiring = fragment.model.wiring_layer
            if wiring and conditional:
                raise origin.sequence_error(
                    text,
                    expr.column,
                    f"the wiring layer {expr.name} cannot be optional or one of alternatives: "
                    "the layer number of a step must not depend on the path taken",
                )
            if wiring and in_layer:
                raise origin.sequence_error(
                    text,
                    expr.column,
                    f"the wiring layer {expr.name} is inside another wiring layer",
                )
            # A shared fragment sees only shared fragments; a flow's own sees both.
            scope = local if not fragment.shared else {}
            body = self.resolve(
                fragment.expr,
                fragment.model.sequence,
                fragment.origin.child("sequence"),
                scope,
                (*stack, expr.name),
                conditional,
                in_layer or wiring,
            )
            return Group(expr.name, body, wiring)
        if isinstance(expr, Seq):
            return Seq(tuple(again(item) for item in expr.items))
        if isinstance(expr, Alt):
            return Alt(tuple(again(option, True) for option in expr.options))
        if isinstance(expr, Opt):
            return Opt(again(expr.body, True))
        if isinstance(expr, Repeat):
            return Repeat(again(expr.body), expr.count)
        return expr


def _groups(expr: Expr) -> list[str]:
    """Names of the fragment groups in ``expr``, outermost first, each once."""
    found: list[str] = []

    def walk(e: Expr) -> None:
        if isinstance(e, Group):
            if e.name not in found:
                found.append(e.name)
            walk(e.body)
        elif isinstance(e, Seq):
            for item in e.items:
                walk(item)
        elif isinstance(e, Alt):
            for option in e.options:
                walk(option)
        elif isinstance(e, Opt | Repeat):
            walk(e.body)

    walk(expr)
    return found


def _has_wiring_layer(expr: Expr) -> bool:
    if isinstance(expr, Group):
        return expr.wiring_layer or _has_wiring_layer(expr.body)
    if isinstance(expr, Seq):
        return any(_has_wiring_layer(item) for item in expr.items)
    if isinstance(expr, Alt):
        return any(_has_wiring_layer(option) for option in expr.options)
    if isinstance(expr, Opt | Repeat):
        return _has_wiring_layer(expr.body)
    return False


# --- value specs -------------------------------------------------------------------------------


def _value_type(draft: _Draft) -> ValueType:
    explicit: ValueType | None = draft.get("type")
    if explicit is not None:
        return explicit
    default = draft.get("default")
    one_of = draft.get("one_of")
    if isinstance(default, str) or (one_of and all(isinstance(c, str) for c in one_of)):
        return "str"
    return "float"


def _fits(value: Any, vtype: ValueType) -> bool:
    if vtype == "str":
        return isinstance(value, str)
    if vtype == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _typed(value: Value, vtype: ValueType) -> Value:
    return float(value) if vtype == "float" else value


class _FlowBuilder:
    def __init__(self, name: str, types: Mapping[str, tuple[ValueType, _Origin]]):
        self.name = name
        self.types = types

    def reference(self, draft: _Draft, kind: str, value: Any, vtype: ValueType) -> Any:
        where = draft.where(kind)
        if vtype == "str":
            raise where.error(f"{draft.name}: {kind} compares numbers, but it is a word (str)")
        if isinstance(value, str):
            if value == draft.name:
                raise where.error(f"{draft.name}: {kind} refers to the value itself")
            if value not in self.types:
                known = [*self.types]
                raise where.error(
                    f"{draft.name}: {kind} refers to {value!r}, which is no value of flow "
                    f"{self.name}{_suggest(value, known)}; expected a number, the name of a "
                    "recipe or measured value of one of its steps, a lot parameter, site_rows "
                    "or site_cols"
                )
            if self.types[value][0] == "str":
                raise where.error(
                    f"{draft.name}: {kind} refers to {value!r}, which is a word, not a number"
                )
            return value
        return float(value)

    def limits(
        self, draft: _Draft, value_name: str, step: str | None, vtype: ValueType
    ) -> tuple[Limit, ...]:
        rules: list[Rule] = []
        for kind in RULE_KINDS:
            value = draft.get(kind)
            if value is None:
                continue
            where = draft.where(kind)
            if kind == "range":
                if vtype == "str":
                    raise where.error(f"{value_name}: a range needs a number, but it is a word")
                rules.append(Range(float(value[0]), float(value[1])))
            elif kind == "one_of":
                wrong = [c for c in value if not _fits(c, vtype)]
                if wrong:
                    raise where.error(
                        f"{value_name}: one_of {wrong[0]!r} is not a {vtype} like the value"
                    )
                rules.append(OneOf(tuple(_typed(c, vtype) for c in value)))
            elif kind == "equals":
                tolerance = draft.get("tolerance")
                ref = self.reference(draft, kind, value, vtype)
                rules.append(Equals(ref, float(tolerance) if tolerance is not None else 0.0))
            elif kind == "greater_than":
                rules.append(GreaterThan(self.reference(draft, kind, value, vtype)))
            else:
                rules.append(LessThan(self.reference(draft, kind, value, vtype)))
        if draft.get("tolerance") is not None and draft.get("equals") is None:
            raise draft.where("tolerance").error(
                f"{value_name}: tolerance is only meaningful with equals"
            )
        claim: str | None = draft.get("claim")
        if rules and not claim:
            first_rule = next(kind for kind in RULE_KINDS if draft.get(kind) is not None)
            raise draft.where(first_rule).error(
                f"{value_name}: a limit needs the claim it comes from, e.g. "
                'claim: "001: 4, 13" (document: claim numbers)'
            )
        if claim and not rules:
            raise draft.where("claim").error(
                f"{value_name}: claim given but no limit (range, one_of, equals, greater_than "
                "or less_than)"
            )
        note: str | None = draft.get("note")
        assert claim is not None or not rules
        return tuple(Limit(value_name, step, rule, claim or "", note) for rule in rules)

    def value_spec(self, draft: _Draft, step: str | None, kind: Kind) -> ValueSpec:
        vtype = self.types[draft.name][0]
        default = draft.get("default")
        optional = bool(draft.get("optional"))
        if kind == "measured" and default is not None:
            raise draft.where("default").error(
                f"{draft.name}: a measured value has no default (the tool reports it)"
            )
        if kind != "measured":
            if default is None and not optional:
                raise draft.origin.error(
                    f"{draft.name}: no default; give one, or mark the value optional: true "
                    "when it may be left out"
                )
            if default is not None and optional:
                raise draft.where("optional").error(
                    f"{draft.name}: optional: true is for a value with no default, but it has "
                    f"default {default!r}"
                )
        if default is not None and not _fits(default, vtype):
            raise draft.where("default").error(
                f"{draft.name}: default {default!r} is not a {vtype}"
            )
        limits = self.limits(draft, draft.name, step, vtype)
        if default is not None:
            default = _typed(default, vtype)
            for limit in limits:
                # Limits that compare with another value are checked when that value is known.
                violation = evaluate(limit, default, lambda _name: None, "load")
                if violation is not None:
                    raise draft.where("default").error(
                        f"{draft.name}: default {default!r} is outside its own limit "
                        f"{violation.expected} (claim {limit.claim})"
                    )
        return ValueSpec(
            name=draft.name,
            type=vtype,
            default=default,
            unit=draft.get("unit") or unit_of(draft.name),
            description=draft.get("description") or "",
            limits=limits,
            tool_value=draft.get("tool_value"),
        )


# --- the library -----------------------------------------------------------------------------


class _Library:
    def __init__(self, directory: Path):
        self.directory = directory
        steps_doc = _read(directory / STEPS_FILE)
        self.steps: dict[str, StepCodeModel] = _validated(steps_doc, StepsFile).root
        self.steps_origin = _Origin(steps_doc, ())
        self.codes = {
            code: StepCodeInfo(code, model.description, model.equipment_class)
            for code, model in self.steps.items()
        }
        for code, model in self.steps.items():
            for section in ("recipe", "measured"):
                for name in getattr(model, section):
                    if name in GEOMETRY:
                        raise self.steps_origin.child(code, section, name).error(
                            f"{name} is the lot geometry; a value cannot have that name"
                        )
        fragments_doc = _read(directory / FRAGMENTS_FILE)
        fragments: dict[str, FragmentModel] = _validated(fragments_doc, FragmentsFile).root
        self.shared: dict[str, _Fragment] = {}
        for name, model in fragments.items():
            self.check_not_a_code(name, _Origin(fragments_doc, (name,)))
            origin = _Origin(fragments_doc, (name,))
            expr = _parse_sequence(model.sequence, origin.child("sequence"))
            self.shared[name] = _Fragment(name, model, expr, origin, shared=True)
        self.resolver = _Resolver(self.codes, self.shared)
        for fragment in self.shared.values():
            self.check_fragment(fragment, {})

    def check_not_a_code(self, name: str, origin: _Origin) -> None:
        if name in self.codes:
            raise origin.error(f"fragment {name} has the name of a step code")

    def check_fragment(self, fragment: _Fragment, local: Mapping[str, _Fragment]) -> Expr:
        body = self.resolver.resolve(
            fragment.expr,
            fragment.model.sequence,
            fragment.origin.child("sequence"),
            local if not fragment.shared else {},
            (fragment.name,),
        )
        own = set(step_codes(body))
        for code in fragment.model.steps:
            if code not in own:
                raise fragment.origin.child("steps", code).error(
                    f"fragment {fragment.name} specifies step {code}, which its sequence "
                    f"{fragment.model.sequence!r} does not contain"
                )
        if counts(body):
            raise fragment.origin.child("sequence").error(
                f"fragment {fragment.name}: a fragment cannot repeat a group; repeat the "
                "fragment in the flow's sequence instead"
            )
        return body

    def flows(self) -> dict[str, Flow]:
        found: dict[str, Flow] = {}
        for path in sorted(self.directory.glob("*.yaml")):
            if path.name in (STEPS_FILE, FRAGMENTS_FILE):
                continue
            flow = self.flow(path)
            if flow.name in found:
                raise FlowError(path, None, f"a second flow named {flow.name!r}")
            found[flow.name] = flow
        if not found:
            raise FlowError(self.directory, None, "no flow files (*.yaml besides steps, fragments)")
        return found

    def flow(self, path: Path) -> Flow:
        doc = _read(path)
        model: FlowModel = _validated(doc, FlowModel)
        top = _Origin(doc, ())
        if model.name != path.stem:
            raise top.child("name").error(
                f"the flow is named {model.name!r} but its file is {path.name}; name the file "
                f"{model.name}.yaml"
            )
        local: dict[str, _Fragment] = {}
        for name, fragment_model in model.fragments.items():
            origin = top.child("fragments", name)
            self.check_not_a_code(name, origin)
            if name in self.shared:
                raise origin.error(f"fragment {name} is already defined in {FRAGMENTS_FILE}")
            expr = _parse_sequence(fragment_model.sequence, origin.child("sequence"))
            local[name] = _Fragment(name, fragment_model, expr, origin, shared=False)
        for fragment in local.values():
            self.check_fragment(fragment, local)

        seq_origin = top.child("sequence")
        parsed = _parse_sequence(model.sequence, seq_origin)
        expr = self.resolver.resolve(parsed, model.sequence, seq_origin, local)
        used_codes = list(dict.fromkeys(step_codes(expr)))
        fragments = {**self.shared, **local}

        drafts = {code: _StepDraft(code, self.steps[code]) for code in used_codes}
        for code, draft in drafts.items():
            draft.merge(self.steps[code], self.steps_origin.child(code))
        specified_by: dict[str, str] = {}
        for name in _groups(expr):
            fragment = fragments[name]
            for code, body in fragment.model.steps.items():
                if code in specified_by:
                    raise fragment.origin.child("steps", code).error(
                        f"step {code} is specified by fragments {specified_by[code]} and {name}, "
                        f"both used by flow {model.name}; specify it in one of them"
                    )
                specified_by[code] = name
                drafts[code].merge(body, fragment.origin.child("steps", code))
        for code, body in model.steps.items():
            if code not in drafts:
                raise top.child("steps", code).error(
                    f"step {code} is not in the sequence of flow {model.name}"
                    f"{_suggest(code, used_codes)}; its steps: {', '.join(used_codes)}"
                )
            drafts[code].merge(body, top.child("steps", code))

        lot_drafts: dict[str, _Draft] = {}
        for name, spec_model in model.lot_params.items():
            where = top.child("lot_params", name)
            if name in GEOMETRY:
                raise where.error(f"{name} is the lot geometry; a lot parameter cannot have it")
            lot_drafts[name] = _Draft(name, where)
            lot_drafts[name].merge(spec_model, where)

        types = self.types(model.name, drafts, lot_drafts)
        builder = _FlowBuilder(model.name, types)
        lot_params = {
            name: builder.value_spec(draft, None, "lot") for name, draft in lot_drafts.items()
        }
        self.check_counts(expr, model.sequence, seq_origin, lot_params)
        steps = {
            code: self.step_spec(builder, draft, used_codes, types)
            for code, draft in drafts.items()
        }
        return Flow(
            name=model.name,
            title=model.title,
            version=model.version,
            document=model.document,
            claims=model.claims,
            sequence=" ".join(model.sequence.split()),
            description=" ".join(model.description.split()),
            lot_params=frozen_mapping(lot_params),
            steps=frozen_mapping(steps),
            expression=expr,
            has_layers=_has_wiring_layer(expr),
        )

    def types(
        self, flow: str, drafts: Mapping[str, _StepDraft], lot: Mapping[str, _Draft]
    ) -> dict[str, tuple[ValueType, _Origin]]:
        """The type of every name a limit may refer to; one name, one type in a flow."""
        types: dict[str, tuple[ValueType, _Origin]] = dict.fromkeys(
            GEOMETRY, ("int", self.steps_origin)
        )
        every = [d for s in drafts.values() for d in (*s.recipe.values(), *s.measured.values())]
        for draft in [*lot.values(), *every]:
            vtype = _value_type(draft)
            if draft.name in types and types[draft.name][0] != vtype:
                first = types[draft.name][1]
                raise draft.origin.error(
                    f"{draft.name} is a {vtype} here but a {types[draft.name][0]} at "
                    f"{first.doc.path.name}:{first.doc.line_of(first.loc)} in flow {flow}; "
                    "a value name means one thing throughout a flow"
                )
            types.setdefault(draft.name, (vtype, draft.origin))
        return types

    def check_counts(
        self, expr: Expr, text: str, origin: _Origin, lot_params: Mapping[str, ValueSpec]
    ) -> None:
        for count in counts(expr):
            if count.param is None:
                continue
            spec = lot_params.get(count.param)
            if spec is None or spec.type != "int":
                raise origin.error(
                    f"sequence: repeat count {count} needs {count.param!r} to be a lot parameter "
                    "of type int (lot_params: name: {type: int, default: ...})"
                )
            lows = [lim.rule.low for lim in spec.limits if isinstance(lim.rule, Range)]
            if not lows or max(lows) - count.value < 0:
                raise origin.error(
                    f"sequence: repeat count {count} could be negative; give {count.param} a "
                    f"range whose low end is at least {count.value}"
                )

    def step_spec(
        self,
        builder: _FlowBuilder,
        draft: _StepDraft,
        used: list[str],
        types: Mapping[str, tuple[ValueType, _Origin]],
    ) -> StepSpec:
        code = draft.code
        checks: list[Limit] = []
        for name, check in draft.checks.items():
            if name not in types or name in GEOMETRY:
                raise check.origin.error(
                    f"checks: {name!r} is no recipe or measured value of flow "
                    f"{builder.name}{_suggest(name, types)}; checks apply to values recorded "
                    "at earlier steps"
                )
            for key in ("type", "default", "optional", "unit", "description", "tool_value"):
                if key in check.fields:
                    raise check.where(key).error(f"checks: {name}: {key} is not part of a check")
            limits = builder.limits(check, name, code, types[name][0])
            if not limits:
                raise check.origin.error(f"checks: {name}: no limit given")
            checks.extend(limits)
        rework: ReworkSpec | None = None
        if draft.rework is not None:
            rework_model, where = draft.rework
            for target in rework_model.through:
                if target not in used:
                    raise where.child("through").error(
                        f"rework of {code} through {target}: {target} is not a step of flow "
                        f"{builder.name}"
                    )
            rework = ReworkSpec(rework_model.max_reworks, frozenset(rework_model.through))
        return StepSpec(
            code=code,
            equipment_class=draft.info.equipment_class,
            recipe={n: builder.value_spec(d, code, "recipe") for n, d in draft.recipe.items()},
            measured={
                n: builder.value_spec(d, code, "measured") for n, d in draft.measured.items()
            },
            checks=tuple(checks),
            rework=rework,
            description=draft.info.description,
        )


def load_library(directory: Path | None = None) -> FlowLibrary:
    """Read, merge and check every defs file; the packaged ``flows/defs`` by default.

    Raises :class:`FlowError` (``path:line: message``) for the first problem found.
    """
    library = _Library(Path(directory) if directory is not None else DEFS)
    return FlowLibrary(
        flows=frozen_mapping(library.flows()), step_codes=frozen_mapping(library.codes)
    )
