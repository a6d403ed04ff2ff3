"""An MQTT broker connection as ``line.toml`` describes it, one type and one loader for every
pkgline publisher: the event feed (``[events]``, ``pkgline.events``) and the Sparkplug B edge
node (``[sparkplug]``, ``pkgline.sparkplug``) extend :class:`BrokerConfig` with their own keys.

What it owns: the broker URL (``mqtt://HOST:PORT`` or ``mqtts://HOST:PORT``, never with
credentials in it), TLS (CA, client certificate and key), the user name and the password read
from a file only the service may read, the keep-alive, and opening an aiomqtt client with MQTT
5, falling back to 3.1.1 when the broker refuses 5. Connection failures become one
:class:`BrokerError` whose message says what went wrong in an operator's words (wrong
password, TLS, refused, unreachable) without the password; a URL refused is never repeated
with what may hold one (:func:`shown_url`).

    BrokerError
     ├── BrokerConfigError   the settings or the password file are unusable (no retry helps)
     └── BrokerUnavailable   the broker refused or could not be reached (retry with backoff)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pkgline.oserrors import in_words

PENDING_CALLS_WARNING = 20_000
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
EXPECTED_URL = "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
CREDENTIALS_IN_URL = (
    "the URL must not hold a user or password (they would show in logs); "
    "use username and password_file"
)
MASK = "***"
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""Each message goes out at once: with Nagle's algorithm (paho leaves it on) a small PUBLISH
waits for the ACK of the one before, which the broker's delayed ACK holds up to 40 ms."""
# CONNACK codes (3.1.1 return codes, 5 reason codes) that mean "speak another version".
_UNSUPPORTED_VERSION = {1, 132}
_BAD_CREDENTIALS = {4, 5, 134, 135}


T = TypeVar("T")


class Client(aiomqtt.Client):
    """aiomqtt's client, its bookkeeping of a call waiting for the broker's answer done in
    constant time.

    aiomqtt (2.5.1, its latest) checks at each publish that no call waits with the same
    message id by walking every waiting call, then counts them by listing them all: a QoS 1
    publish costs time in proportion to the publishes waiting for their PUBACK. A relay
    draining a backlog keeps a few thousand waiting (several batches in flight), where the
    walk took 40 % of its CPU (cProfile of bench/event_feed.py's drain). The same checks and
    the same warning here, on the three dicts themselves (aiomqtt's own attributes, as
    ``_pending_call`` is its own method: tests/events/test_mqtt_client.py checks both)."""

    @contextlib.contextmanager
    def _pending_call(self, mid: int, value: T, pending_dict: dict[int, T]) -> Iterator[None]:
        waiting = (self._pending_subscribes, self._pending_unsubscribes, self._pending_publishes)
        if any(mid in calls for calls in waiting):
            raise RuntimeError(f'There already exists a pending call for message ID "{mid}"')
        pending_dict[mid] = value
        try:
            pending = sum(len(calls) for calls in waiting)
            if pending > self.pending_calls_threshold:
                self._logger.warning("There are %d pending publish calls.", pending)
            yield
        finally:
            with contextlib.suppress(KeyError):
                del pending_dict[mid]


class BrokerError(Exception):
    """The broker connection failed; the message says why, for an operator."""


class BrokerConfigError(BrokerError):
    """The broker settings cannot work as given (bad URL, password file open to others)."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached, refused the connection, or TLS failed."""


