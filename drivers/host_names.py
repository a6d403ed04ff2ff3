"""Does a peer's certificate name the host we connected to? (OPC UA Part 4, certificate
validation, "Host Name": BadCertificateHostNameInvalid.) Pure: no I/O, no name resolution.

The host is the one of the endpoint URL, as written (``opc.tcp://HOST:PORT/...``; an IPv6
address in brackets). It is compared with the certificate's subjectAltName, by the rule
OpenSSL applies to Modbus/TCP Security's TLS handshake, so that both transports agree:

- an IP address (``127.0.0.1``, ``[fd00::5]``) matches an iPAddress entry of the same value
  (``::ffff:10.0.0.5`` is ``10.0.0.5``; an IPv6 zone, ``%eth0``, is not part of it), never a
  dNSName;
- a name matches a dNSName entry, case-insensitively, a trailing dot ignored; an entry whose
  leftmost label is exactly ``*`` (``*.cell-b.plant.example``) matches one label there, no
  more, and only with two labels or more after it (``*.example`` matches nothing); partial
  wildcards (``tool*.example.com``) match only themselves;
- names are not resolved: ``opc.tcp://localhost`` needs ``localhost`` among the DNS names,
  ``opc.tcp://127.0.0.1`` needs ``127.0.0.1`` among the IP addresses. The common name is not
  looked at (an OPC UA certificate names its hosts in subjectAltName).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class CertificateHosts:
    """The hosts a certificate names in its subjectAltName."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[IpAddress, ...]

    def __str__(self) -> str:
        """``DNS localhost, IP 127.0.0.1`` (``no host`` when there is none), for messages."""
        named = [f"DNS {name}" for name in self.dns_names]
        named += [f"IP {address}" for address in self.ip_addresses]
        return ", ".join(named) or "no host"


def certificate_hosts(cert: x509.Certificate) -> CertificateHosts:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return CertificateHosts((), ())
    addresses = [a for a in san.get_values_for_type(x509.IPAddress) if isinstance(a, IpAddress)]
    return CertificateHosts(tuple(san.get_values_for_type(x509.DNSName)), tuple(addresses))


def url_host(url: str) -> str | None:
    """The host of an endpoint URL as written, without IPv6 brackets (``opc.tcp://[fd00::5]:4840``:
    ``fd00::5``); None when the URL names none."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    else:
        host = host.partition(":")[0]
    return host or None


def _ip(host: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _dns_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if not pattern or not host:
        return False
    if pattern == host:
        return True
    first, dot, rest = pattern.partition(".")
    if first != "*" or not dot or rest.count(".") < 1:
        return False
    label, dot, host_rest = host.partition(".")
    return bool(label) and bool(dot) and host_rest == rest


def names_host(hosts: CertificateHosts, host: str) -> bool:
    """Whether a certificate naming ``hosts`` may answer at ``host`` (module docstring)."""
    address = _ip(host)
    if address is not None:
        return any(_ip(str(named)) == address for named in hosts.ip_addresses)
    return any(_dns_matches(name, host) for name in hosts.dns_names)
