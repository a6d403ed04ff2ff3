"""The operator station: the line, the lots and their strip maps as web pages served by the
pkgline server (docs/station.md). Server-rendered (Jinja2), a session cookie from the server's
password login, CSRF tokens on every form, live line updates by server-sent events; every
asset ships in the package."""
