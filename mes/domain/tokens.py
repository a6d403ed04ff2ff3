"""The tokens the server issues (API keys ``pkl_<id>_<secret>``, sessions
``pks_<id>_<secret>``: an id of 12 hex digits) and what a refusal records of credentials
someone claimed: bounded, one line, never the secret. Pure."""

from __future__ import annotations

import re

from mes.domain.text import printable

API_KEY_PREFIX = "pkl"
TOKEN_ID = re.compile(r"[0-9a-f]{12}")
"""The id of an API key or a session, as issued (``secrets.token_hex(6)``): what a refusal
records of a token; a token whose id is not of this shape is recorded as malformed."""
CLAIMED_MAX = 64
"""The longest claimed name a refusal records as given (longer is cut, its length noted):
anyone may send credentials, and the security log is append-only."""


def split_api_key(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of an API key token, or None when it is not one (another prefix,
    an id not as issued, no secret)."""
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != API_KEY_PREFIX or not TOKEN_ID.fullmatch(key_id) or not secret:
        return None
    return key_id, secret


def claimed(name: str) -> str:
    """``name`` as a refusal records it: one line, at most :data:`CLAIMED_MAX` characters
    (longer is cut and its length said)."""
    if len(name) <= CLAIMED_MAX:
        return printable(name)
    return f"{printable(name[: CLAIMED_MAX - 20])}... ({len(name)} chars)"
