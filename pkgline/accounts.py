"""The OS account a process runs as: who a direct-mode command acts and signs as
(docs/security.md). Standard library only: every command may need it."""

from __future__ import annotations

import getpass
import os
import pwd


def os_account() -> str:
    """The name of the OS account running this process."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or str(os.getuid())


def printed_name(account: str | None = None) -> str:
    """The OS account's full name (the first field of its GECOS), else its name: what a
    direct-mode signature shows as the signer's printed name."""
    name = account or os_account()
    try:
        gecos = pwd.getpwnam(name).pw_gecos.split(",")[0].strip()
    except (KeyError, OSError):
        return name
    return gecos or name


def account_name(uid: int) -> str:
    """``account NAME`` of a user id, or ``uid N`` when it has no name."""
    try:
        return f"account {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"uid {uid}"
