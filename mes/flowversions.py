"""Versioned flows: publish, approve (signed), retire; and the flows of every version, for
the lot service to check each lot against its own.

A version's flow is built from the files it holds (:func:`flows.loader.load_sources`) once
per content hash: versions never change, so what was built stays right. :class:`Builds` keeps
what it built for the process and, given a shelf (:class:`pkgline.flowcache.VersionShelf`),
for the next processes too. :class:`VersionedFlows` is what the lot service asks for a lot's
flow: it reads the versions' states and hashes (not their files), and builds only the
versions asked for, reading their files only when no shelf holds them; it reads the versions
table again when asked for one it has not seen (a version published after it started).

Approval is electronically signed (:mod:`mes.domain.flowapproval`): passwords verified
through the identity service (:class:`mes.signing.Signing`), the OS account's signature in
direct mode; each approval row keeps the signer's printed name, meaning, time and method,
linked to the version's content hash. Where ``[signatures] two_signers`` names
``approve_flow`` a second signer with the quality role approves too before the version is
approved. :func:`sign_approval` makes the system's approval of the packaged files (``db
upgrade``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Protocol

from flows import Flow, FlowError, FlowLibrary
from flows.claimed import loosened, reordered
from flows.physical import unphysical_values
from flows.versions import content_hash, diff
from mes.domain.authority import Action, AuthMethod, Principal, Role
from mes.domain.errors import InvalidInput, OperationNotAllowed
from mes.domain.flowapproval import ApprovalStale, approvals_needed, check_approval, check_fresh
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
from mes.domain.identity import SecurityEvent
from mes.domain.signatures import (
    SignatureGiven,
    SignaturePolicy,
    SignatureRefused,
    SignatureRequired,
    SignatureStale,
)
from mes.domain.text import one_line
from mes.engineering import ChangeRecord, flow_version_change
from mes.guard import Guard, SecurityLog
from mes.signing import SignatureVerifier, Signing

FLOW_SIGNED = frozenset({Action.FLOW_APPROVE})
"""The calls of this service that take signatures."""


class FlowVersionStore(Protocol):
    async def versions(
        self, flow: str | None = None, *, with_files: bool = True
    ) -> list[FlowVersion]: ...

    async def publish(
        self,
        flow: str,
        make: Callable[[int], FlowVersion],
        content_hash: str,
        change: Callable[[FlowVersion], SecurityEvent] | None = None,
    ) -> tuple[FlowVersion, bool]:
        """Write the version ``make(next number)`` unless one of ``flow`` holds the same
        content, appending the security event ``change`` makes of a new one, in the same
        transaction."""
        ...

    async def approve(
        self,
        version: FlowVersion,
        decide: Callable[[FlowVersion], tuple[Sequence[Approval], VersionState]],
        change: Callable[[FlowVersion, FlowVersion], SecurityEvent] | None = None,
    ) -> None:
        """Record what ``decide`` makes of the version as stored, appending the security
        event ``change`` makes of it before and after, in the same transaction."""
        ...

    async def retire(
        self,
        version: FlowVersion,
        by: str,
        at: datetime,
        check: Callable[[FlowVersion], None],
        change: Callable[[FlowVersion], SecurityEvent] | None = None,
    ) -> None:
        """Retire ``version`` if ``check`` passes on it as stored, appending the security
        event ``change`` makes of it, in the same transaction."""
        ...


class UnknownVersion(InvalidInput):
    kind = "unknown_version"


class ClaimedLimitLoosened(InvalidInput):
    """A version that drops or loosens a limit the claims fix (each one a line of the
    message)."""

    kind = "claimed_limit_loosened"


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


class Shelf(Protocol):
    """Built versions kept between processes, by content hash (pkgline.flowcache)."""

    def read(self, digest: str) -> FlowLibrary | None: ...

    def write(self, digest: str, library: FlowLibrary) -> None: ...


class Builds:
    """The flows of versions, built from their files once per content hash (immutable: kept
    for the process, and on ``shelf`` for the next ones)."""

    def __init__(self, shelf: Shelf | None = None):
        self._shelf = shelf
        self._built: dict[str, FlowLibrary] = {}
        self.count = 0
        """Libraries built from files by this object (not found built or on the shelf)."""

    def cached(self, digest: str) -> FlowLibrary | None:
        """The library of content hash ``digest`` without its files: built already in this
        process, or on the shelf."""
        library = self._built.get(digest)
        if library is None and self._shelf is not None:
            library = self._shelf.read(digest)
            if library is not None:
                self._built[digest] = library
        return library

    def build(self, version: FlowVersion) -> Flow:
        """The flow a version's files make, checked as the packaged files are."""
        library = self.cached(version.content_hash)
        if library is None:
            from flows.loader import load_sources  # the loader only where a flow is built

            library = load_sources(version.files, f"{version.flow}@{version.version}")
            self.count += 1
            # kept under its hash only when the files are what the hash names
            if content_hash(version.files) == version.content_hash:
                self._built[version.content_hash] = library
                if self._shelf is not None:
                    self._shelf.write(version.content_hash, library)
        return library.get(version.flow)


