"""``pkgline pki``: the controller's (or the simulators') certificate and trust list.

    pkgline pki init   [--config line.toml | --dir PKI] [--simulators] [--host HOST]... [--force]
    pkgline pki trust  FILE     a peer's certificate, a CA, or a revocation list
    pkgline pki reject FILE     take a certificate off the trust list
    pkgline pki list            own, trusted, issuer and rejected certificates, with expiry
    pkgline pki renew  [--host HOST]...  a new certificate (and key) for the same application,
                                its host names and each --host

The directory is the line's ``[security] pki`` (``--simulators``: ``simulator_pki``), or
``--dir``. A certificate made names this machine (its name, localhost, 127.0.0.1) and each
``--host``; the simulators' one also the hosts where the line's simulated tools answer (with
``--config``): a controller checks that a tool's certificate names the host it connects to. The running daemon takes a renewed certificate by itself (it reconnects).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from drivers.certificates import certificate_host, renew_own
from drivers.host_names import certificate_hosts
from drivers.pki import EXPIRY_WARNING_DAYS, Pki, PkiError, describe
from pkgline.cli.common import (
    EXIT_UNAVAILABLE,
    JsonOption,
    err,
    marked,
    out,
    print_json,
    usage_error,
)
from pkgline.config import ConfigError, LineConfig, load_line_config
from pkgline.security import init_controller, listing, reject, trust

app = typer.Typer(
    help="Certificates and trust lists of the secure equipment links.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="The line configuration whose PKI to use.", show_default=False
    ),
]
DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="A PKI directory (instead of the line's).", show_default=False),
]
SimOption = Annotated[
    bool,
    typer.Option(
        "--simulators", help="The simulators' PKI (security.simulator_pki), not the controller's."
    ),
]


def _line(config: Path | None) -> LineConfig | None:
    if config is None:
        return None
    try:
        return load_line_config(config)
    except ConfigError as exc:
        usage_error(str(exc))


def _pki(config: Path | None, directory: Path | None, simulators: bool) -> Pki:
    if directory is not None:
        if config is not None:
            usage_error("give --config or --dir, not both")
        return Pki(directory.expanduser().resolve())
    line = _line(config)
    if line is None:
        usage_error("say which PKI: --config line.toml, or --dir DIRECTORY")
    root = line.security.simulator_pki if simulators else line.security.pki
    assert root is not None  # load_line_config gives both a default
    return Pki(root)


def _fail(exc: Exception) -> typer.Exit:
    message = str(exc)
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        message = f"{exc.filename}: {exc.strerror}"  # not Python's "[Errno 2] ..."
    err.print(marked("error:", "bold red", message))
    return typer.Exit(EXIT_UNAVAILABLE)


@app.command()
def init(
    config: ConfigOption = None,
    directory: DirOption = None,
    simulators: SimOption = False,
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="A host name or IP address the certificate names besides this machine's "
            "(its name, localhost, 127.0.0.1): where a tool answers, as its endpoint URL "
            "says; repeat for more.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing certificate and key.")
    ] = False,
) -> None:
    """Create the PKI directories and a self-signed application instance certificate."""
    pki = _pki(config, directory, simulators)
    try:
        named = [certificate_host(host) for host in hosts or ()]
    except PkiError as exc:
        usage_error(str(exc))
    try:
        if simulators:
            from simulators.certificate import simulator_pki
            from simulators.line import served_hosts

            if pki.has_own and not force:
                raise PkiError(f"{pki.own_certificate} exists already")
            if force:
                pki.own_certificate.unlink(missing_ok=True)
            line = _line(config)
            served = served_hosts(line) if line is not None else []
            cert = simulator_pki(pki.root, [*named, *served]).own()[0]
        else:
            cert = init_controller(pki, force=force, hosts=named)
    except (PkiError, OSError) as exc:
        raise _fail(exc) from None
    out.print(f"created {describe(cert)}, valid until {cert.not_valid_after_utc:%Y-%m-%d}")
    out.print(f"names {certificate_hosts(cert)}")
    out.print(f"certificate: {pki.own_certificate} (give it to the tools to trust)")


@app.command("trust")
def trust_command(
    file: Annotated[Path, typer.Argument(help="Certificate (DER/PEM) or revocation list.")],
    config: ConfigOption = None,
    directory: DirOption = None,
    simulators: SimOption = False,
) -> None:
    """Trust a peer's certificate or a CA (trusted/certs), or add a revocation list."""
    pki = _pki(config, directory, simulators)
    try:
        out.print(trust(pki, file))
    except (PkiError, OSError) as exc:
        raise _fail(exc) from None


@app.command("reject")
def reject_command(
    file: Annotated[Path, typer.Argument(help="The certificate to take off the trust list.")],
    config: ConfigOption = None,
    directory: DirOption = None,
    simulators: SimOption = False,
) -> None:
    """Take a certificate off the trust list (it goes to rejected/certs)."""
    pki = _pki(config, directory, simulators)
    try:
        out.print(reject(pki, file))
    except (PkiError, OSError) as exc:
        raise _fail(exc) from None


@app.command("list")
def list_command(
    config: ConfigOption = None,
    directory: DirOption = None,
    simulators: SimOption = False,
    as_json: JsonOption = False,
) -> None:
    """The own, trusted, issuer and rejected certificates, with their expiry."""
    pki = _pki(config, directory, simulators)
    try:
        items = listing(pki)
    except (PkiError, OSError) as exc:
        raise _fail(exc) from None
    now = dt.datetime.now(dt.UTC)
    soon = now + dt.timedelta(days=EXPIRY_WARNING_DAYS)
    rows = [
        {
            "group": item.group,
            "certificate": describe(item.certificate),
            "not_after": item.certificate.not_valid_after_utc.isoformat(),
            "expiring": item.certificate.not_valid_after_utc <= soon,
            "file": str(item.path),
        }
        for item in items
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"PKI {pki.root}", box=box.SIMPLE_HEAD)
    for name in ("group", "certificate", "valid until", "file"):
        table.add_column(name, overflow="fold")
    for row in rows:
        until = str(row["not_after"])[:10]
        table.add_row(
            str(row["group"]),
            str(row["certificate"]),
            Text(f"{until} (expiring)", style="bold red") if row["expiring"] else until,
            Path(str(row["file"])).name,
        )
    out.print(table)


@app.command()
def renew(
    config: ConfigOption = None,
    directory: DirOption = None,
    simulators: SimOption = False,
    keep_key: Annotated[bool, typer.Option("--keep-key", help="Keep the key pair.")] = False,
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="A host name or IP address the new certificate names besides those the old "
            "one named (a tool that now answers at another address); repeat for more.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """A new certificate for the same application URI and host names (a new key unless
    --keep-key), and each --host. A running controller reconnects with it by itself; peers
    that trust the old certificate one by one must be given the new one."""
    pki = _pki(config, directory, simulators)
    try:
        named = [certificate_host(host) for host in hosts or ()]
    except PkiError as exc:
        usage_error(str(exc))
    try:
        cert = renew_own(pki, new_key_pair=not keep_key, more_hosts=named)
    except (PkiError, OSError) as exc:
        raise _fail(exc) from None
    out.print(f"renewed: {describe(cert)}, valid until {cert.not_valid_after_utc:%Y-%m-%d}")
    out.print(f"names {certificate_hosts(cert)}")
    out.print(f"give {pki.own_certificate} to the peers that trust it one by one")
