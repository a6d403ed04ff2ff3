"""Whether a server's certificate names the host connected to (drivers/host_names.py, and
Pki.check_peer's use of it): IP addresses by value (IPv6 in brackets, IPv4-mapped, zones),
names case-insensitively with one leftmost wildcard label at most, never a name for an
address or an address for a name; a certificate for another host is refused before trust on
first use trusts or pins anything; what a certificate may name (drivers/certificates.py)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from drivers import certificates as C
from drivers import pki as P
from drivers.host_names import CertificateHosts, certificate_hosts, names_host, url_host
from tests.pki_material import SIMULATOR_URI, Keys


def hosts(*named: str) -> CertificateHosts:
    dns, ips = [], []
    for name in named:
        try:
            ips.append(ipaddress.ip_address(name))
        except ValueError:
            dns.append(name)
    return CertificateHosts(tuple(dns), tuple(ips))


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("opc.tcp://127.0.0.1:4840", "127.0.0.1"),
        ("opc.tcp://Tool-3.Cell-B.example:4840/UA/Server", "Tool-3.Cell-B.example"),
        ("opc.tcp://tool-3", "tool-3"),
        ("opc.tcp://[fd00::5]:4840/path", "fd00::5"),
        ("opc.tcp://[fe80::1%25eth0]:4840", "fe80::1%25eth0"),
        ("opc.tcp://:4840", None),
        ("opc.tcp://[fd00::5", None),
    ],
)
def test_the_host_of_an_endpoint_url_is_taken_as_written(url: str, host: str | None) -> None:
    assert url_host(url) == host


@pytest.mark.parametrize(
    ("named", "host", "accepted"),
    [
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.1"], "127.0.0.2", False),
        (["fd00::5"], "fd00::5", True),
        (["fd00::5"], "FD00:0:0:0:0:0:0:5", True),  # by value, not by spelling
        (["fd00::5"], "fd00::6", False),
        (["fe80::1"], "fe80::1%25eth0", True),  # the zone names an interface, not the host
        (["10.0.0.5"], "::ffff:10.0.0.5", True),  # an IPv4-mapped IPv6 address is the IPv4 one
        (["localhost"], "127.0.0.1", False),  # names are not resolved
        (["127.0.0.1"], "localhost", False),
    ],
)
def test_ip_addresses_match_ip_address_entries_by_value(
    named: list[str], host: str, accepted: bool
) -> None:
    assert names_host(hosts(*named), host) is accepted


def test_an_ip_address_never_matches_a_dns_name_entry_spelling_it() -> None:
    """A dNSName "10.0.0.5" is no iPAddress: as OpenSSL checks Modbus/TCP Security."""
    assert not names_host(CertificateHosts(("10.0.0.5",), ()), "10.0.0.5")


@pytest.mark.parametrize(
    ("pattern", "host", "accepted"),
    [
        ("tool-3.cell-b.example", "TOOL-3.Cell-B.example", True),  # case-insensitive
        ("tool-3.cell-b.example.", "tool-3.cell-b.example", True),  # a trailing dot
        ("tool-3.cell-b.example", "tool-3.cell-b.example.", True),
        ("tool-3.cell-b.example", "tool-4.cell-b.example", False),
        ("tool-3.cell-b.example", "tool-3.cell-b.example.evil", False),
        ("*.cell-b.example", "tool-3.cell-b.example", True),  # one leftmost label
        ("*.cell-b.example", "TOOL-3.CELL-B.example", True),
        ("*.cell-b.example", "cell-b.example", False),  # not zero labels
        ("*.cell-b.example", "a.tool-3.cell-b.example", False),  # not two
        ("*.example", "tool-3.example", False),  # not with one label after it
        ("tool*.cell-b.example", "tool-3.cell-b.example", False),  # no partial wildcard
        ("tool-3.*.example", "tool-3.cell-b.example", False),  # only the leftmost
        ("*.cell-b.example", "10.0.0.5", False),
    ],
)
def test_names_match_case_insensitively_with_one_leftmost_wildcard_label(
    pattern: str, host: str, accepted: bool
) -> None:
    assert names_host(CertificateHosts((pattern,), ()), host) is accepted


def test_a_certificate_naming_no_host_names_none(rsa_keys: Keys) -> None:
    cert = C.make_certificate(
        rsa_keys.simulator, common_name="tool-3", application_uri=SIMULATOR_URI, hosts=[]
    )
    found = certificate_hosts(cert)
    assert found == CertificateHosts((), ())
    assert str(found) == "no host"
    assert not names_host(found, "tool-3")  # the common name is not looked at


def tool_certificate(keys: Keys, *named: str) -> x509.Certificate:
    return C.make_certificate(
        keys.simulator, common_name="tool-a", application_uri=SIMULATOR_URI, hosts=named
    )


def test_check_peer_refuses_a_certificate_for_another_host_saying_what_it_names(
    tmp_path: Path, rsa_keys: Keys
) -> None:
    pki = P.Pki(tmp_path / "pki")
    cert = tool_certificate(rsa_keys, "tool-a.example", "10.0.0.5")
    pki.store(cert, pki.trusted)
    with pytest.raises(P.CertificateRejected) as refused:
        pki.check_peer(cert, expected_uri=SIMULATOR_URI, expected_host="10.0.0.6")
    assert refused.value.reason is P.RejectReason.WRONG_HOST
    assert refused.value.reason.value == "BadCertificateHostNameInvalid"
    message = refused.value.message
    assert "names DNS tool-a.example, IP 10.0.0.5 in its subjectAltName" in message
    assert "not the host 10.0.0.6 of the endpoint URL" in message
    assert "Have the tool's certificate issued for 10.0.0.6" in message
    assert "check_host_name = false" in message
    pki.check_peer(cert, expected_uri=SIMULATOR_URI, expected_host="10.0.0.5")
    pki.check_peer(cert, expected_uri=SIMULATOR_URI, expected_host="TOOL-A.example")
    pki.check_peer(cert, expected_uri=SIMULATOR_URI, expected_host=None)  # not checked


def test_trust_on_first_use_never_trusts_nor_pins_a_certificate_for_another_host(
    tmp_path: Path, rsa_keys: Keys
) -> None:
    pki = P.Pki(tmp_path / "pki")
    pki.create_dirs()
    url = "opc.tcp://10.0.0.6:4840"
    wrong = tool_certificate(rsa_keys, "10.0.0.5")
    with pytest.raises(P.CertificateRejected) as refused:
        pki.check_peer(
            wrong,
            expected_uri=SIMULATOR_URI,
            expected_host="10.0.0.6",
            trust_on_first_use=True,
            endpoint=url,
        )
    assert refused.value.reason is P.RejectReason.WRONG_HOST
    assert pki.trusted_certificates() == []
    assert pki.first_use(url) is None
    assert list(pki.rejected.iterdir()) == []  # trusting it would not help: not kept
    right = tool_certificate(rsa_keys, "10.0.0.6")  # the first use is still to come
    pki.check_peer(
        right,
        expected_uri=SIMULATOR_URI,
        expected_host="10.0.0.6",
        trust_on_first_use=True,
        endpoint=url,
    )
    assert pki.first_use(url) == P.thumbprint(right)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("tool-3.cell-b.example", "tool-3.cell-b.example"),
        ("*.cell-b.example", "*.cell-b.example"),
        ("10.0.0.5", "10.0.0.5"),
        ("[fd00::5]", "fd00::5"),
        ("FD00:0::5", "fd00::5"),
    ],
)
def test_a_host_for_a_certificate_is_a_name_or_an_ip_address(given: str, named: str) -> None:
    assert C.certificate_host(given) == named


@pytest.mark.parametrize(
    "given", ["opc.tcp://tool-3", "tool-3:4840", "tool 3", "", "-tool.example", "t\u00f6ol.example"]
)
def test_anything_else_is_refused_as_a_host_for_a_certificate(given: str) -> None:
    with pytest.raises(P.PkiError, match="expected a host name"):
        C.certificate_host(given)
