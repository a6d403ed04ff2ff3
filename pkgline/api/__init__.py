"""The pkgline server (``pkgline api``): the lot tracker's operations as an HTTP API, thin
over the same service layer the CLI uses, for local clients on a Unix socket (known by their
OS account) and remote ones over HTTPS (docs/api.md).

Modules: :mod:`.defaults` (constants the CLI's client reads too: keep it import-free),
:mod:`.app` (the application factory), :mod:`.auth` (who is asking), :mod:`.errors`
(refusals to HTTP), :mod:`.fields` (where a request gave the input a refusal names: keep it
import-free too), :mod:`.bodies` (request bodies), :mod:`.lots` (the lot routes), :mod:`.peer` (peer credentials on the Unix socket),
:mod:`.server` (serving it: sockets, HTTPS, systemd, SIGTERM).
"""
