"""Making application instance certificates, CAs and revocation lists for a PKI directory
(:mod:`drivers.pki`): ``pkgline pki init | renew``, the simulators' first start, and tests.

Certificates are made as OPC UA Part 6 (6.2.2) wants them (see :func:`make_certificate`),
with RSA 2048 keys and SHA-256; they serve Modbus/TCP Security as well.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drivers.pki import (
    EXPIRY_WARNING_DAYS,
    Pki,
    PkiError,
    describe,
    write_private,
)

KEY_BITS = 2048
VALIDITY_DAYS = 365


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise PkiError(f"{path}: not a readable unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PkiError(f"{path}: an RSA key is needed (OPC UA and these policies use RSA)")
    return key


def default_hosts() -> list[str]:
    """The host names a certificate made on this machine names: its name, and localhost."""
    return list(dict.fromkeys([socket.gethostname(), "localhost", "127.0.0.1"]))


_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\.?")


def certificate_host(host: str) -> str:
    """``host`` as a certificate names it: an IP address (an IPv6 one with or without
    brackets) or a DNS name in ASCII (``*`` as its leftmost label allowed). Raises PkiError
    for anything else (a URL, a port, a space) with what is expected."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if len(host) > 253 or not _DNS_NAME.fullmatch(host):
        raise PkiError(
            f"host {host!r}: expected a host name (tool-3.cell-b.example) or an IP address "
            "(10.0.0.5, fd00::5), as the tools' endpoint URLs name it"
        )
    return host


def _san(uri: str, hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_certificate(
    key: rsa.RSAPrivateKey,
    *,
    common_name: str,
    application_uri: str,
    hosts: Sequence[str],
    days: int = VALIDITY_DAYS,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """An application instance certificate as OPC UA Part 6 (6.2.2) wants it: the application
    URI and host names in subjectAltName; digitalSignature, nonRepudiation, keyEncipherment and
    dataEncipherment; serverAuth and clientAuth. Self-signed (then also keyCertSign), or issued
    by ``issuer`` (a CA certificate and its key)."""
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pkgline"),
        ]
    )
    issuer_name, signing_key = (
        (issuer[0].subject, issuer[1]) if issuer is not None else (subject, key)
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=issuer is None,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(_san(application_uri, hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256())


def make_ca(key: rsa.RSAPrivateKey, *, common_name: str, days: int = 3650) -> x509.Certificate:
    """A certificate authority's certificate (for a site CA, and for tests)."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def make_crl(
    ca: x509.Certificate, ca_key: rsa.RSAPrivateKey, revoked_serials: Sequence[int]
) -> x509.CertificateRevocationList:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=30))
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
    return builder.sign(ca_key, hashes.SHA256())


def write_own(pki: Pki, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> None:
    """Install ``cert`` and ``key`` as this application's own (key first: a reader that sees
    the new certificate finds its key)."""
    pki.create_dirs()
    write_private(pki.own_key, key_pem(key))
    write_private(
        pki.own_certificate_pem, cert.public_bytes(serialization.Encoding.PEM), mode=0o644
    )
    write_private(pki.own_certificate, cert.public_bytes(serialization.Encoding.DER), mode=0o644)


def init_own(
    pki: Pki,
    *,
    common_name: str,
    application_uri: str,
    hosts: Sequence[str] | None = None,
    key: rsa.RSAPrivateKey | None = None,
    days: int = VALIDITY_DAYS,
) -> x509.Certificate:
    """Create the PKI directories and a self-signed application instance certificate."""
    key = key or new_key()
    cert = make_certificate(
        key,
        common_name=common_name,
        application_uri=application_uri,
        hosts=list(hosts) if hosts is not None else default_hosts(),
        days=days,
    )
    write_own(pki, cert, key)
    return cert


def renew_own(
    pki: Pki,
    *,
    days: int = VALIDITY_DAYS,
    new_key_pair: bool = True,
    more_hosts: Sequence[str] = (),
) -> x509.Certificate:
    """Replace the own certificate with one of the same subject, URI and host names, valid
    from now (a new key unless told otherwise), naming ``more_hosts`` too (each as
    :func:`certificate_host` gives it; one it names already is not named twice). Peers that
    trusted the old certificate one by one must be given the new one (``pkgline pki list``
    shows it). A certificate a CA issued is refused (PkiError): its renewal is the CA's, a
    self-signed one would break the peers' trust in that CA."""
    old, _, key_path = pki.own()
    if old.issuer != old.subject:
        raise PkiError(
            f"{pki.own_certificate} was issued by {old.issuer.rfc4514_string()}, not made "
            "here: a renewal here would be self-signed, and the peers that trust that CA "
            "would refuse it. Have the CA issue a new certificate for the same application "
            f"URI and host names (for the key in {key_path}, or a new one) and put it in "
            f"{pki.own_certificate.parent} (cert.der and cert.pem) and its key in {key_path}"
        )
    key = new_key() if new_key_pair else load_key(key_path)
    names = old.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise PkiError(f"{pki.own_certificate}: has no subjectAltName to renew from") from exc
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    hosts = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] + list(
        san.get_values_for_type(x509.DNSName)
    )
    named = {h.lower() for h in hosts}
    for host in more_hosts:
        if host.lower() not in named:
            named.add(host.lower())
            hosts.append(host)
    cert = make_certificate(
        key,
        common_name=str(names[0].value) if names else uris[0],
        application_uri=uris[0],
        hosts=hosts,
        days=days,
    )
    write_own(pki, cert, key)
    return cert


def expiring(
    certs: Sequence[tuple[str, x509.Certificate]],
    *,
    within_days: int = EXPIRY_WARNING_DAYS,
    now: dt.datetime | None = None,
) -> list[str]:
    """Sentences for the certificates that expire within ``within_days`` (or have expired)."""
    now = now or dt.datetime.now(dt.UTC)
    limit = now + dt.timedelta(days=within_days)
    notes = []
    for label, cert in certs:
        end = cert.not_valid_after_utc
        if end <= now:
            notes.append(f"{label} {describe(cert)} expired on {end:%Y-%m-%d}")
        elif end <= limit:
            notes.append(f"{label} {describe(cert)} expires on {end:%Y-%m-%d}")
    return notes
