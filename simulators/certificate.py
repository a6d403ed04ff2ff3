"""The simulated tools' certificate: made on the first start in the simulators' PKI directory,
naming the hosts the tools answer at, since a controller checks that a tool's certificate
names the host of the URL it connected to (:mod:`drivers.host_names`; OPC UA and Modbus/TCP
Security alike)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path

from drivers.certificates import default_hosts, init_own
from drivers.host_names import certificate_hosts, names_host
from drivers.pki import Pki, PkiError

SIMULATOR_URI = "urn:pkgline:simulator:{host}"


def _a_host(host: str) -> bool:
    """Not an address that means "every interface" (0.0.0.0, ::): no client connects to it."""
    try:
        return not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return bool(host)


def simulator_pki(root: Path, hosts: Sequence[str] = ()) -> Pki:
    """The simulators' PKI at ``root``. Without a certificate, a self-signed one is made,
    naming this machine (:func:`~drivers.certificates.default_hosts`: its name, localhost,
    127.0.0.1) and ``hosts``, where the simulated tools answer. A certificate there already
    that does not name one of ``hosts`` is refused (PkiError, saying how to make one that
    does): every controller that checks the host would refuse it."""
    pki = Pki(root)
    wanted = [host for host in dict.fromkeys(hosts) if _a_host(host)]
    if not pki.has_own:
        init_own(
            pki,
            common_name="pkgline simulator",
            application_uri=SIMULATOR_URI.format(host=socket.gethostname()),
            hosts=list(dict.fromkeys([*default_hosts(), *wanted])),
        )
        return pki
    named = certificate_hosts(pki.own()[0])
    missing = [host for host in wanted if not names_host(named, host)]
    if missing:
        options = " ".join(f"--host {host}" for host in missing)
        raise PkiError(
            f"{pki.own_certificate}: the simulators' certificate names {named}, not "
            f"{', '.join(missing)}, where simulated tools answer: a controller would refuse "
            "it (BadCertificateHostNameInvalid). Make one that does: `pkgline pki init "
            f"--simulators --force --dir {root} {options}` (with --config LINE instead of "
            "--dir, the line's hosts are named), then give it to the controller (`pkgline "
            "pki trust`)"
        )
    return pki
