"""The controller's side of a secure OPC UA connection, applied to one asyncua ``Client``.

:func:`secure_client` sets the security policy and mode with the controller's application
instance certificate (``<pki>/own``), the user identity (a name and password from a
credentials file only the service account can read, or an X.509 user certificate), and a
certificate validator that checks the server's certificate against the trust list
(:meth:`drivers.pki.Pki.check_peer`), including that it names the host of the endpoint URL
(unless ``check_host_name`` is off). The validator keeps the reason it refused a certificate
(:attr:`ServerCheck.rejected`), so that the error names it, not only the status code asyncua
turns it into.

Passwords are never in a URL (the endpoint model refuses one there) nor in a log line.
"""

from __future__ import annotations

from asyncua import ua
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509

from drivers.config import OpcUaSecurity
from drivers.credentials import read_credentials, redact_asyncua_passwords
from drivers.errors import ConfigurationError, SecurityRefused
from drivers.host_names import url_host
from drivers.opcua.ua_typed import Client, StatusCodes
from drivers.pki import CertificateRejected, Pki, PkiError, application_uris, check_key_mode

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}

CERTIFICATE_CODES = frozenset(
    {
        StatusCodes.BadCertificateUntrusted,
        StatusCodes.BadCertificateTimeInvalid,
        StatusCodes.BadCertificateRevoked,
        StatusCodes.BadCertificateUriInvalid,
        StatusCodes.BadCertificateHostNameInvalid,
        StatusCodes.BadCertificateInvalid,
        StatusCodes.BadCertificateUseNotAllowed,
        StatusCodes.BadCertificateIssuerRevoked,
        StatusCodes.BadCertificateRevocationUnknown,
        StatusCodes.BadSecurityChecksFailed,
        StatusCodes.BadSecurityPolicyRejected,
    }
)
IDENTITY_CODES = frozenset(
    {
        StatusCodes.BadUserAccessDenied,
        StatusCodes.BadIdentityTokenRejected,
        StatusCodes.BadIdentityTokenInvalid,
    }
)


class ServerCheck:
    """The certificate validator given to asyncua: checks the server's certificate against the
    trust list and for the host of ``endpoint`` (the URL connected to), remembers why it
    refused one."""

    def __init__(self, pki: Pki, security: OpcUaSecurity, *, endpoint: str | None = None):
        self._pki = pki
        self._security = security
        self._endpoint = endpoint
        self.expected_host: str | None = None
        """The host the server's certificate must name; None: not checked."""
        if security.check_host_name:
            self.expected_host = url_host(endpoint) if endpoint is not None else None
            if self.expected_host is None:  # never skip the check for want of a host
                raise ConfigurationError(
                    f"endpoint {endpoint!r}: no host to check the server's certificate for"
                )
        self.rejected: CertificateRejected | None = None

    async def __call__(self, cert: x509.Certificate, server: ua.ApplicationDescription) -> None:
        expected = self._security.server_uri or server.ApplicationUri
        try:
            self._pki.check_peer(
                cert,
                expected_uri=expected,
                expected_host=self.expected_host,
                trust_on_first_use=self._security.trust_on_first_use,
                endpoint=self._endpoint,
            )
        except CertificateRejected as exc:
            self.rejected = exc
            from asyncua.common.utils import ServiceError

            raise ServiceError(getattr(StatusCodes, exc.reason.value)) from exc


def _refuse_a_password_in_clear(client: Client) -> None:
    """Never send the password readable on the wire. A server whose user token policy for
    names and passwords says SecurityPolicy None asks for the password unencrypted in the
    token (OPC UA Part 4, 7.41), which only a SignAndEncrypt channel then hides: asyncua
    sends it so over a Sign channel too, logging only a warning. The session is refused
    before ActivateSession instead (the token policy comes with CreateSession's answer, on
    the signed channel), as the configuration refuses a password without security."""
    activate = client.activate_session

    async def activate_unless_in_clear(
        username: str | None = None,
        password: str | None = None,
        certificate: x509.Certificate | None = None,
    ) -> ua.ActivateSessionResult:
        if password and certificate is None:
            token = client.server_policy(ua.UserTokenType.UserName)
            in_clear = token.SecurityPolicyUri == security_policies.SecurityPolicyNone.URI
            if in_clear and client.security_policy.Mode != ua.MessageSecurityMode.SignAndEncrypt:
                raise SecurityRefused(
                    "the server asks for the user's password unencrypted (its user token "
                    "policy for names and passwords has SecurityPolicy None) over a channel "
                    "that is only signed: the password was not sent; use mode "
                    '"SignAndEncrypt", or a user certificate'
                )
        return await activate(username, password, certificate)

    client.activate_session = activate_unless_in_clear  # type: ignore[method-assign]


def security_pki(security: OpcUaSecurity) -> Pki:
    if security.pki is None:
        raise ConfigurationError(
            "no PKI directory for a secure OPC UA endpoint: set `pki` in line.toml "
            "(or the endpoint's security.pki)"
        )
    return Pki(security.pki)


async def secure_client(client: Client, security: OpcUaSecurity) -> ServerCheck | None:
    """Apply ``security`` to ``client`` before it connects. With a security policy this asks
    the server for its endpoints (over an unsecured channel, as OPC UA allows for
    GetEndpoints) to learn its certificate; the certificate is checked when the session is
    created. Raises ConfigurationError for a missing certificate or an unsafe credentials
    file."""
    if security.credentials is not None:
        redact_asyncua_passwords()
        try:
            credentials = read_credentials(security.credentials)
        except PkiError as exc:
            raise ConfigurationError(str(exc)) from exc
        client.set_user(credentials.username)
        client.set_password(credentials.password)
        _refuse_a_password_in_clear(client)
    if security.user_certificate is not None:
        assert security.user_key is not None
        try:
            check_key_mode(security.user_key)
        except PkiError as exc:
            raise ConfigurationError(str(exc)) from exc
        try:
            await client.load_client_certificate(str(security.user_certificate))
            await client.load_private_key(security.user_key)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"user certificate {security.user_certificate} or key {security.user_key}: "
                f"cannot be loaded: {exc}"
            ) from exc
    if not security.secure:
        return None
    pki = security_pki(security)
    try:
        own = pki.own_identity()
    except PkiError as exc:
        raise ConfigurationError(str(exc)) from exc
    uris = application_uris(own.certificate)
    if uris:
        client.application_uri = uris[0]
    check = ServerCheck(pki, security, endpoint=client.server_url.geturl())
    client.certificate_validator = check
    # What asyncua's Client.set_security does, with our certificate and key parsed once per
    # PKI directory (Pki.own_identity) instead of read and parsed again at every connection:
    # parsing the RSA key checks it, about 50 ms of CPU, and 500 sessions opening at once
    # spent seconds of the event loop on it, past their timeout.
    policy, mode = POLICIES[security.policy], MODES[security.mode]
    endpoints = await client.connect_and_get_server_endpoints()  # over policy None
    endpoint = Client.find_endpoint(endpoints, mode, policy.URI)
    server_certificate = uacrypto.x509_from_der(endpoint.ServerCertificate)  # type: ignore[no-untyped-call]
    secured = policy(server_certificate, own.certificate, own.key, mode)
    client.security_policy = secured  # type: ignore[assignment]
    client.uaclient.set_security(secured)
    return check
