"""A virtual tool: the equipment model (drivers.model) brought to life with process time,
noisy measurements, random rejects and injectable alarms.

Transport servers (Modbus, OPC UA) wrap one :class:`VirtualTool` each: they turn requests into
its command methods and publish its status on every change (:meth:`VirtualTool.subscribe`).
The engine itself does no I/O; its only side effect is the asyncio task that plays a setup or
a job. Commands are plain methods that either change the state at once or raise
:class:`Refused` with a wire :class:`~drivers.model.RefusalCode`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, RootModel

from drivers.catalogue import ClassSpec, class_spec
from drivers.model import (
    SITE_GOOD,
    SITE_SKIPPED,
    Alarm,
    AlarmSeverity,
    EquipmentClass,
    Job,
    JobResults,
    MeasuredValue,
    Mode,
    ProcessState,
    Recipe,
    RecipeInfo,
    RefusalCode,
    SiteMap,
    ToolIdentity,
    ToolStatus,
)
from pkgline.datafiles import load_model

PROFILES_PATH = Path(__file__).with_name("profiles.yaml")


class Refused(Exception):
    """A command the virtual tool will not carry out, with the wire refusal code."""

    def __init__(self, code: RefusalCode, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _MeasuredProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    nominal: float = 0.0
    noise: float = Field(0.0, ge=0)
    follows: str | None = None
    minimum: float | None = None


class _ClassProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    setup_time_s: float = Field(ge=0)
    site_time_s: float = Field(ge=0)
    measured: dict[str, _MeasuredProfile]


class _Profiles(RootModel[dict[EquipmentClass, _ClassProfile]]):
    pass


@dataclass(frozen=True, slots=True)
class MeasuredProfile:
    nominal: float
    noise: float
    follows: str | None
    minimum: float | None


@dataclass(frozen=True, slots=True)
class ClassProfile:
    """How a simulated tool of one class behaves."""

    setup_time_s: float
    site_time_s: float
    measured: Mapping[str, MeasuredProfile]


@cache
def load_profiles(path: Path = PROFILES_PATH) -> Mapping[EquipmentClass, ClassProfile]:
    raw = load_model(path, _Profiles).root
    profiles: dict[EquipmentClass, ClassProfile] = {}
    for cls in EquipmentClass:
        if cls not in raw:
            raise ValueError(f"{path}: no profile for equipment class {cls}")
        spec = class_spec(cls)
        got = raw[cls]
        missing = set(spec.measured) - set(got.measured)
        if missing:
            raise ValueError(f"{path}: {cls} has no profile for measured values {sorted(missing)}")
        profiles[cls] = ClassProfile(
            setup_time_s=got.setup_time_s,
            site_time_s=got.site_time_s,
            measured={
                n: MeasuredProfile(m.nominal, m.noise, m.follows, m.minimum)
                for n, m in got.measured.items()
            },
        )
    return profiles


@dataclass(slots=True)
class SimulationSettings:
    """Knobs of one virtual tool (all but the seed can change while it runs)."""

    time_scale: float = 1.0
    """Multiplies every process time; 0 makes setups and jobs instantaneous."""
    reject_rate: float = 0.0
    """Probability that a good incoming site comes out rejected."""
    alarm_rate: float = 0.0
    """Probability that a job ends in an alarm half way through."""
    seed: int | None = None


StatusListener = Callable[[ToolStatus], None]


@dataclass(slots=True)
class _Current:
    state: ProcessState = ProcessState.IDLE
    mode: Mode = Mode.PRODUCTION
    sites_done: int = 0
    sites_total: int = 0
    job: Job | None = None
    alarm: Alarm | None = None
    recipe: Recipe | None = None
    recipe_info: RecipeInfo | None = None
    results: JobResults | None = None
    condition: str | None = None
    """While set, the cause of the alarm is still there: a reset is refused with this."""
    results_fault: Callable[[JobResults], JobResults] | None = None
    listeners: list[StatusListener] = field(default_factory=list)


ALARM_JOB_FAULT = Alarm(1001, "process fault during job", AlarmSeverity.ERROR)


class VirtualTool:
    """One simulated tool of an equipment class."""

    def __init__(
        self,
        tool_id: str,
        equipment_class: EquipmentClass,
        settings: SimulationSettings | None = None,
        *,
        profile: ClassProfile | None = None,
    ):
        self.tool_id = tool_id
        self.equipment_class = equipment_class
        self.spec: ClassSpec = class_spec(equipment_class)
        self.profile = profile or load_profiles()[equipment_class]
        self.settings = settings or SimulationSettings()
        self._rng = random.Random(self.settings.seed)
        self._now = _Current()
        self._task: asyncio.Task[None] | None = None
        self.identity = ToolIdentity(
            tool_id=tool_id,
            equipment_class=equipment_class,
            manufacturer="pkgline simulators",
            model=f"SIM-{equipment_class.value.upper()}",
            serial_number=f"SIM-{tool_id}",
            software_version="1.0",
        )

    # -- reading -------------------------------------------------------------------------

    @property
    def status(self) -> ToolStatus:
        now = self._now
        return ToolStatus(
            state=now.state,
            mode=now.mode,
            sites_done=now.sites_done,
            sites_total=now.sites_total,
            job_id=now.job.job_id if now.job else None,
            alarm=now.alarm,
            results_waiting=now.results is not None,
        )

    @property
    def active_recipe(self) -> RecipeInfo | None:
        return self._now.recipe_info

    @property
    def recipe(self) -> Recipe | None:
        return self._now.recipe

    @property
    def job(self) -> Job | None:
        return self._now.job

    @property
    def results(self) -> JobResults | None:
        """The last job's results, kept until :meth:`acknowledge_results`."""
        return self._now.results

    def subscribe(self, listener: StatusListener) -> Callable[[], None]:
        """Call ``listener`` with the new status after every change; returns an unsubscriber."""
        self._now.listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._now.listeners.remove(listener)

        return unsubscribe

    def _changed(self) -> None:
        status = self.status
        for listener in list(self._now.listeners):
            listener(status)

    # -- commands ------------------------------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        if self._now.state in (ProcessState.SETUP, ProcessState.EXECUTING):
            raise Refused(
                RefusalCode.WRONG_STATE, f"cannot change mode while {self._now.state.name}"
            )
        self._now.mode = Mode(mode)
        self._changed()

    def load_recipe(self, recipe: Recipe) -> None:
        state = self._now.state
        if state not in (ProcessState.IDLE, ProcessState.READY):
            raise Refused(RefusalCode.WRONG_STATE, f"cannot load a recipe while {state.name}")
        if self._now.results is not None:
            raise Refused(RefusalCode.WRONG_STATE, "results of the last job are not acknowledged")
        body: dict[str, MeasuredValue] = {}
        for name, value in recipe.body.items():
            spec = self.spec.recipe.get(name)
            if spec is None:
                raise Refused(
                    RefusalCode.INVALID_ARGUMENT,
                    f"{self.equipment_class} takes no recipe value {name!r}; "
                    f"expected some of {', '.join(sorted(self.spec.recipe))}",
                )
            try:
                body[name] = spec.check(value)
            except ValueError as exc:
                raise Refused(RefusalCode.INVALID_ARGUMENT, str(exc)) from None
        accepted = Recipe(recipe.name, recipe.version, body)
        self._now.recipe = accepted
        self._now.recipe_info = accepted.info()
        self._now.state = ProcessState.SETUP
        self._changed()
        self._run(self._setup())

    def start_job(self, job: Job) -> None:
        now = self._now
        if now.state is not ProcessState.READY:
            raise Refused(RefusalCode.WRONG_STATE, f"cannot start a job while {now.state.name}")
        if now.mode not in (Mode.PRODUCTION, Mode.ENGINEERING):
            raise Refused(RefusalCode.WRONG_MODE, f"cannot start a job in {now.mode.name} mode")
        if now.results is not None:
            raise Refused(RefusalCode.WRONG_STATE, "results of the last job are not acknowledged")
        if not job.job_id:
            raise Refused(RefusalCode.INVALID_ARGUMENT, "a job needs a job id")
        now.job = job
        now.sites_done = 0
        now.sites_total = job.site_map.good_count
        now.state = ProcessState.EXECUTING
        self._changed()
        self._run(self._execute(job))

    def abort(self) -> None:
        now = self._now
        if now.state not in (ProcessState.SETUP, ProcessState.EXECUTING):
            raise Refused(RefusalCode.WRONG_STATE, f"nothing to abort while {now.state.name}")
        self._cancel()
        now.state = ProcessState.ABORTED
        self._changed()

    def reset_alarm(self) -> None:
        now = self._now
        if now.state not in (ProcessState.ALARM, ProcessState.ABORTED):
            raise Refused(
                RefusalCode.WRONG_STATE,
                f"the tool is {now.state.name}, not in ALARM: nothing to reset",
            )
        if now.condition is not None:
            raise Refused(RefusalCode.WRONG_STATE, now.condition)
        now.alarm = None
        now.job = None
        now.sites_done = now.sites_total = 0
        now.state = ProcessState.READY if now.recipe is not None else ProcessState.IDLE
        self._changed()

    def acknowledge_results(self, job_id: str) -> None:
        now = self._now
        if now.results is None:
            raise Refused(RefusalCode.UNKNOWN_JOB, f"no results waiting (asked for {job_id!r})")
        if now.results.job_id != job_id:
            raise Refused(
                RefusalCode.UNKNOWN_JOB,
                f"results waiting are for job {now.results.job_id!r}, not {job_id!r}",
            )
        now.results = None
        now.job = None
        now.sites_done = now.sites_total = 0
        now.state = ProcessState.READY
        self._changed()

    # -- faults --------------------------------------------------------------------------

    def inject_alarm(self, alarm: Alarm = ALARM_JOB_FAULT, *, persists: str | None = None) -> None:
        """Raise an alarm now: whatever runs stops, a running job is lost. ``persists``: its
        cause is still there (a door open, no vacuum) and a reset is refused with this
        reason until :meth:`clear_condition`, as a real tool refuses to reset an interlock."""
        self._cancel()
        self._now.alarm = alarm
        self._now.condition = persists
        self._now.state = ProcessState.ALARM
        self._changed()

    def clear_condition(self) -> None:
        """The cause of the alarm is gone (someone closed the door): it may be reset now. The
        tool stays in ALARM until it is."""
        self._now.condition = None

    def inject_results_fault(self, fault: Callable[[JobResults], JobResults] | None) -> None:
        """From now on, keep ``fault(results)`` instead of each job's true results (None:
        stop): a tool that stores or serves its results wrong, for as long as it keeps them.
        Results already kept are changed too."""
        self._now.results_fault = fault
        if fault is not None and self._now.results is not None:
            self._now.results = fault(self._now.results)
            self._changed()

    # -- process -------------------------------------------------------------------------

    def _run(self, coro: object) -> None:
        assert asyncio.iscoroutine(coro)
        self._cancel()
        self._task = asyncio.get_running_loop().create_task(coro, name=f"sim-{self.tool_id}")

    def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    async def _sleep(self, seconds: float) -> None:
        scaled = seconds * self.settings.time_scale
        await asyncio.sleep(scaled if scaled > 0 else 0)

    async def _setup(self) -> None:
        await self._sleep(self.profile.setup_time_s)
        self._now.state = ProcessState.READY
        self._changed()

    async def _execute(self, job: Job) -> None:
        codes: list[int] = []
        fault_at = -1
        if self.settings.alarm_rate > 0 and self._rng.random() < self.settings.alarm_rate:
            fault_at = job.site_map.good_count // 2
        done = 0
        for incoming in job.site_map.codes:
            if incoming != SITE_GOOD:
                codes.append(SITE_SKIPPED)
                continue
            if done == fault_at:
                self.inject_alarm()
                return
            await self._sleep(self.profile.site_time_s)
            codes.append(self._site_outcome())
            done += 1
            self._now.sites_done = done
            self._changed()
        if not job.site_map.codes or self.settings.time_scale <= 0:
            await asyncio.sleep(0)
        results = JobResults(
            job_id=job.job_id,
            lot_id=job.lot_id,
            step=job.step,
            carrier_id=job.carrier_id,
            measured=self._measure(),
            site_map=SiteMap(job.site_map.rows, job.site_map.cols, tuple(codes)),
        )
        fault = self._now.results_fault
        self._now.results = fault(results) if fault is not None else results
        self._now.state = ProcessState.COMPLETE
        self._changed()

    def _site_outcome(self) -> int:
        if self.settings.reject_rate > 0 and self._rng.random() < self.settings.reject_rate:
            reject_codes = sorted(self.spec.reject_codes)
            return self._rng.choice(reject_codes) if reject_codes else 2
        return SITE_GOOD

    def _measure(self) -> dict[str, MeasuredValue]:
        recipe_body = self._now.recipe.body if self._now.recipe else {}
        values: dict[str, MeasuredValue] = {}
        for name, spec in self.spec.measured.items():
            prof = self.profile.measured[name]
            target = recipe_body.get(prof.follows) if prof.follows else None
            if spec.type == "enum":
                assert spec.values is not None
                values[name] = target if isinstance(target, str) else spec.values[0]
                continue
            nominal = float(target) if isinstance(target, int | float) else prof.nominal
            value = self._rng.gauss(nominal, prof.noise) if prof.noise > 0 else nominal
            if prof.minimum is not None:
                value = max(prof.minimum, value)
            values[name] = round(value) if spec.type == "int" else round(value, 4)
        return values

    async def close(self) -> None:
        """Stop whatever process runs (the state stays as it is)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def __repr__(self) -> str:
        return (
            f"VirtualTool({self.tool_id!r}, {self.equipment_class.value}, {self.status.state.name})"
        )
