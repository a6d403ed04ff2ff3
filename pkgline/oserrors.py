"""An OS or TLS error in a person's words: what the OS says ("No such file or directory"), or
ssl's reason ("no certificate or crl found"), not Python's "[Errno 2] ..." or
"[X509: NO_CERTIFICATE_OR_CRL_FOUND] ... (_ssl.c:4154)". A leaf module: the standard library
only, for the CLI's client too."""

from __future__ import annotations

import os
import ssl


def in_words(exc: OSError) -> str:
    """``exc``'s reason as said to a person."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if exc.errno is not None and exc.errno > 0 and not isinstance(exc, ssl.SSLError):
        # the OS's words for the number, not asyncio's "Connect call failed (...)"
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__
