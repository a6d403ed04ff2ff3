"""What a Modbus/TCP Security connection that failed means, in an operator's words: the hints
added to a refused or silent connection, and :func:`tls_refusal` for a failed TLS handshake
(which certificate rule the tool broke). Pure: the session (:mod:`drivers.modbus.session`)
keeps the error and says it."""

from __future__ import annotations

import ssl
from typing import Final

TLS_HINT = (
    " (Modbus/TCP Security: the TLS handshake failed, or the tool refused the controller's "
    "certificate; is each certificate trusted by the other side, and not revoked? the tool's "
    "log says why it refused; `pkgline pki list`)"
)

PLAIN_HINT = (
    " (before any answer: a tool that speaks Modbus/TCP Security closes a plain connection; "
    "does the endpoint need a `tls` table?)"
)
SILENT_HANDSHAKE = (
    "no answer to the TLS handshake within {timeout:g} s (Modbus/TCP Security: a tool that "
    "speaks plain Modbus/TCP waits for a request and never answers a handshake; is the tool "
    "TLS on this port, or is it plain, without a `tls` table?)"
)


_UNTRUSTED_CODES: Final = frozenset({2, 18, 19, 20, 21})
"""OpenSSL's verify codes for a chain that ends at no trust anchor (unable to get the issuer,
self-signed, self-signed in the chain, unable to get the local issuer, unable to verify)."""
_TIME_CODES: Final = frozenset({9, 10})  # not yet valid, expired
_HOST_CODES: Final = frozenset({62, 64})  # host name mismatch, IP address mismatch


HUNG_UP: Final = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def tls_refusal(exc: ssl.SSLError | OSError, host: str) -> tuple[str, str]:
    """What a failed TLS handshake says, for an operator, and the OPC UA status code of the
    same rule (the reason logged, as for a revoked certificate). pymodbus logs the SSL error
    and answers only False; the driver keeps it (:meth:`ModbusSession.connect`)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, what = exc.verify_code, exc.verify_message or exc.reason or str(exc)
        if code in _UNTRUSTED_CODES:
            return (
                f"its certificate is not trusted ({what}): neither it nor a CA that issued it "
                "is in the controller's trusted/certs or issuers/certs; check its thumbprint "
                "with the tool's vendor, then `pkgline pki trust` it",
                "BadCertificateUntrusted",
            )
        if code in _TIME_CODES:
            return (
                f"its certificate is outside its validity period ({what}); is the tool's or "
                "the controller's clock right, or is the tool's certificate to be renewed?",
                "BadCertificateTimeInvalid",
            )
        if code in _HOST_CODES:
            return (
                f"its certificate does not name the host {host} in its subjectAltName "
                f"({what}): another machine answers at this address, or the endpoint's host "
                "is not the name the tool's certificate was made for",
                "BadCertificateHostNameInvalid",
            )
        return f"its certificate is refused ({what})", "BadCertificateInvalid"
    if not isinstance(exc, ssl.SSLError):
        return (
            "the tool closed the connection during the TLS handshake: does the tool trust "
            "the controller's certificate, and is it not revoked? the tool's log says why it "
            "refused",
            "BadSecurityChecksFailed",
        )
    reason = exc.reason or str(exc)
    if reason == "WRONG_VERSION_NUMBER":
        return (
            f"the TLS handshake failed ({reason}): the tool does not answer with TLS on this "
            "port; does it speak plain Modbus/TCP (then the endpoint has no `tls` table), or "
            "is it the wrong port?",
            "BadSecurityChecksFailed",
        )
    return (
        f"the TLS handshake failed ({reason}): does the tool trust the controller's "
        "certificate, and is it not revoked? the tool's log says why it refused",
        "BadSecurityChecksFailed",
    )
