"""`pkgline pki`: init, trust, reject, list and renew on real PKI directories, through the
installed command; the certificates made carry what OPC UA Part 6 asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers import certificates as C
from drivers import pki as P


def pkgline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pkgline", *args], capture_output=True, text=True, timeout=60
    )


def test_init_makes_an_application_certificate_with_uri_and_host_names(tmp_path: Path) -> None:
    done = pkgline("pki", "init", "--dir", str(tmp_path / "pki"))
    assert done.returncode == 0, done.stderr
    pki = P.Pki(tmp_path / "pki")
    cert, _, key = pki.own()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier)[0].startswith(
        "urn:pkgline:controller:"
    )
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and usage.data_encipherment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku and ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert key.stat().st_mode & 0o077 == 0, "the private key is readable by its owner only"
    for sub in ("trusted/certs", "trusted/crl", "issuers/certs", "issuers/crl", "rejected/certs"):
        assert (tmp_path / "pki" / sub).is_dir()
    again = pkgline("pki", "init", "--dir", str(tmp_path / "pki"))
    assert again.returncode == 4 and "exists already" in again.stderr
    assert pki.own()[0] == cert, "a second init changes nothing"


def test_trust_list_reject_and_renew(tmp_path: Path) -> None:
    ctl, sim = tmp_path / "ctl", tmp_path / "sim"
    assert pkgline("pki", "init", "--dir", str(ctl)).returncode == 0
    assert pkgline("pki", "init", "--dir", str(sim), "--simulators").returncode == 0
    tool_cert = sim / "own" / "certs" / "cert.der"
    trusted = pkgline("pki", "trust", "--dir", str(ctl), str(tool_cert))
    assert trusted.returncode == 0 and "trusted CN=pkgline simulator" in trusted.stdout
    listed = json.loads(pkgline("pki", "list", "--dir", str(ctl), "--json").stdout)
    assert [row["group"] for row in listed] == ["own", "trusted"]
    assert not any(row["expiring"] for row in listed)

    old = P.Pki(ctl).own()[0]
    renewed = pkgline("pki", "renew", "--dir", str(ctl))
    assert renewed.returncode == 0, renewed.stderr
    new = P.Pki(ctl).own()[0]
    assert new.serial_number != old.serial_number
    assert P.application_uris(new) == P.application_uris(old)
    assert new.public_key() != old.public_key(), "a new key pair unless --keep-key"

    rejected = pkgline("pki", "reject", "--dir", str(ctl), str(tool_cert))
    assert rejected.returncode == 0 and "no longer trusted" in rejected.stdout
    listed = json.loads(pkgline("pki", "list", "--dir", str(ctl), "--json").stdout)
    assert [row["group"] for row in listed] == ["own", "rejected"]


def test_renew_adds_the_hosts_given_to_those_the_certificate_named(tmp_path: Path) -> None:
    """A tool moved to another address: its simulator's (or a controller's) certificate is
    renewed naming the new host too, and keeps every name it had; a malformed host is
    refused as a usage error and changes nothing."""
    pki_dir = tmp_path / "pki"
    made = pkgline("pki", "init", "--dir", str(pki_dir), "--host", "tool-3.cell-b.example")
    assert made.returncode == 0, made.stderr
    old = P.Pki(pki_dir).own()[0]

    def hosts(cert: x509.Certificate) -> list[str]:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [str(v) for v in san.get_values_for_type(x509.IPAddress)] + list(
            san.get_values_for_type(x509.DNSName)
        )

    bad = pkgline("pki", "renew", "--dir", str(pki_dir), "--host", "opc.tcp://10.0.0.9:4840")
    assert bad.returncode == 2 and "expected a host name" in bad.stderr
    assert P.Pki(pki_dir).own()[0] == old, "a refused renewal changes nothing"

    renewed = pkgline(
        "pki",
        "renew",
        "--dir",
        str(pki_dir),
        "--host",
        "10.0.0.9",
        "--host",
        "TOOL-3.cell-b.example",
    )
    assert renewed.returncode == 0, renewed.stderr
    new = P.Pki(pki_dir).own()[0]
    assert set(hosts(new)) == {*hosts(old), "10.0.0.9"}
    assert len(hosts(new)) == len(hosts(old)) + 1, "a name it had is not named twice"
    assert "10.0.0.9" in renewed.stdout


def test_renew_refuses_a_certificate_a_ca_issued_and_changes_nothing(tmp_path: Path) -> None:
    """A controller whose certificate a site CA issued (the tools trust the CA): a renewal
    here would be self-signed, and every tool would refuse it."""
    pki = P.Pki(tmp_path / "ctl")
    ca_key, key = C.new_key(), C.new_key()
    ca = C.make_ca(ca_key, common_name="site CA")
    issued = C.make_certificate(
        key,
        common_name="pkgline controller",
        application_uri="urn:pkgline:controller:test",
        hosts=["localhost"],
        issuer=(ca, ca_key),
    )
    C.write_own(pki, issued, key)
    renewed = pkgline("pki", "renew", "--dir", str(pki.root))
    assert renewed.returncode == 4, renewed.stdout
    assert "was issued by CN=site CA" in renewed.stderr
    assert "Have the CA issue a new certificate" in renewed.stderr
    assert pki.own()[0] == issued


def test_a_file_that_is_no_certificate_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    assert pkgline("pki", "init", "--dir", str(tmp_path / "pki")).returncode == 0
    junk = tmp_path / "junk.der"
    junk.write_bytes(b"not a certificate")
    done = pkgline("pki", "trust", "--dir", str(tmp_path / "pki"), str(junk))
    assert done.returncode == 4
    assert "neither a certificate nor a revocation list" in done.stderr
    assert list((tmp_path / "pki" / "trusted" / "certs").iterdir()) == []
    gone = pkgline("pki", "trust", "--dir", str(tmp_path / "pki"), str(tmp_path / "none.pem"))
    assert gone.returncode == 4 and "Errno" not in gone.stderr, gone.stderr
    assert f"{tmp_path / 'none.pem'}: No such file or directory" in gone.stderr


def test_a_certificate_expiring_within_30_days_is_listed_as_expiring(tmp_path: Path) -> None:
    pki = P.Pki(tmp_path / "pki")
    C.init_own(pki, common_name="short", application_uri="urn:x", days=10)
    listed = json.loads(pkgline("pki", "list", "--dir", str(pki.root), "--json").stdout)
    assert listed[0]["expiring"] is True
    assert C.expiring([("own certificate", pki.own()[0])])[0].startswith("own certificate CN=short")


def test_init_names_the_hosts_given_for_a_tool_or_the_controller(tmp_path: Path) -> None:
    """A controller checks that a tool's certificate names the host of the endpoint URL: the
    hosts where the tool (here the simulators) answers are given with --host."""
    sim = tmp_path / "sim"
    done = pkgline(
        "pki", "init", "--dir", str(sim), "--simulators", "--host", "tool-3.cell-b.example",
        "--host", "[fd00::5]",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    san = P.Pki(sim).own()[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert {"localhost", "tool-3.cell-b.example"} <= set(
        san.value.get_values_for_type(x509.DNSName)
    )
    assert {str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)} >= {
        "127.0.0.1",
        "fd00::5",
    }
    assert "tool-3.cell-b.example" in done.stdout and "IP fd00::5" in done.stdout
    ctl = pkgline("pki", "init", "--dir", str(tmp_path / "ctl"), "--host", "mes-cell-b")
    assert ctl.returncode == 0, ctl.stderr
    assert "DNS mes-cell-b" in ctl.stdout
    wrong = pkgline("pki", "init", "--dir", str(tmp_path / "bad"), "--host", "opc.tcp://tool-3")
    assert wrong.returncode == 2 and "expected a host name" in wrong.stderr
    assert not (tmp_path / "bad").exists()
