"""Keys and certificates for the security tests: RSA keys are made once per test session
(2048-bit generation is slow on a shared machine); certificates, which are quick, per test."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from drivers import certificates as C
from drivers import pki as P

CONTROLLER_URI = "urn:pkgline:controller:test"
SIMULATOR_URI = "urn:pkgline:simulator:test"
HOSTS = ["localhost", "127.0.0.1"]


@dataclass(frozen=True)
class Keys:
    controller: rsa.RSAPrivateKey
    simulator: rsa.RSAPrivateKey
    ca: rsa.RSAPrivateKey
    user: rsa.RSAPrivateKey


def make_keys() -> Keys:
    return Keys(C.new_key(), C.new_key(), C.new_key(), C.new_key())


def app_certificate(
    key: rsa.RSAPrivateKey,
    uri: str,
    *,
    name: str | None = None,
    days: int = 30,
    not_before: dt.datetime | None = None,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
) -> x509.Certificate:
    return C.make_certificate(
        key,
        common_name=name or uri.rsplit(":", 1)[-1],
        application_uri=uri,
        hosts=HOSTS,
        days=days,
        not_before=not_before,
        issuer=issuer,
    )


@dataclass
class Pair:
    """A controller's PKI and a simulator's, each trusting the other's certificate."""

    controller: P.Pki
    simulator: P.Pki
    controller_cert: x509.Certificate
    simulator_cert: x509.Certificate


def cross_trusted(root: Path, keys: Keys) -> Pair:
    controller, simulator = P.Pki(root / "controller"), P.Pki(root / "simulator")
    ccert = app_certificate(keys.controller, CONTROLLER_URI)
    scert = app_certificate(keys.simulator, SIMULATOR_URI)
    C.write_own(controller, ccert, keys.controller)
    C.write_own(simulator, scert, keys.simulator)
    controller.store(scert, controller.trusted)
    simulator.store(ccert, simulator.trusted)
    return Pair(controller, simulator, ccert, scert)


def write_user_certificate(
    root: Path, keys: Keys, name: str = "operator-1"
) -> tuple[x509.Certificate, Path, Path]:
    cert = app_certificate(keys.user, f"urn:pkgline:user:{name}", name=name)
    cert_path, key_path = root / f"{name}.der", root / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    P.write_private(key_path, C.key_pem(keys.user))
    return cert, cert_path, key_path


def write_credentials(path: Path, username: str, password: str, *, mode: int = 0o600) -> Path:
    P.write_private(path, f'username = "{username}"\npassword = "{password}"\n'.encode(), mode=mode)
    return path