_BUILDS = Builds()
"""What :func:`build` builds, for the process."""


def build(version: FlowVersion) -> Flow:
    """The flow a version's files make, checked as the packaged files are."""
    return _BUILDS.build(version)


def _draft(
    flow: str, files: Mapping[str, str], author: str, at: datetime, note: str, number: int
) -> FlowVersion:
    return FlowVersion(
        flow, number, content_hash(files), author, at, note, VersionState.DRAFT, dict(files)
    )


def sign_approval(
    version: FlowVersion, principal: Principal, at: datetime, meaning: str = APPROVAL_MEANING
) -> Approval:
    """The approval record of ``principal`` for ``version``'s content, unsigned: the
    system's, for the packaged files (``db upgrade``); a person signs
    (:meth:`FlowVersionService.approve`)."""
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
    """Every version's state and which version new lots of each flow start on; the flow of
    a version once it is asked for (:meth:`need`, or :meth:`get` from what is built)."""

    def __init__(self, store: FlowVersionStore, builds: Builds | None = None):
        self._store = store
        self._builds = builds or _BUILDS
        self._flows: dict[tuple[str, int], Flow] = {}
        self._hashes: dict[tuple[str, int], str] = {}
        self._states: dict[tuple[str, int], VersionState] = {}
        self._active: dict[str, int] = {}
        self._loaded = False

    async def load(self, *, every: bool = False) -> None:
        """Read the versions' states and content hashes (one query, no files, nothing
        built); ``every``: build every version too (a long-running process)."""
        versions = await self._store.versions(with_files=False)
        by_flow: dict[str, list[FlowVersion]] = {}
        for v in versions:
            by_flow.setdefault(v.flow, []).append(v)
        self._hashes = {(v.flow, v.version): v.content_hash for v in versions}
        self._states = {(v.flow, v.version): v.state for v in versions}
        self._active = {}
        for name, vs in by_flow.items():
            found = active(vs)
            if found is not None:
                self._active[name] = found.version
        self._loaded = True
        if every:
            await self.need(self._hashes, reload=False)

    async def need(self, keys: Iterable[tuple[str, int]], *, reload: bool = True) -> None:
        """Build the flows of these versions (flow, number) not built yet: from what is
        built or shelved, else from their files (one read per flow). A version not known
        (published since the versions were read) has them read again first."""
        wanted = set(keys)
        if reload and (not self._loaded or not wanted <= self._hashes.keys()):
            await self.load()
        missing = {k for k in wanted if k in self._hashes and self.get(*k) is None}
        for name in sorted({flow for flow, _ in missing}):
            for v in await self._store.versions(name):
                key = (v.flow, v.version)
                if key in missing:
                    self._flows[key] = self._builds.build(v)

    def get(self, name: str, version: int) -> Flow | None:
        """The version's flow if built (here, by another object, or shelved); None: not
        built yet (:meth:`need`), or no such version."""
        key = (name, version)
        flow = self._flows.get(key)
        if flow is None and key in self._hashes:
            library = self._builds.cached(self._hashes[key])
            if library is not None:
                flow = self._flows[key] = library.get(name)
        return flow

    def state(self, name: str, version: int) -> VersionState | None:
        return self._states.get((name, version))

    def has(self, name: str) -> bool:
        """The flow has a published version (of any state)."""
        return any(key[0] == name for key in self._states)

    async def active(self, name: str) -> tuple[int, Flow] | None:
        """The version new lots of the flow start on, and its flow (built if need be)."""
        number = self._active.get(name)
        if number is None:
            return None
        await self.need([(name, number)], reload=False)
        flow = self.get(name, number)
        return None if flow is None else (number, flow)

    @property
    def loaded(self) -> bool:
        """The versions were read (a database with none: every lot on its file's flow)."""
        return self._loaded and bool(self._states)


