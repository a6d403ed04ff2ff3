"""Read the defs directory, merge and check it, and build the flow library.

Merge order for every step of a flow: ``steps.yaml`` <- the fragment that specifies the step
(if the flow uses it) <- the flow file. Value specs merge field by field, so a flow file can
override a default or a claim and inherit the rest; ``default: null`` removes a default.
Everything is checked before a flow is built; every problem is a :class:`FlowError` naming
the file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flows.automaton import compile_expression
from flows.errors import FlowError, suggest
from flows.flow import Flow, FlowLibrary
from flows.grammar import Expr, counts, step_codes
from flows.model import (
    GEOMETRY,
    Limit,
    QueueTime,
    Range,
    ReworkSpec,
    StepCodeInfo,
    StepSpec,
    ValueSpec,
    ValueType,
    frozen_mapping,
)
from flows.origin import Origin, read_doc, validated
from flows.resolve import (
    FRAGMENTS_FILE,
    STEPS_FILE,
    Fragment,
    Resolver,
    fragment_groups,
    has_wiring_layer,
    parse_sequence,
)
from flows.schema import FlowModel, FragmentModel, FragmentsFile, StepCodeModel, StepsFile
from flows.specs import Draft, SpecBuilder, StepDraft, value_type
from pkgline.datafiles import YamlDocument

DEFS = Path(__file__).with_name("defs")
"""The packaged flow definitions (also ``flows.DEFS``)."""


class _Library:
    def __init__(self, directory: Path, texts: Mapping[str, str] | None = None):
        self.directory = directory
        self.texts = texts
        """File name -> text, read instead of the directory (a published flow version)."""
        steps_doc = self.read(STEPS_FILE)
        self.steps: dict[str, StepCodeModel] = validated(steps_doc, StepsFile).root
        self.steps_origin = Origin(steps_doc, ())
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
        fragments_doc = self.read(FRAGMENTS_FILE)
        fragments: dict[str, FragmentModel] = validated(fragments_doc, FragmentsFile).root
        self.shared: dict[str, Fragment] = {}
        for name, model in fragments.items():
            origin = Origin(fragments_doc, (name,))
            self.check_not_a_code(name, origin)
            expr = parse_sequence(model.sequence, origin.child("sequence"))
            self.shared[name] = Fragment(name, model, expr, origin, shared=True)
        self.resolver = Resolver(self.codes, self.shared)
        for fragment in self.shared.values():
            self.check_fragment(fragment, {})

    def read(self, name: str) -> YamlDocument:
        if self.texts is None:
            return read_doc(self.directory / name)
        if name not in self.texts:
            raise FlowError(self.directory / name, None, "the file is missing from the version")
        return read_doc(self.directory / name, self.texts[name])

    def check_not_a_code(self, name: str, origin: Origin) -> None:
        if name in self.codes:
            raise origin.error(f"fragment {name} has the name of a step code")

    def check_fragment(self, fragment: Fragment, local: Mapping[str, Fragment]) -> Expr:
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
        names = (
            self.texts
            if self.texts is not None
            else (p.name for p in self.directory.glob("*.yaml"))
        )
        for path in sorted(self.directory / n for n in names if n.endswith(".yaml")):
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
        doc = self.read(path.name)
        model: FlowModel = validated(doc, FlowModel)
        top = Origin(doc, ())
        if model.name != path.stem:
            raise top.child("name").error(
                f"the flow is named {model.name!r} but its file is {path.name}; name the file "
                f"{model.name}.yaml"
            )
        local = self.local_fragments(model, top)
        seq_origin = top.child("sequence")
        parsed = parse_sequence(model.sequence, seq_origin)
        expr = self.resolver.resolve(parsed, model.sequence, seq_origin, local)
        drafts = self.step_drafts(model, top, expr, {**self.shared, **local})
        lot_drafts = self.lot_drafts(model, top)

        types = self.types(model.name, drafts, lot_drafts)
        builder = SpecBuilder(model.name, types)
        lot_params = {
            name: builder.value_spec(draft, None, "lot") for name, draft in lot_drafts.items()
        }
        self.check_counts(expr, seq_origin, lot_params)
        recorded = {n for d in drafts.values() for n in (*d.recipe, *d.measured)}
        steps = {
            code: self.step_spec(builder, draft, list(drafts), recorded)
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
            has_layers=has_wiring_layer(expr),
            queue_times=self.queue_times(model, top, list(drafts), expr, lot_params),
        )

    def queue_times(
        self,
        model: FlowModel,
        top: Origin,
        steps: list[str],
        expr: Expr,
        lot_params: Mapping[str, ValueSpec],
    ) -> tuple[QueueTime, ...]:
        found: list[QueueTime] = []
        for n, q in enumerate(model.queue_times):
            where = top.child("queue_times", n)
            for step in (q.from_step, q.to_step):
                if step not in steps:
                    raise where.error(
                        f"queue time {q.from_step} -> {q.to_step}: {step} is not a step of flow "
                        f"{model.name}{suggest(step, steps)}; expected one of {', '.join(steps)}"
                    )
            if not _ever_follows(expr, lot_params, q.from_step, q.to_step):
                raise where.error(
                    f"queue time {q.from_step} -> {q.to_step}: {q.to_step} never comes after "
                    f"{q.from_step} in flow {model.name} ('{' '.join(model.sequence.split())}'), "
                    "so the limit would never run; expected a step that follows "
                    f"{q.from_step}"
                )
            found.append(
                QueueTime(
                    q.from_step,
                    q.to_step,
                    float(q.max_minutes),
                    None if q.warn_minutes is None else float(q.warn_minutes),
                    q.origin,
                )
            )
        return tuple(found)

    def local_fragments(self, model: FlowModel, top: Origin) -> dict[str, Fragment]:
        """The fragments a flow file defines for itself (parsed and checked)."""
        local: dict[str, Fragment] = {}
        for name, fragment_model in model.fragments.items():
            origin = top.child("fragments", name)
            self.check_not_a_code(name, origin)
            if name in self.shared:
                raise origin.error(f"fragment {name} is already defined in {FRAGMENTS_FILE}")
            expr = parse_sequence(fragment_model.sequence, origin.child("sequence"))
            local[name] = Fragment(name, fragment_model, expr, origin, shared=False)
        for fragment in local.values():
            self.check_fragment(fragment, local)
        return local

    def step_drafts(
        self, model: FlowModel, top: Origin, expr: Expr, fragments: Mapping[str, Fragment]
    ) -> dict[str, StepDraft]:
        """steps.yaml <- the fragment specifying the step <- the flow file, for each step the
        flow's sequence runs."""
        used = list(dict.fromkeys(step_codes(expr)))
        drafts = {code: StepDraft(code, self.steps[code]) for code in used}
        for code, draft in drafts.items():
            draft.merge(self.steps[code], self.steps_origin.child(code))
        specified_by: dict[str, str] = {}
        for name in fragment_groups(expr):
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
                    f"{suggest(code, used)}; its steps: {', '.join(used)}"
                )
            drafts[code].merge(body, top.child("steps", code))
        return drafts

    def lot_drafts(self, model: FlowModel, top: Origin) -> dict[str, Draft]:
        drafts: dict[str, Draft] = {}
        for name, spec_model in model.lot_params.items():
            where = top.child("lot_params", name)
            if name in GEOMETRY:
                raise where.error(f"{name} is the lot geometry; a lot parameter cannot have it")
            drafts[name] = Draft(name, where)
            drafts[name].merge(spec_model, where)
        return drafts

    def types(
        self, flow: str, drafts: Mapping[str, StepDraft], lot: Mapping[str, Draft]
    ) -> dict[str, tuple[ValueType, Origin]]:
        """The type of every name a limit may refer to; one name, one type in a flow."""
        types: dict[str, tuple[ValueType, Origin]] = dict.fromkeys(
            GEOMETRY, ("int", self.steps_origin)
        )
        every = [d for s in drafts.values() for d in (*s.recipe.values(), *s.measured.values())]
        for draft in [*lot.values(), *every]:
            vtype = value_type(draft)
            if draft.name in types and types[draft.name][0] != vtype:
                first = types[draft.name][1]
                raise draft.origin.error(
                    f"{draft.name} is a {vtype} here but a {types[draft.name][0]} at "
                    f"{first.doc.path.name}:{first.line()} in flow {flow}; "
                    "a value name means one thing throughout a flow"
                )
            types.setdefault(draft.name, (vtype, draft.origin))
        return types

    def check_counts(self, expr: Expr, origin: Origin, lot_params: Mapping[str, ValueSpec]) -> None:
        """Every repeat count names an int lot parameter whose range keeps it at 0 or more."""
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
        self, builder: SpecBuilder, draft: StepDraft, used: list[str], recorded: set[str]
    ) -> StepSpec:
        code = draft.code
        checks: list[Limit] = []
        for name, check in draft.checks.items():
            if name not in recorded:
                raise check.origin.error(
                    f"checks: {name!r} is no recipe or measured value of flow "
                    f"{builder.name}{suggest(name, recorded)}; checks apply to values recorded "
                    "at earlier steps"
                )
            limits = builder.limits(check, name, code, builder.types[name][0])
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


