"""Versioned flows: publish, approve (signed), retire; and the flows of every version, for
the lot service to check each lot against its own.

A version's flow is built from the files it holds (:func:`flows.loader.load_sources`) once
per process and content hash: versions never change, so what was built stays right.
:class:`VersionedFlows` is what the lot service asks for a lot's flow; it reads the versions
table when asked for one it has not seen (a version published after the process started).

Approval goes through :func:`sign_approval`, the one place that makes an approval record
from the principal (who, printed name, meaning, time, content hash): electronic signatures
(re-authentication, the signature manifest) take its place there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Protocol

from flows import Flow, FlowError, FlowLibrary
from flows.loader import flow_sources, load_sources
from flows.versions import content_hash, diff
from mes.domain.authority import Action, AuthMethod, Principal, Role
from mes.domain.errors import InvalidInput, OperationNotAllowed
from mes.domain.flowversions import (
    APPROVAL_MEANING,
    SYSTEM_AUTHOR,
    Approval,
    FlowVersion,
    VersionState,
    active,
    check_approvable,
    check_retirable,
)
from mes.guard import Guard, SecurityLog


class FlowVersionStore(Protocol):
    async def versions(
        self, flow: str | None = None, *, with_files: bool = True
    ) -> list[FlowVersion]: ...

    async def publish(
        self, flow: str, make: Callable[[int], FlowVersion], content_hash: str
    ) -> tuple[FlowVersion, bool]: ...

    async def approve(
        self, version: FlowVersion, approval: Approval, check: Callable[[FlowVersion], None]
    ) -> None: ...

    async def retire(
        self, version: FlowVersion, by: str, at: datetime, check: Callable[[FlowVersion], None]
    ) -> None: ...


class UnknownVersion(InvalidInput):
    kind = "unknown_version"


class VersionNotLoaded(Exception):
    """A lot is on a version this process has not built: read the versions and try again
    (:class:`mes.service.LotService` does, once)."""

    def __init__(self, flow: str, version: int):
        super().__init__(f"flow {flow} version {version} is not loaded")
        self.flow = flow
        self.version = version


SYSTEM = Principal(
    SYSTEM_AUTHOR, frozenset({Role.ENGINEER}), AuthMethod.SYSTEM, "pkgline (packaged flow files)"
)
"""Who publishes and approves the packaged flow files as version 1 (``db upgrade``)."""


_BUILT: dict[str, FlowLibrary] = {}
"""Libraries built from versions' files, by content hash (immutable: kept for the process)."""


def build(version: FlowVersion) -> Flow:
    """The flow a version's files make, checked as the packaged files are."""
    library = _BUILT.get(version.content_hash)
    if library is None:
        library = _BUILT[version.content_hash] = load_sources(
            version.files, f"{version.flow}@{version.version}"
        )
    return library.get(version.flow)


def _draft(
    flow: str, files: Mapping[str, str], author: str, at: datetime, note: str, number: int
) -> FlowVersion:
    return FlowVersion(
        flow, number, content_hash(files), author, at, note, VersionState.DRAFT, dict(files)
    )


def sign_approval(
    version: FlowVersion, principal: Principal, at: datetime, meaning: str = APPROVAL_MEANING
) -> Approval:
    """The approval record of ``principal`` for ``version``'s content. The one function an
    electronic signature replaces."""
    return Approval(
        flow=version.flow,
        version=version.version,
        content_hash=version.content_hash,
        signer=principal.name,
        printed_name=principal.printed_name or principal.name,
        meaning=meaning,
        at=at,
        method=principal.method.value,
    )


@dataclass(frozen=True, slots=True)
class Published:
    version: FlowVersion
    new: bool
    """False: a version of the same content existed; nothing was written."""


class VersionedFlows:
    """Every version's flow, and which version new lots of each flow start on."""

    def __init__(self, store: FlowVersionStore):
        self._store = store
        self._flows: dict[tuple[str, int], Flow] = {}
        self._active: dict[str, tuple[int, Flow]] = {}
        self._states: dict[tuple[str, int], VersionState] = {}
        self._loaded = False

    async def load(self) -> None:
        """Read the versions' states, and the files of the versions not built yet."""
        versions = await self._store.versions(with_files=False)
        new = {v.flow for v in versions if (v.flow, v.version) not in self._flows}
        flows = dict(self._flows)
        for name in sorted(new):
            for v in await self._store.versions(name):
                flows[(v.flow, v.version)] = self._flows.get((v.flow, v.version)) or build(v)
        by_flow: dict[str, list[FlowVersion]] = {}
        for v in versions:
            by_flow.setdefault(v.flow, []).append(v)
        self._states = {(v.flow, v.version): v.state for v in versions}
        self._flows = flows
        self._loaded = True
        self._active = {}
        for name, vs in by_flow.items():
            found = active(vs)
            if found is not None:
                self._active[name] = (found.version, flows[(name, found.version)])

    def get(self, name: str, version: int) -> Flow | None:
        return self._flows.get((name, version))

    def state(self, name: str, version: int) -> VersionState | None:
        return self._states.get((name, version))

    def has(self, name: str) -> bool:
        """The flow has a published version (of any state)."""
        return any(key[0] == name for key in self._flows)

    def all_flows(self) -> list[Flow]:
        return list(self._flows.values())

    def active(self, name: str) -> tuple[int, Flow] | None:
        return self._active.get(name)

    @property
    def active_flows(self) -> Mapping[str, Flow]:
        return {name: flow for name, (_, flow) in self._active.items()}

    @property
    def loaded(self) -> bool:
        """The versions were read (a database with none: every lot on its file's flow)."""
        return self._loaded and bool(self._flows)


