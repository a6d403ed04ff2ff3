"""The line's certificates, as the CLI and the daemon see them: which PKI a line uses, the
controller's own certificate, the trust list, and certificates that expire soon.

The PKI layout and the checks are :mod:`drivers.pki`; this module ties them to a line
configuration (``[security]`` in line.toml) and to the commands of ``pkgline pki``.
"""

from __future__ import annotations

import secrets
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from drivers.certificates import default_hosts, expiring, init_own
from drivers.config import ModbusEndpoint, OpcUaEndpoint
from drivers.pki import (
    EXPIRY_WARNING_DAYS,
    Pki,
    PkiError,
    describe,
    load_certificate,
    load_crl,
    write_private,
)
from pkgline.config import LineConfig

CONTROLLER_URI = "urn:pkgline:controller:{host}"


def controller_uri(host: str | None = None) -> str:
    return CONTROLLER_URI.format(host=host or socket.gethostname())


def controller_pki(config: LineConfig) -> Pki:
    if config.security.pki is None:
        raise PkiError("the line configuration names no PKI directory ([security] pki)")
    return Pki(config.security.pki)


def init_controller(
    pki: Pki, *, force: bool = False, hosts: Sequence[str] = ()
) -> x509.Certificate:
    """Create the PKI directories and the controller's certificate (kept if there is one,
    unless ``force``), naming this machine and ``hosts``."""
    if pki.has_own and not force:
        raise PkiError(
            f"{pki.own_certificate} exists already; `pkgline pki renew` replaces it "
            "(or --force to start over with a new key)"
        )
    return init_own(
        pki,
        common_name="pkgline controller",
        application_uri=controller_uri(),
        hosts=list(dict.fromkeys([*default_hosts(), *hosts])),
    )


def trust(pki: Pki, path: Path) -> str:
    """Add a certificate (to trusted/certs) or a revocation list (to trusted/crl). A
    certificate rejected before is taken out of rejected/certs."""
    pki.create_dirs()
    try:
        cert = load_certificate(path)
    except PkiError:
        try:
            crl = load_crl(path)
        except PkiError:
            raise PkiError(
                f"{path}: neither a certificate nor a revocation list (PEM or DER)"
            ) from None
        target = pki.trusted_crl / f"{path.stem}.crl"
        from cryptography.hazmat.primitives import serialization

        write_private(target, crl.public_bytes(serialization.Encoding.DER), mode=0o644)
        return f"revocation list of {crl.issuer.rfc4514_string()} added: {target}"
    stored = pki.store(cert, pki.trusted)
    (pki.rejected / stored.name).unlink(missing_ok=True)
    return f"trusted {describe(cert)}: {stored}"


def reject(pki: Pki, path: Path) -> str:
    """Take a certificate off the trust list (to rejected/certs)."""
    cert = load_certificate(path)
    pki.create_dirs()
    removed = False
    for directory in (pki.trusted, pki.issuers):
        for candidate in sorted(directory.iterdir()):
            try:
                if load_certificate(candidate) == cert:
                    candidate.unlink()
                    removed = True
            except PkiError:
                continue
    stored = pki.store(cert, pki.rejected)
    if not removed:
        return f"{describe(cert)} was not trusted; kept in {stored.parent}"
    return f"no longer trusted: {describe(cert)} (moved to {stored.parent})"


@dataclass(frozen=True)
class Listed:
    group: str  # own, trusted, issuer, rejected
    path: Path
    certificate: x509.Certificate


def listing(pki: Pki) -> list[Listed]:
    found: list[Listed] = []
    if pki.own_certificate.is_file():
        found.append(Listed("own", pki.own_certificate, load_certificate(pki.own_certificate)))
    for group, directory in (
        ("trusted", pki.trusted),
        ("issuer", pki.issuers),
        ("rejected", pki.rejected),
    ):
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                if path.suffix.lower() in {".der", ".pem"}:
                    found.append(Listed(group, path, load_certificate(path)))
    return found


def secure_pkis(config: LineConfig) -> set[Path | None]:
    """The PKI directories of the line's secure links: secure OPC UA endpoints and Modbus
    endpoints with a ``tls`` table (Modbus/TCP Security)."""
    found: set[Path | None] = set()
    for tool in config.tools:
        endpoint = tool.endpoint
        if isinstance(endpoint, OpcUaEndpoint) and endpoint.security.secure:
            found.add(endpoint.security.pki)
        elif isinstance(endpoint, ModbusEndpoint) and endpoint.tls is not None:
            found.add(endpoint.tls.pki)
    return found


def expiry_notes(config: LineConfig, *, within_days: int = EXPIRY_WARNING_DAYS) -> list[str]:
    """Sentences for the certificates the controller uses (its own, and those it trusts)
    that expire within ``within_days``: for ``pkgline line status`` and the heartbeat."""
    used = secure_pkis(config)
    if not used:
        return []
    pkis = {config.security.pki} | used
    certs: list[tuple[str, x509.Certificate]] = []
    for root in sorted(p for p in pkis if p is not None):
        pki = Pki(root)
        try:
            certs += [
                (f"{item.group} certificate", item.certificate)
                for item in listing(pki)
                if item.group in {"own", "trusted", "issuer"}
            ]
        except PkiError as exc:
            return [f"PKI {root}: {exc}"]
    return [f"certificate expiring: {note}" for note in expiring(certs, within_days=within_days)]


def certificate_notes(config: LineConfig) -> list[str]:
    """:func:`expiry_notes`, never raising: a PKI that cannot be read is a note too."""
    try:
        return expiry_notes(config)
    except (OSError, PkiError) as exc:
        return [f"certificates cannot be read: {exc}"]


# -- the demo -------------------------------------------------------------------------------------


def secure_demo_line(config: LineConfig, root: Path) -> LineConfig:
    """``config`` with a PKI of its own for the controller and for the simulators under
    ``root``, each trusting the other's certificate, and a demo user whose password is made
    here (mode 0600): the demo runs the secure configuration without any setup."""
    from simulators.certificate import simulator_pki
    from simulators.line import served_hosts

    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    controller = Pki(root / "controller")
    if not controller.has_own:
        init_controller(controller)
    simulators = simulator_pki(root / "simulators", served_hosts(config))
    for trusting, trusted in ((controller, simulators), (simulators, controller)):
        for stale in trusting.trusted.iterdir():
            stale.unlink()
        trusting.store(trusted.own()[0], trusting.trusted)
    credentials = root / "opcua-user.toml"
    if not credentials.is_file():
        password = secrets.token_urlsafe(24)
        write_private(
            credentials, f'username = "demo-controller"\npassword = "{password}"\n'.encode()
        )
    tools = []
    for tool in config.tools:
        endpoint = tool.endpoint
        if isinstance(endpoint, OpcUaEndpoint):
            own = endpoint.security.model_copy(
                update={
                    "pki": None,
                    "credentials": None,
                    "user_certificate": None,
                    "user_key": None,
                }
            )
            tool = tool.model_copy(
                update={"endpoint": endpoint.model_copy(update={"security": own})}
            )
        elif isinstance(endpoint, ModbusEndpoint) and endpoint.tls is not None:
            tls = endpoint.tls.model_copy(update={"pki": None})
            tool = tool.model_copy(update={"endpoint": endpoint.model_copy(update={"tls": tls})})
        tools.append(tool)
    security = config.security.model_copy(
        update={
            "pki": controller.root,
            "simulator_pki": simulators.root,
            "credentials": credentials,
        }
    )
    return config.model_copy(update={"security": security, "tools": tuple(tools)}).resolved(root)


def remove_demo_pki(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