def shown_url(url: str) -> str:
    """``url`` as a message may repeat it: its scheme, host and port, and ``***`` for what
    may hold a secret (a user and password, a path, a query, a fragment, a port that is not
    a number)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    shown = f"{parts.scheme}:" if parts.scheme else ""
    if parts.netloc or url.lstrip()[len(shown) :].startswith("//"):
        user, _, host = parts.netloc.rpartition("@")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            host = f"{host.rpartition(':')[0]}:{MASK}"
        shown += f"//{MASK + '@' if user else ''}{host}"
    if parts.path not in ("", "/"):
        shown += f"/{MASK}" if parts.path.startswith("/") else MASK
    else:
        shown += parts.path
    if parts.query:
        shown += f"?{MASK}"
    if parts.fragment:
        shown += f"#{MASK}"
    return shown


class BrokerConfig(BaseModel):
    """How to reach an MQTT broker: the keys ``[events]`` and ``[sparkplug]`` share.

    A URL refused is never repeated as given (:func:`shown_url`), and a validation error of
    this model does not repeat its input (``hide_input_in_errors``): the URL may hold a
    password by mistake."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS); no user or password.",
    )
    ca_file: Path | None = Field(None, description="CA certificates for the broker (mqtts).")
    cert_file: Path | None = Field(None, description="Client certificate (mqtts).")
    key_file: Path | None = Field(None, description="Client certificate's private key.")
    username: str | None = None
    password_file: Path | None = Field(
        None, description="A file holding the password, readable by the service's user only."
    )
    client_id: str | None = Field(
        None, max_length=64, description="MQTT client id; default: pkgline-<controller>-<role>."
    )
    keepalive_s: int = Field(
        15, ge=2, le=3600, description="A dead connection is seen within 1.5 x this."
    )
    timeout_s: float = Field(
        10.0, gt=0, le=300, description="Connect, and each publish's acknowledgement."
    )
    backoff_initial_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=600)
    """As a tool connection's (drivers.config.ConnectionPolicy, which the retries use):
    a longer one was taken here, and refused by the relay when it first retried."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        # Credentials first, and no refusal repeats the URL as given: a password in it (the
        # user-info, a query, whatever follows the host) would go to the journal or the
        # terminal with the message. They show as :func:`shown_url` masks them.
        if "@" in url:  # no host or port holds one: user-info, whatever the rest
            raise ValueError(CREDENTIALS_IN_URL)
        try:
            parts = urlsplit(url)
        except ValueError:
            raise ValueError(f"{EXPECTED_URL}, got a URL with an unbalanced [ or ]") from None
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"{EXPECTED_URL}, got {shown_url(url)!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {shown_url(url)!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                f"expected mqtt://HOST[:PORT] with nothing after it, got {shown_url(url)!r}"
            )
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError(f"bad port in {shown_url(url)!r}") from None
        return url

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None
        return host

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or DEFAULT_PORTS[parts.scheme]

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    def client_id_for(self, controller: str, role: str) -> str:
        return self.client_id or f"pkgline-{controller}-{role}"[:64]


def read_password(path: Path) -> str:
    """The password in ``path`` (its first line). Refuses a file that its group or others may
    read or write: a broker password is for the service alone, and the service's group
    (``pkgline``, deploy/install.sh) holds the operators too, so a 0640 file would give it to
    every one of them. The file belongs to the service's user, mode 0600 (or 0400)."""
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            mode = stat.S_IMODE(info.st_mode)
            raise BrokerConfigError(
                f"password_file {path}: readable by others (mode {mode:04o}); it must be "
                f"readable by the service's user only (its group holds the operators): "
                f"chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BrokerConfigError(
            f"password_file {path}: cannot read: {exc.strerror or exc}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise BrokerConfigError(
            f"password_file {path}: not UTF-8 text (byte {exc.start}); expected the password "
            "on line 1"
        ) from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise BrokerConfigError(f"password_file {path}: empty; expected the password on line 1")
    return password


def tls_context(config: BrokerConfig) -> ssl.SSLContext | None:
    """The TLS context of an ``mqtts://`` broker (the system's CAs unless ``ca_file``)."""
    if not config.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    except OSError as exc:  # ssl.SSLError too
        raise _tls_file_error(config, f"ca_file {config.ca_file}", exc) from exc
    if config.cert_file is not None:
        key = str(config.key_file) if config.key_file else None
        try:
            context.load_cert_chain(str(config.cert_file), key)
        except OSError as exc:
            files = f"cert_file {config.cert_file}" + (f", key_file {key}" if key else "")
            raise _tls_file_error(config, files, exc) from exc
    return context