class FlowVersionService:
    """Publish, list, compare, approve and retire flow versions; each a transaction."""

    def __init__(
        self,
        store: FlowVersionStore,
        clock: Callable[[], datetime],
        *,
        principal: Principal | None = None,
        security: SecurityLog | None = None,
        builds: Builds | None = None,
        signatures: SignaturePolicy | None = None,
        verifier: SignatureVerifier | None = None,
        claimed: FlowLibrary | None = None,
        unreported: Callable[[Flow], list[str]] | None = None,
        untaken: Callable[[Flow], list[str]] | None = None,
    ):
        """``claimed``: the flows whose limits the claims fix (the packaged flow files, read
        when first needed, by default); a published version of one of them keeps its
        limits (:func:`flows.claimed.loosened`). ``unreported``: each measured value of a
        flow that its step's equipment class does not report, in words (the equipment
        catalogue is the drivers', which mes does not import: the caller gives the check);
        a version with one is refused, since its limits would never see a tool's value.
        ``untaken``: likewise each recipe value of a tool step that its class does not take
        (the material and claim values kept for the lot record aside): the controller sends
        the tool only what it takes, so such a value would be recorded but never run."""
        self._claimed = claimed
        self._unreported = unreported
        self._untaken = untaken
        self._store = store
        self._clock = clock
        self._guard = Guard(principal, security, clock)
        self.builds = builds or _BUILDS
        self.signing = Signing(signatures or SignaturePolicy(), verifier, security, clock)

    @property
    def approvals_needed(self) -> int:
        """How many people approve a version (2 where ``two_signers`` names approve_flow)."""
        return approvals_needed(self.signing.policy)

    async def publish(
        self,
        files_by_flow: Mapping[str, Mapping[str, str]],
        note: str,
        *,
        by: Principal | None = None,
    ) -> list[Published]:
        """Publish each flow's files as a new draft version (a flow whose content is
        published already keeps its version). Every flow is built and checked first: one
        that does not load is refused with its file and line, one that drops or loosens a
        limit the claims fix is refused with each such limit, and nothing is written."""
        await self._guard.allow(by, Action.FLOW_PUBLISH)
        if not one_line(note, "a change note"):
            raise InvalidInput("a change note is required (--note: what changed and why)")
        if not files_by_flow:
            raise InvalidInput("no flow to publish")
        who = self._guard.who(by)
        from flows.loader import load_sources  # the loader only where a flow is built

        for name, files in files_by_flow.items():
            try:
                flow = load_sources(files, name).get(name)
            except FlowError as exc:
                raise InvalidInput(f"flow {name} is not published: {exc}") from None
            bad = unphysical_values(flow)
            if bad:
                raise InvalidInput(
                    f"flow {name} is not published: these values cannot be physical (a "
                    "default goes to the tool as it is; expected values that can be):"
                    + "".join(f"\n  - {text}" for text in bad)
                )
            unknown = self._unreported(flow) if self._unreported is not None else []
            if unknown:
                raise InvalidInput(
                    f"flow {name} is not published: the tools do not report these measured "
                    "values, so no limit on them would ever apply (a value is named as its "
                    "tool reports it, or aliased with tool_value: docs/flow-files.md):"
                    + "".join(f"\n  - {text}" for text in unknown)
                )
            untaken = self._untaken(flow) if self._untaken is not None else []
            if untaken:
                raise InvalidInput(
                    f"flow {name} is not published: the tools do not take these recipe "
                    "values, so a lot would record them but its tool would never run them (a "
                    "value is named as its tool takes it, or aliased with tool_value: "
                    "docs/flow-files.md):" + "".join(f"\n  - {text}" for text in untaken)
                )
            self._check_claims(flow)
        out = []
        for name, files in files_by_flow.items():
            digest = content_hash(files)
            author = who.name if who is not None else SYSTEM_AUTHOR
            now = self._clock()
            record = ChangeRecord.of(who, author, "flow_publish", now)

            def change(new: FlowVersion, record: ChangeRecord = record) -> SecurityEvent:
                return record.event(flow_version_change(None, new))

            make = partial(_draft, name, files, author, now, note.strip())
            version, new = await self._store.publish(name, make, digest, change)
            out.append(Published(version, new))
        return out

    def _check_claims(self, flow: Flow) -> None:
        if self._claimed is None:
            from flows import load_library

            self._claimed = load_library()
        packaged = self._claimed.flows.get(flow.name)
        if packaged is None:
            return  # a flow of the line's own: its claims are as its files cite them
        found = loosened(packaged, flow) + reordered(packaged, flow)
        if found:
            raise ClaimedLimitLoosened(
                f"flow {flow.name} is not published: a version may tighten the limits the "
                "claims fix, never drop or loosen them, and keeps their step order "
                "(docs/flow-files.md, 'Where each limit comes from'):"
                + "".join(f"\n  - {text}" for text in found)
            )

    async def active_version(self, flow: str, *, by: Principal | None = None) -> int | None:
        """The version new lots of ``flow`` start on: its newest approved one (None: none).
        An older draft approved later does not take its place."""
        approved = [
            v.version for v in await self.versions(flow, by=by) if v.state is VersionState.APPROVED
        ]
        return max(approved, default=None)

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
        return diff(self.builds.build(a), self.builds.build(b))

    async def approve(
        self,
        flow: str,
        number: int,
        *,
        by: Principal | None = None,
        signatures: Sequence[SignatureGiven] = (),
    ) -> FlowVersion:
        """Approve a draft, electronically signed: the first approval an engineer's; where
        the policy asks for two (``approve_flow``), a second, different person with the
        quality role signs too (in this call, or a later one: until then the version stays a
        draft, approved by 1 of 2). New lots start on it once approved. Each approval is
        linked to the version's content hash; a refused signature is a security event."""
        await self._guard.allow(by, Action.FLOW_APPROVE)
        version = await self.version(flow, number, by=by)
        who = self._guard.who(by)
        try:
            check_fresh(version, signatures)  # a replay is told it is one, before anything
        except ApprovalStale as stale:
            await self.signing.refused(who, stale)
            raise
        check_approvable(version)
        if who is None:
            raise OperationNotAllowed("an approval needs a person to sign it")
        record = ChangeRecord.of(who, who.name, "flow_approve", self._clock())
        try:
            signed = await self.signing.verify(
                who, Action.FLOW_APPROVE, None, signatures, requests=FLOW_SIGNED
            )

            def decide(current: FlowVersion) -> tuple[Sequence[Approval], VersionState]:
                return check_approval(current, who, signed, self.signing.policy, record.at)

            def change(before: FlowVersion, after: FlowVersion) -> SecurityEvent:
                return record.event(flow_version_change(before, after))

            await self._store.approve(version, decide, change)
        except (SignatureRefused, SignatureStale, SignatureRequired) as refused:
            await self.signing.refused(who, refused)
            raise
        return await self.version(flow, number, by=by)

    async def retire(
        self, flow: str, number: int, reason: str, *, by: Principal | None = None
    ) -> FlowVersion:
        """No new lot starts on the version; lots running on it go on to their end. Recorded
        in the security log with ``reason``, why (``flow_retire``: :mod:`mes.engineering`),
        in the same transaction; a blank reason is refused."""
        await self._guard.allow(by, Action.FLOW_RETIRE)
        why = one_line(reason, "the reason")
        if not why:
            raise InvalidInput("a reason is required (--reason: why the version is retired)")
        version = await self.version(flow, number, by=by)
        check_retirable(version)
        who = self._guard.who(by)
        name = who.name if who is not None else SYSTEM_AUTHOR
        now = self._clock()
        record = ChangeRecord.of(who, name, "flow_retire", now)
        retired = replace(version, state=VersionState.RETIRED, retired_at=now, retired_by=name)

        def change(current: FlowVersion) -> SecurityEvent:
            after = replace(current, state=VersionState.RETIRED, retired_at=now, retired_by=name)
            return record.event(flow_version_change(current, after, why))

        await self._store.retire(version, name, now, check_retirable, change)
        return retired

    async def seed(self, names: Sequence[str], directory: Path | None = None) -> list[str]:
        """Publish and approve the packaged files of every flow that has no version yet, as
        version 1 by the system (``db upgrade``): the flows seeded."""
        from flows.loader import flow_sources

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
            approval = sign_approval(version, SYSTEM, now)

            def decide(
                current: FlowVersion, approval: Approval = approval
            ) -> tuple[Sequence[Approval], VersionState]:
                check_approvable(current)
                return (approval,), VersionState.APPROVED

            await self._store.approve(version, decide)
            seeded.append(name)
        return seeded

    async def drift(self, library: FlowLibrary, directory: Path | None = None) -> list[str]:
        """Flows whose files on disk differ from their active version (start-up says so: a
        changed file never changes a version silently)."""
        from flows.loader import flow_sources

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
