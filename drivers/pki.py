"""Certificates for secure equipment links: a PKI directory, application instance certificates,
and the check of a peer's certificate against a trust list with revocation lists.

A leaf shared by the drivers (the controller checks a tool's certificate), the simulators (a tool
checks the controller's) and ``pkgline pki``. It does no network I/O. Its neighbours:
:mod:`drivers.certificates` makes certificates, :mod:`drivers.tls` makes Modbus/TCP Security's
TLS contexts from the directory, :mod:`drivers.credentials` reads users'
credentials and keeps passwords out of logs. The directory layout is
OPC UA's own (Part 12, "CertificateGroup" folders), used for Modbus/TCP Security too::

    <pki>/own/certs/cert.der         this application's instance certificate (DER)
    <pki>/own/private/key.pem        its RSA private key (PEM, PKCS#8, mode 0600)
    <pki>/trusted/certs/             peers trusted one by one (self-signed or not), and CAs
    <pki>/trusted/crl/               revocation lists of the CAs in trusted/certs
    <pki>/issuers/certs/             CAs that may issue a peer's certificate (not trusted alone)
    <pki>/issuers/crl/               their revocation lists
    <pki>/rejected/certs/            certificates a peer presented and we refused (to review and
                                     ``pkgline pki trust``)

A peer's certificate is accepted when it is in its validity period, is trusted (the very
certificate is in trusted/certs, or it is signed by a CA certificate in trusted/certs or
issuers/certs), is not on a revocation list of its issuer, and names the expected application
URI in its subjectAltName, and (a server's, checked by a client) the host connected to
(:mod:`drivers.host_names`). Otherwise :class:`CertificateRejected` says which of these failed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from drivers.host_names import certificate_hosts, names_host

EXPIRY_WARNING_DAYS = 30
"""A certificate that expires within this many days is shown as expiring (``line status``)."""


class PkiError(Exception):
    """The PKI directory or a certificate file is missing or unusable; the message says which
    file and what was expected."""


class RejectReason(Enum):
    """Why a peer's certificate was refused (each has an OPC UA status code of the same name)."""

    UNTRUSTED = "BadCertificateUntrusted"
    EXPIRED = "BadCertificateTimeInvalid"
    REVOKED = "BadCertificateRevoked"
    WRONG_URI = "BadCertificateUriInvalid"
    WRONG_HOST = "BadCertificateHostNameInvalid"
    INVALID = "BadCertificateInvalid"


class CertificateRejected(Exception):
    """A peer's certificate was refused. ``reason`` is the rule it broke; the message says it
    for an operator (names the certificate, and what to do)."""

    def __init__(self, reason: RejectReason, message: str):
        self.reason = reason
        self.message = message
        super().__init__(message)


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER, in hex: how OPC UA names a certificate."""
    return hashlib.sha1(
        cert.public_bytes(serialization.Encoding.DER), usedforsecurity=False
    ).hexdigest()


def describe(cert: x509.Certificate) -> str:
    """``CN=... (thumbprint ...)``, for messages."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else cert.subject.rfc4514_string()
    return f"CN={common_name} (thumbprint {thumbprint(cert)[:16]})"


def application_uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def file_name(cert: x509.Certificate) -> str:
    """``<CN> [<thumbprint>].der``, as OPC UA stacks name files in a trust list."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else "certificate"
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", common_name)[:48]
    return f"{safe} [{thumbprint(cert)}].der"


def load_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PkiError(f"{path}: cannot read the certificate: {exc.strerror or exc}") from exc
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise PkiError(f"{path}: not an X.509 certificate (PEM or DER): {exc}") from exc


def load_crl(path: Path) -> x509.CertificateRevocationList:
    data = path.read_bytes()
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise PkiError(f"{path}: not a certificate revocation list (PEM or DER): {exc}") from exc


def files_in(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in {".der", ".pem", ".crl"})


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass(frozen=True, slots=True)
class OwnIdentity:
    """This application's certificate and private key, parsed (:meth:`Pki.own_identity`)."""

    certificate: x509.Certificate
    key: PrivateKeyTypes
    certificate_path: Path
    key_path: Path