def _tls_file_error(config: BrokerConfig, files: str, exc: OSError) -> BrokerConfigError:
    """Why the TLS ``files`` of ``config`` are unusable, in words (ssl says "[Errno 2] No such
    file or directory" and names no file)."""
    return BrokerConfigError(f"TLS files of {config.url}: {files}: {in_words(exc)}")


@asynccontextmanager
async def connect(
    config: BrokerConfig,
    client_id: str,
    *,
    will: aiomqtt.Will | None = None,
    clean: bool = True,
) -> AsyncIterator[aiomqtt.Client]:
    """An open client, MQTT 5 if the broker speaks it (else 3.1.1). Raises
    :class:`BrokerError` saying what failed; the client is closed when the block ends."""
    password = read_password(config.password_file) if config.password_file else None
    context = tls_context(config)
    if context is not None:
        await _check_tls(config, context)
    for protocol in (aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311):
        session: dict[str, Any] = (
            {"clean_start": clean}
            if protocol is aiomqtt.ProtocolVersion.V5
            else {"clean_session": clean}
        )
        client = Client(
            config.host,
            config.port,
            username=config.username,
            password=password,
            identifier=client_id,
            protocol=protocol,
            will=will,
            keepalive=config.keepalive_s,
            timeout=config.timeout_s,
            tls_context=context,
            **session,
            max_inflight_messages=100,
            socket_options=NO_DELAY,
        )
        # aiomqtt warns of "pending publish calls" past 10; a relay keeps a batch in flight.
        client.pending_calls_threshold = PENDING_CALLS_WARNING
        try:
            await client.__aenter__()
        except MqttConnectError as exc:
            if _code(exc) in _UNSUPPORTED_VERSION and protocol is aiomqtt.ProtocolVersion.V5:
                continue
            raise BrokerUnavailable(_describe(config, exc)) from None
        except aiomqtt.MqttError as exc:
            raise BrokerUnavailable(_describe(config, exc)) from None
        try:
            yield client
        finally:
            await client.__aexit__(None, None, None)
        return
    raise BrokerUnavailable(f"{config.url}: refused both MQTT 5 and 3.1.1")  # pragma: no cover


async def _check_tls(config: BrokerConfig, context: ssl.SSLContext) -> None:
    """Shake hands once with asyncio first: a certificate the CA does not vouch for is then
    told as such, and paho, which leaves the socket of a failed handshake open, never meets
    one."""
    try:
        async with asyncio.timeout(config.timeout_s):
            _, writer = await asyncio.open_connection(config.host, config.port, ssl=context)
    except ssl.SSLError as exc:
        raise BrokerUnavailable(f"{config.url}: TLS failed: {exc}") from None
    except (OSError, TimeoutError) as exc:
        raise BrokerUnavailable(f"{config.url}: cannot connect: {exc or 'timed out'}") from None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(config.timeout_s):
            await writer.wait_closed()


_ERRNO = re.compile(r"\[Errno -?\d+\] ")
"""Python's prefix of an OS error's words, which aiomqtt passes on in its message."""


def _describe(config: BrokerConfig, exc: aiomqtt.MqttError) -> str:
    where = config.url
    if isinstance(exc, MqttConnectError) and _code(exc) in _BAD_CREDENTIALS:
        who = f"user {config.username!r}" if config.username else "no user name"
        return f"{where}: the broker refused the credentials ({who}): {exc}"
    text = _ERRNO.sub("", str(exc))  # "Connection refused", not "[Errno 111] Connection ..."
    if "CERTIFICATE" in text.upper() or "SSL" in text.upper() or "TLS" in text.upper():
        return f"{where}: TLS failed: {text}"
    return f"{where}: {text or type(exc).__name__}"


def _code(exc: MqttConnectError) -> int | None:
    rc = exc.rc
    return rc.value if isinstance(rc, ReasonCode) else rc


def protocol_name(client: aiomqtt.Client) -> str:
    """``MQTT 5`` or ``MQTT 3.1.1``, as connected."""
    version = client._client.protocol
    return "MQTT 5" if version == MQTTProtocolVersion.MQTTv5 else "MQTT 3.1.1"
