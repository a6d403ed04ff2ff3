"""The reason codes ``pkgline demo`` adds (pkgline.cli.demo_api.REASON_CODES) are released by
whom the README says: a contamination hold, as a recall, by quality (the README said so while
the demo gave CONTAM no release role, so any operator could release it). The demo itself,
end to end, lists them as added (tests/cli/test_demo.py)."""

from __future__ import annotations

from pathlib import Path

from pkgline.cli.demo_api import REASON_CODES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_demos_hold_codes_are_released_by_whom_the_readme_says() -> None:
    holds = {r.code: r.release_by for r in REASON_CODES if r.kind == "hold"}
    assert holds == {
        "VOID": ("engineer",),
        "CONTAM": ("quality",),
        "RECALL": ("quality",),
        "CUSTOMER": (),
    }
    readme = " ".join(README.read_text(encoding="utf-8").split())
    assert (
        "hold `VOID`, released by an engineer; `CONTAM` and `RECALL`, released by quality; "
        "`CUSTOMER`, by anyone who may release a hold;"
    ) in readme
