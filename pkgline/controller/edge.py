"""The edge of a tool's runner: what a tool sends is read and checked here before anything of
it is recorded, and what the records keep of a refusal or of work cut short is put together
here.

- :func:`read_results`: a job's results, checked against the job; a reading that does not fit
  is read once more before anything is concluded.
- :func:`refusal`: the quarantine's reason and record for results that do not fit.
- :func:`partial_work`: the sites an interrupted job had done, for the hold's record.
"""

from __future__ import annotations

from typing import Any

import structlog

from drivers.catalogue import ClassSpec
from drivers.errors import ProtocolError
from drivers.interface import ToolDriver
from drivers.model import JobResults, SiteMap, ToolStatus
from flows import Flow
from pkgline.controller import translate
from pkgline.controller.translate import CheckedResults, ExpectedResults, ResultsRefused

log = structlog.get_logger("pkgline.controller")


async def read_results(
    driver: ToolDriver,
    expected: ExpectedResults,
    flow: Flow,
    spec: ClassSpec,
    first: JobResults | None = None,
) -> CheckedResults:
    """The job's results, checked (:func:`translate.check_results`). Results that do not fit,
    or that do not even decode (:class:`ProtocolError`: a value of the wrong type, a site map
    of the wrong shape), are read once more before anything is concluded: the second reading
    decides, and what the first said goes into the refusal when it differs. ``first``:
    results already read once."""
    refused: ResultsRefused | None = None
    while True:
        try:
            results = first if first is not None else await driver.results()
            return translate.check_results(results, expected, flow, spec)
        except ProtocolError as exc:
            problem = ResultsRefused("results", exc.message, "results the tool's map decodes")
        except ResultsRefused as exc:
            problem = exc
        first = None
        if refused is None:
            log.info("results do not fit: reading them again", problem=str(problem))
            refused = problem
            continue
        if (refused.what, refused.received) != (problem.what, problem.received):
            raise ResultsRefused(
                problem.what,
                problem.received,
                f"{problem.expected} (read twice: the first reading gave {refused})",
            )
        raise problem


def refusal(
    tool_id: str, job_id: str, carrier_id: str | None, refused: ResultsRefused
) -> tuple[str, dict[str, Any]]:
    """The quarantine's reason, and its record in the hold's history data."""
    reason = f"tool {tool_id} sent results of job {job_id} that do not fit: {refused}"
    data = {"quarantine": {"tool": tool_id, "job": job_id, "carrier": carrier_id, **refused.data()}}
    return reason, data


def partial_work(
    job_id: str,
    carrier_id: str | None,
    incoming: SiteMap | None,
    progress: tuple[str, int, int] | None,
    status: ToolStatus | None,
) -> dict[str, Any]:
    """For the hold's record: the interrupted job's sites the tool reported done before the
    fault: its last ``progress`` (job id, sites done, sites total), or the ``status`` (an
    alarm) when that still names the job and says more."""
    done, total = 0, None
    if progress is not None and progress[0] == job_id:
        done, total = progress[1], progress[2]
    if status is not None and status.job_id == job_id and status.sites_done >= done:
        done, total = status.sites_done, status.sites_total
    partial: dict[str, Any] = {
        "job": job_id,
        "carrier": carrier_id,
        "sites_done": done,
        "sites_total": total,
    }
    if incoming is not None:
        partial["sites"] = [list(site) for site in translate.sites_done(incoming, done)]
    return {"partial": partial}
