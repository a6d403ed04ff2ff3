"""Modbus/TCP Security's TLS (the Modbus Organization's MB-TCP-Security): the contexts of
the controller's side and of a tool's (the simulators'), made from a PKI directory
(:class:`drivers.pki.Pki`: this application's certificate, the trusted peers and CAs), and
the check of the peer right after the handshake (revocation, by the Pki's own rule).

The handshake checks the chain and the validity period (OpenSSL), and on the controller's
side the tool's host name; :func:`check_tls_peer` the revocation lists. No network I/O of
its own: the drivers and the simulators hand it their transports.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from drivers.pki import (
    CertificateRejected,
    Pki,
    PkiError,
    RejectReason,
    check_key_mode,
    files_in,
)


def _tls_context(pki: Pki, purpose: ssl.Purpose) -> ssl.SSLContext:
    """TLS 1.2 or later, this application's certificate, and the peers it trusts: those in
    trusted/certs one by one (as trust anchors of their own) and the CAs there and in
    issuers/certs. The peer must present a certificate (mutual authentication). Revocation is
    not the context's: each side calls :func:`check_tls_peer` after the handshake."""
    protocol = (
        ssl.PROTOCOL_TLS_CLIENT if purpose is ssl.Purpose.SERVER_AUTH else ssl.PROTOCOL_TLS_SERVER
    )
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    # a certificate trusted one by one is an anchor although it is no CA
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if not pki.own_certificate_pem.is_file():
        pki.own()  # says what is missing
        raise PkiError(f"{pki.own_certificate_pem}: missing; `pkgline pki renew` writes it")
    check_key_mode(pki.own_key)
    context.load_cert_chain(pki.own_certificate_pem, pki.own_key)
    anchors = pki.trusted_certificates() + pki.issuer_certificates()
    if not anchors:
        raise PkiError(f"{pki.trusted}: no certificate trusted; `pkgline pki trust` the peer's")
    context.load_verify_locations(
        cadata=b"".join(c.public_bytes(serialization.Encoding.DER) for c in anchors)
    )
    return context


def peer_certificate(transport: asyncio.BaseTransport | None) -> x509.Certificate | None:
    """The certificate the peer of a TLS connection presented (after the handshake), or None
    (no TLS, no certificate, or the connection is already closed)."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None


def check_tls_peer(pki: Pki, transport: asyncio.BaseTransport | None) -> x509.Certificate:
    """Check the peer of a Modbus/TCP Security connection right after the TLS handshake.

    The handshake checked the chain to a trust anchor and the validity period (OpenSSL);
    revocation is checked here, by the Pki's own rule (:meth:`Pki.check_revocation`, the one
    OPC UA uses), rather than by OpenSSL's CRL checking: that refuses every peer whose issuer
    has no revocation list loaded, and a context made once would not see a list added since.
    Returns the peer's certificate; raises :class:`CertificateRejected`."""
    cert = peer_certificate(transport)
    if cert is None:
        raise CertificateRejected(
            RejectReason.INVALID, "the peer presented no certificate (or the connection closed)"
        )
    pki.check_revocation(cert)
    return cert


def _files_state(pki: Pki) -> tuple[object, ...]:
    """What a TLS context is made of, as file names, sizes and times: changes when the own
    certificate or key is replaced or a certificate is trusted, rejected or removed (or the
    key's mode changes: a context is not made from a key others may read)."""
    state: list[object] = []
    for path in (pki.own_certificate_pem, pki.own_key):
        try:
            st = path.stat()
        except FileNotFoundError:
            state.append(None)
        else:
            state.append((st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode))
    for directory in (pki.trusted, pki.issuers):
        for path in files_in(directory):
            st = path.stat()
            state.append((path.name, st.st_ino, st.st_mtime_ns, st.st_size))
        state.append("|")
    return tuple(state)


_client_contexts: dict[Path, tuple[tuple[object, ...], ssl.SSLContext]] = {}


def tls_client_context(pki: Pki) -> ssl.SSLContext:
    """The controller's side of Modbus/TCP Security (checks the tool's host name too).

    One context per PKI directory, shared by every connection, made again when its files
    change (:func:`_files_state`: a renewed own certificate, a peer trusted or rejected), so
    that what changed is taken at the next connection. Making a context costs milliseconds
    (OpenSSL 3's context set-up, and parsing the key and every trusted certificate): made
    per connection, 500 tools connecting at once kept the event loop busy for seconds, past
    their connect timeout. Revocation lists are not part of it (:func:`check_tls_peer`)."""
    state = _files_state(pki)
    cached = _client_contexts.get(pki.root)
    if cached is not None and cached[0] == state:
        return cached[1]
    context = _tls_context(pki, ssl.Purpose.SERVER_AUTH)
    _client_contexts[pki.root] = (state, context)
    return context


def tls_server_context(pki: Pki) -> ssl.SSLContext:
    """A tool's (the simulator's) side of Modbus/TCP Security."""
    return _tls_context(pki, ssl.Purpose.CLIENT_AUTH)