def load_sources(files: Mapping[str, str], name: str = "version") -> FlowLibrary:
    """The flows of ``files`` (file name -> text: ``steps.yaml``, ``fragments.yaml`` and flow
    files), checked as :func:`load_library` checks a directory; errors name ``name/FILE``."""
    library = _Library(Path(name), files)
    return FlowLibrary(
        flows=frozen_mapping(library.flows()), step_codes=frozen_mapping(library.codes)
    )


def flow_sources(flow: str, directory: Path | None = None) -> dict[str, str]:
    """The files a flow of the defs directory is made of (what a version of it holds):
    ``steps.yaml``, ``fragments.yaml`` and the flow's own file, by name."""
    where = Path(directory) if directory is not None else DEFS
    return {
        name: (where / name).read_text(encoding="utf-8")
        for name in (STEPS_FILE, FRAGMENTS_FILE, f"{flow}.yaml")
    }


def load_library(directory: Path | None = None) -> FlowLibrary:
    """Read, merge and check every defs file; the packaged ``flows/defs`` by default.

    Raises :class:`FlowError` (``path:line: message``) for the first problem found.
    """
    library = _Library(Path(directory) if directory is not None else DEFS)
    return FlowLibrary(
        flows=frozen_mapping(library.flows()), step_codes=frozen_mapping(library.codes)
    )


def _ever_follows(expr: Expr, lot_params: Mapping[str, ValueSpec], first: str, then: str) -> bool:
    """Whether a path of the flow can take ``then`` some time after ``first``, with the
    repeat counts at their lot parameters' defaults or at the top of their ranges."""
    names = [c.param for c in counts(expr) if c.param is not None]
    cases: list[dict[str, int]] = [{}, {}]
    for name in names:
        spec = lot_params[name]
        highs = [int(lim.rule.high) for lim in spec.limits if isinstance(lim.rule, Range)]
        default = spec.default if isinstance(spec.default, int) else min(highs, default=1)
        cases[0][name], cases[1][name] = default, min(highs, default=default)
    for case in cases:
        automaton = compile_expression(expr, case)
        todo = [
            q for p, s in enumerate(automaton.symbols) if s == first for q in automaton.follow[p]
        ]
        seen: set[int] = set()
        while todo:
            q = todo.pop()
            if q in seen:
                continue
            if automaton.symbols[q] == then:
                return True
            seen.add(q)
            todo.extend(automaton.follow[q])
    return False