class FlowVersionService:
    """Publish, list, compare, approve and retire flow versions; each a transaction."""

    def __init__(
        self,
        store: FlowVersionStore,
        clock: Callable[[], datetime],
        *,
        principal: Principal | None = None,
        security: SecurityLog | None = None,
    ):
        self._store = store
        self._clock = clock
        self._guard = Guard(principal, security, clock)

    async def publish(
        self,
        files_by_flow: Mapping[str, Mapping[str, str]],
        note: str,
        *,
        by: Principal | None = None,
    ) -> list[Published]:
        """Publish each flow's files as a new draft version (a flow whose content is
        published already keeps its version). Every flow is built and checked first: one
        that does not load is refused with its file and line, and nothing is written."""
        await self._guard.allow(by, Action.FLOW_PUBLISH)
        if not note.strip():
            raise InvalidInput("a change note is required (--note: what changed and why)")
        if not files_by_flow:
            raise InvalidInput("no flow to publish")
        who = self._guard.who(by)
        for name, files in files_by_flow.items():
            try:
                load_sources(files, name).get(name)
            except FlowError as exc:
                raise InvalidInput(f"flow {name} is not published: {exc}") from None
        out = []
        for name, files in files_by_flow.items():
            digest = content_hash(files)
            author = who.name if who is not None else SYSTEM_AUTHOR
            now = self._clock()

            make = partial(_draft, name, files, author, now, note.strip())
            version, new = await self._store.publish(name, make, digest)
            out.append(Published(version, new))
        return out

    async def versions(self, flow: str, *, by: Principal | None = None) -> list[FlowVersion]:
        await self._guard.allow(by, Action.READ)
        found = await self._store.versions(flow, with_files=False)
        if not found:
            names = sorted({v.flow for v in await self._store.versions(with_files=False)})
            raise UnknownVersion(
                f"flow {flow!r} has no published version; flows: {', '.join(names) or 'none'}",
                allowed=names,
            )
        return found

    async def version(
        self, flow: str, number: int | None = None, *, by: Principal | None = None
    ) -> FlowVersion:
        """One version with its files; None: the active one (else the newest)."""
        await self._guard.allow(by, Action.READ)
        found = await self._store.versions(flow)
        if not found:
            raise UnknownVersion(f"flow {flow!r} has no published version")
        if number is None:
            return active(found) or found[-1]
        for v in found:
            if v.version == number:
                return v
        raise UnknownVersion(
            f"flow {flow} has no version {number}; versions: "
            f"{', '.join(str(v.version) for v in found)}",
            allowed=[str(v.version) for v in found],
        )

    async def diff(
        self, flow: str, old: int, new: int, *, by: Principal | None = None
    ) -> list[str]:
        a = await self.version(flow, old, by=by)
        b = await self.version(flow, new, by=by)
        return diff(build(a), build(b))

    async def approve(self, flow: str, number: int, *, by: Principal | None = None) -> FlowVersion:
        """Approve a draft: signed by the principal (engineering). New lots start on it."""
        await self._guard.allow(by, Action.FLOW_APPROVE)
        version = await self.version(flow, number, by=by)
        check_approvable(version)
        who = self._guard.who(by)
        if who is None:
            raise OperationNotAllowed("an approval needs a person to sign it")
        approval = sign_approval(version, who, self._clock())
        await self._store.approve(version, approval, check_approvable)
        return replace(
            version, state=VersionState.APPROVED, approvals=(*version.approvals, approval)
        )

    async def retire(self, flow: str, number: int, *, by: Principal | None = None) -> FlowVersion:
        """No new lot starts on the version; lots running on it go on to their end."""
        await self._guard.allow(by, Action.FLOW_RETIRE)
        version = await self.version(flow, number, by=by)
        check_retirable(version)
        who = self._guard.who(by)
        name = who.name if who is not None else SYSTEM_AUTHOR
        now = self._clock()
        await self._store.retire(version, name, now, check_retirable)
        return replace(version, state=VersionState.RETIRED, retired_at=now, retired_by=name)

    async def seed(self, names: Sequence[str], directory: Path | None = None) -> list[str]:
        """Publish and approve the packaged files of every flow that has no version yet, as
        version 1 by the system (``db upgrade``): the flows seeded."""
        have = {v.flow for v in await self._store.versions(with_files=False)}
        seeded = []
        for name in names:
            if name in have:
                continue
            files = flow_sources(name, directory)
            now = self._clock()
            digest = content_hash(files)

            note = "the packaged flow files, as installed"
            make = partial(_draft, name, files, SYSTEM_AUTHOR, now, note)
            version, _ = await self._store.publish(name, make, digest)
            system = SYSTEM
            await self._store.approve(
                version, sign_approval(version, system, now), check_approvable
            )
            seeded.append(name)
        return seeded

    async def drift(self, library: FlowLibrary, directory: Path | None = None) -> list[str]:
        """Flows whose files on disk differ from their active version (start-up says so: a
        changed file never changes a version silently)."""
        out: list[str] = []
        versions = await self._store.versions(with_files=False)
        if not versions:  # never seeded (a schema made without db upgrade): the files rule
            return out
        for name in library.flows:
            mine = [v for v in versions if v.flow == name]
            current = active(mine)
            digest = content_hash(flow_sources(name, directory))
            if current is None:
                out.append(f"flow {name}: no approved version (files on disk: {digest[:12]})")
            elif current.content_hash != digest:
                out.append(
                    f"flow {name}: the files on disk ({digest[:12]}) differ from the active "
                    f"version {current.version} ({current.content_hash[:12]}); lots follow "
                    "the version: publish and approve the files to use them"
                )
        return out
