"""The exceptions of the flows package.

::

    DataFileError (pkgline.datafiles)
    └── FlowError        a defs file is invalid: ``path:line: message``
    LookupError
    └── UnknownFlow      no flow of that name; the message lists the known names
    ValueError
    └── PathError        a step path the flow does not accept: at which step, what was allowed

Bad CLI text (a value that is not a number, an unknown value name) raises a plain
``ValueError`` whose message says what was expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pkgline.datafiles import DataFileError


def suggest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)``, X the known name closest to ``name``; empty when none is
    close: for a refusal of a misspelt name (a step, a value, a reason code)."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


class FlowError(DataFileError):
    """A flow definition file is invalid. ``str()`` is ``path:line: message``."""


class UnknownFlow(LookupError):
    """No flow of that name is defined."""

    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(f"unknown flow {name!r}; the flows are: {', '.join(self.known)}")

    def __str__(self) -> str:
        # LookupError would quote its argument like a KeyError; we want the sentence as is.
        return str(self.args[0])


class PathError(ValueError):
    """A lot's step path that its flow does not accept.

    ``index`` is the 0-based position of the offending step in the path, ``step`` its code,
    ``after`` the step before it (None at the start) and ``allowed`` the step codes the flow
    accepts there (empty when the flow is complete).
    """

    def __init__(
        self,
        flow: str,
        index: int,
        step: str,
        after: str | None,
        allowed: frozenset[str],
        reason: str | None = None,
    ):
        self.flow = flow
        self.index = index
        self.step = step
        self.after = after
        self.allowed = allowed
        where = f"after {after}" if after is not None else "as the first step"
        if reason is not None:
            message = f"{flow}: step {index + 1}, {step}: {reason}"
        elif allowed:
            message = (
                f"{flow}: step {index + 1}, {step}, is not allowed {where}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        else:
            message = (
                f"{flow}: step {index + 1}, {step}, is not allowed {where}: "
                "the flow is complete and allows no further step"
            )
        super().__init__(message)