_State = tuple[object, ...]
_parsed_certs: dict[Path, tuple[_State, tuple[x509.Certificate, ...]]] = {}
_parsed_crls: dict[Path, tuple[_State, tuple[x509.CertificateRevocationList, ...]]] = {}
_parsed_own: dict[Path, tuple[_State, OwnIdentity]] = {}
FINGERPRINT_TTL_S = 1.0
"""How long :meth:`Pki.own_fingerprint` answers from its last look at the files: every
driver asks at every poll (500 tools at 200 ms: 2,500 times a second, two stat calls each);
a renewed certificate is seen within this time."""
_fingerprints: dict[Path, tuple[float, tuple[int, int] | None]] = {}
"""What was parsed from a PKI's files, by (what, path): the files' state (names, inodes, times,
sizes) when parsed and the result. Parsing per connection cost too much: loading an RSA key
checks it (about 50 ms of CPU), and 500 OPC UA sessions opening at once (the daemon starting)
loaded it 500 times, past their timeout. A file replaced, added or removed changes the state:
the next connection parses again, so what changed is still taken at the next connection."""


def check_key_mode(path: Path) -> None:
    """Refuse a private key that the owner's group or others may read or write (the service
    account's group holds the operators; deploy/install.sh): OPC UA's and TLS's proof of who
    the controller is would be anyone's. A missing file is left to the loader to report."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PkiError(
            f"{path}: the private key is readable or writable by group or others (mode "
            f"{stat.S_IMODE(mode):04o}); expected 0600, the service account's alone: "
            f"`chmod 600 {path}` (and, as the key may have been copied, `pkgline pki renew`)"
        )


def _load_key(path: Path) -> PrivateKeyTypes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PkiError(f"{path}: cannot read the private key: {exc.strerror or exc}") from exc
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{path}: not an unencrypted PEM private key: {exc}") from exc


def _certificates(directory: Path) -> list[x509.Certificate]:
    files = files_in(directory)
    state = tuple((p.name, _stat(p)) for p in files)
    cached = _parsed_certs.get(directory)
    if cached is None or cached[0] != state:
        cached = _parsed_certs[directory] = (state, tuple(load_certificate(p) for p in files))
    return list(cached[1])


def _crls(directory: Path) -> list[x509.CertificateRevocationList]:
    files = files_in(directory)
    state = tuple((p.name, _stat(p)) for p in files)
    cached = _parsed_crls.get(directory)
    if cached is None or cached[0] != state:
        cached = _parsed_crls[directory] = (state, tuple(load_crl(p) for p in files))
    return list(cached[1])


def write_private(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write a file atomically (a temporary file renamed over it), with ``mode`` from the start:
    a key is never readable by others, even for a moment, and a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True, slots=True)
class Pki:
    """A PKI directory (see the module docstring). Creating one does no I/O."""

    root: Path

    @property
    def own_certificate(self) -> Path:
        return self.root / "own" / "certs" / "cert.der"

    @property
    def own_certificate_pem(self) -> Path:
        """The same certificate in PEM, for TLS (Python's ssl loads PEM files only)."""
        return self.root / "own" / "certs" / "cert.pem"

    @property
    def own_key(self) -> Path:
        return self.root / "own" / "private" / "key.pem"

    @property
    def trusted(self) -> Path:
        return self.root / "trusted" / "certs"

    @property
    def trusted_crl(self) -> Path:
        return self.root / "trusted" / "crl"

    @property
    def issuers(self) -> Path:
        return self.root / "issuers" / "certs"

    @property
    def issuers_crl(self) -> Path:
        return self.root / "issuers" / "crl"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected" / "certs"

    def create_dirs(self) -> None:
        for directory in (
            self.own_certificate.parent,
            self.trusted,
            self.trusted_crl,
            self.issuers,
            self.issuers_crl,
            self.rejected,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        self.own_key.parent.mkdir(parents=True, exist_ok=True)
        self.own_key.parent.chmod(0o700)

    @property
    def has_own(self) -> bool:
        return self.own_certificate.is_file() and self.own_key.is_file()

    def own(self) -> tuple[x509.Certificate, Path, Path]:
        """This application's certificate, and the paths of it and its key."""
        if not self.has_own:
            raise PkiError(
                f"{self.root}: no application instance certificate "
                f"({self.own_certificate} and {self.own_key}); create one with `pkgline pki init`"
            )
        return load_certificate(self.own_certificate), self.own_certificate, self.own_key

    def own_identity(self) -> OwnIdentity:
        """This application's certificate and key, parsed once and again only when either
        file is replaced (``pkgline pki renew``). Raises PkiError when missing or unreadable."""
        if not self.has_own:
            self.own()  # raises the error that says how to make one
        check_key_mode(self.own_key)  # at every call: a chmod changes none of the state below
        state = (_stat(self.own_certificate), _stat(self.own_key))
        cached = _parsed_own.get(self.root)
        if cached is None or cached[0] != state:
            identity = OwnIdentity(
                load_certificate(self.own_certificate),
                _load_key(self.own_key),
                self.own_certificate,
                self.own_key,
            )
            cached = _parsed_own[self.root] = (state, identity)
        return cached[1]

    def own_fingerprint(self) -> tuple[int, int] | None:
        """Changes when the own certificate or key is replaced (``pkgline pki renew``): the
        files are looked at once per :data:`FINGERPRINT_TTL_S` per PKI directory, whoever
        asks."""
        now = time.monotonic()
        seen = _fingerprints.get(self.root)
        if seen is not None and now - seen[0] < FINGERPRINT_TTL_S:
            return seen[1]
        try:
            a, b = self.own_certificate.stat(), self.own_key.stat()
        except FileNotFoundError:
            found = None
        else:
            found = (a.st_mtime_ns ^ a.st_ino, b.st_mtime_ns ^ b.st_ino)
        _fingerprints[self.root] = (now, found)
        return found

    def trusted_certificates(self) -> list[x509.Certificate]:
        """The certificates in trusted/certs (parsed again only when its files change)."""
        return _certificates(self.trusted)

    def issuer_certificates(self) -> list[x509.Certificate]:
        return _certificates(self.issuers)

    def revocation_lists(self) -> list[x509.CertificateRevocationList]:
        return _crls(self.trusted_crl) + _crls(self.issuers_crl)

    def store(self, cert: x509.Certificate, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / file_name(cert)
        write_private(path, cert.public_bytes(serialization.Encoding.DER), mode=0o644)
        return path

    # -- checking a peer ---------------------------------------------------------------------------

    def check_peer(
        self,
        cert: x509.Certificate,
        *,
        expected_uri: str | None,
        expected_host: str | None,
        trust_on_first_use: bool = False,
        endpoint: str | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        """Accept ``cert`` or raise :class:`CertificateRejected` (see the module docstring). An
        untrusted certificate is copied to rejected/certs, or, with ``trust_on_first_use``,
        to trusted/certs and accepted. The trust list's files are looked at on every call (and
        parsed again when they changed), so a certificate trusted, rejected or revoked since
        is taken at the next connection.

        ``expected_host``: the host of the endpoint URL a client connected to, which the
        certificate must name (:mod:`drivers.host_names`); None: not checked (a server
        checking a client, or a client configured not to). Checked before anything is
        trusted or pinned: a certificate for another host is never trusted on first use.

        Trust on first use is for the first use of ``endpoint`` only: the certificate trusted
        then is pinned to it (:meth:`first_use`), and a certificate not on the trust list
        that comes later from that endpoint (replaced at the tool, or another machine
        answering in its place) is refused like any untrusted one."""
        now = now or dt.datetime.now(dt.UTC)
        who = describe(cert)
        if cert.not_valid_after_utc < now:
            raise CertificateRejected(
                RejectReason.EXPIRED,
                f"certificate {who} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
            )
        if cert.not_valid_before_utc > now:
            raise CertificateRejected(
                RejectReason.EXPIRED,
                f"certificate {who} is not valid before "
                f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            )
        uris = application_uris(cert)
        if expected_uri is not None and expected_uri not in uris:
            raise CertificateRejected(
                RejectReason.WRONG_URI,
                f"certificate {who} is for application URI {', '.join(uris) or '(none)'}, "
                f"expected {expected_uri}",
            )
        if expected_host is not None:
            check_host(cert, expected_host)
        issuer = self._trusted_issuer(cert)
        if issuer is None:
            pinned = self.first_use(endpoint) if endpoint is not None else None
            if trust_on_first_use and pinned is None:
                self.store(cert, self.trusted)
                if endpoint is not None:
                    self._pin_first_use(endpoint, cert)
                return
            self.store(cert, self.rejected)
            if trust_on_first_use:
                raise CertificateRejected(
                    RejectReason.UNTRUSTED,
                    f"certificate {who} is not trusted, and trust on first use was used "
                    f"up at {endpoint} (for the certificate with thumbprint {pinned}): the "
                    "tool's certificate was replaced, or another machine answers in its "
                    f"place; copied to {self.rejected}: if it is the right one, `pkgline pki "
                    "trust` it",
                )
            raise CertificateRejected(
                RejectReason.UNTRUSTED,
                f"certificate {who} is not trusted (not in {self.trusted}, nor issued by a CA "
                f"there or in {self.issuers}); copied to {self.rejected}: if it is the right "
                "one, `pkgline pki trust` it",
            )
        self.check_revocation(cert)

    @property
    def first_use_pins(self) -> Path:
        """One file per endpoint whose certificate was trusted on first use: its thumbprint."""
        return self.root / "first-use"

    def _pin_path(self, endpoint: str) -> Path:
        return self.first_use_pins / (re.sub(r"[^A-Za-z0-9_.-]+", "_", endpoint)[:120] + ".txt")

    def first_use(self, endpoint: str) -> str | None:
        """The thumbprint of the certificate trusted on first use at ``endpoint``, if any."""
        try:
            return self._pin_path(endpoint).read_text(encoding="utf-8").split()[0]
        except (FileNotFoundError, IndexError):
            return None

    def _pin_first_use(self, endpoint: str, cert: x509.Certificate) -> None:
        write_private(
            self._pin_path(endpoint), f"{thumbprint(cert)} {endpoint}\n".encode(), mode=0o644
        )

    def check_revocation(self, cert: x509.Certificate) -> None:
        """Raise :class:`CertificateRejected` (``REVOKED``) when ``cert`` is on a revocation
        list of its issuer in trusted/crl or issuers/crl. The lists' files are looked at on each
        call (parsed again when they changed): a list added since is taken at the next
        connection. :meth:`check_peer` (OPC UA) ends with this; Modbus/TCP Security calls it
        after the TLS handshake, which has checked the rest
        (:func:`drivers.tls.check_tls_peer`)."""
        for crl in self.revocation_lists():
            if crl.issuer != cert.issuer:
                continue
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise CertificateRejected(
                    RejectReason.REVOKED,
                    f"certificate {describe(cert)} (serial {cert.serial_number:x}) is revoked "
                    "by its issuer's revocation list",
                )

    def _trusted_issuer(self, cert: x509.Certificate) -> x509.Certificate | None:
        """The certificate that vouches for ``cert``: itself when trusted one by one, or the
        CA (trusted or issuer) whose signature it carries."""
        der = cert.public_bytes(serialization.Encoding.DER)
        trusted = self.trusted_certificates()
        for candidate in trusted:
            if candidate.public_bytes(serialization.Encoding.DER) == der:
                return candidate
        for ca in trusted + self.issuer_certificates():
            if ca.subject != cert.issuer or not _is_ca(ca):
                continue
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return ca
        return None


def check_host(cert: x509.Certificate, host: str) -> None:
    """Raise :class:`CertificateRejected` (``WRONG_HOST``) unless ``cert`` names ``host`` in
    its subjectAltName (:func:`drivers.host_names.names_host`)."""
    hosts = certificate_hosts(cert)
    if not names_host(hosts, host):
        raise CertificateRejected(
            RejectReason.WRONG_HOST,
            f"certificate {describe(cert)} names {hosts} in its subjectAltName, not the "
            f"host {host} of the endpoint URL: another machine may answer at this address (a "
            "different tool, or a man in the middle with a certificate the line trusts), or "
            "the certificate was made for another name of the tool. Have the tool's "
            f"certificate issued for {host} (subjectAltName DNS or IP), or give the endpoint a "
            "URL whose host the certificate names; only for a tool whose certificate cannot "
            "be reissued: check_host_name = false in the endpoint's security",
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
