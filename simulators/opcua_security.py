"""The simulated tools' side of secure OPC UA: their certificate, who may connect, who may
command which tool.

:class:`SimulatorSecurity` is applied to an asyncua ``Server`` before it starts
(:meth:`SimulatorSecurity.apply`):

- endpoints for Basic256Sha256, Aes128_Sha256_RsaOaep and Aes256_Sha256_RsaPss, each with
  Sign and SignAndEncrypt; no policy None;
- the server's application instance certificate from ``<pki>/own``; a client's certificate is
  checked against ``<pki>/trusted`` and the revocation lists (:meth:`drivers.pki.Pki.check_peer`,
  untrusted ones are copied to rejected/certs);
- users: a name and password, or an X.509 user certificate, each with the tools it operates
  (``"*"``: every tool of the server). Anonymous clients are refused unless ``anonymous_read``
  is on; they then read and browse, and command nothing;
- a method that commands a tool (:data:`COMMAND_METHODS`) runs only for a user with the
  operator role on that tool; anybody else gets BadUserAccessDenied. Nobody writes values or
  changes the address space over the wire.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer, ServiceError
from asyncua.crypto import security_policies
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import struct_from_binary
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from drivers.credentials import redact_asyncua_passwords
from drivers.pki import CertificateRejected, Pki
from simulators.opcua_model import node_id

COMMAND_METHODS = frozenset(
    {"LoadRecipe", "StartJob", "Abort", "SetMode", "ResetAlarm", "AcknowledgeResults"}
)
"""Methods that change a tool: only for its operators."""

ALL_TOOLS = "*"

_P = ua.SecurityPolicyType
SECURE_POLICIES = (
    _P.Basic256Sha256_Sign,
    _P.Basic256Sha256_SignAndEncrypt,
    _P.Aes128Sha256RsaOaep_Sign,
    _P.Aes128Sha256RsaOaep_SignAndEncrypt,
    _P.Aes256Sha256RsaPss_Sign,
    _P.Aes256Sha256RsaPss_SignAndEncrypt,
)

_CALL = node_id(ObjectIds.CallRequest_Encoding_DefaultBinary)
_WRITE = node_id(ObjectIds.WriteRequest_Encoding_DefaultBinary)
_ALLOWED = frozenset(node_id(t) for t in USER_TYPES) - {_WRITE}


@dataclass(frozen=True, slots=True)
class Operator:
    """Who may command which tools of a server (``"*"``: all of them)."""

    name: str
    tools: frozenset[str]

    def operates(self, tool_id: str) -> bool:
        return ALL_TOOLS in self.tools or tool_id in self.tools


@dataclass
class ToolUser(User):
    """asyncua's user, with the tools it operates (none for an anonymous reader)."""

    operator: Operator | None = None


@dataclass(frozen=True)
class SimulatorSecurity:
    """A simulator's security (see the module docstring). ``passwords``: user name ->
    (password, tools operated); ``user_certificates``: DER -> tools operated, named after the
    certificate's subject."""

    pki: Pki
    passwords: Mapping[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    user_certificates: Mapping[bytes, tuple[str, frozenset[str]]] = field(default_factory=dict)
    anonymous_read: bool = False
    policies: tuple[ua.SecurityPolicyType, ...] = SECURE_POLICIES

    @staticmethod
    def certificate_user(
        cert: x509.Certificate, tools: Iterable[str]
    ) -> tuple[bytes, tuple[str, frozenset[str]]]:
        """An entry of ``user_certificates``."""
        return cert.public_bytes(serialization.Encoding.DER), (
            cert.subject.rfc4514_string(),
            frozenset(tools),
        )

    async def apply(self, server: Server) -> None:
        """Set up ``server`` (before ``start``) as the module docstring says."""
        _, cert_path, key_path = self.pki.own()
        await server.load_certificate(str(cert_path))
        await server.load_private_key(str(key_path))
        rules: Any = _ToolRules()  # asyncua annotates its own ruleset class only
        server.set_security_policy(list(self.policies), permission_ruleset=rules)
        # asyncua opens a channel with policy None for anybody (GetEndpoints needs it) and,
        # unless told otherwise, serves a session on it with no permission check at all: a
        # client could log in with a clear-text password and call methods. A None policy with
        # a ruleset that refuses every service keeps that channel to GetEndpoints (asyncua
        # 2.1 keeps the factories in this attribute; the endpoint is not advertised).
        server._policies.append(
            security_policies.SecurityPolicyFactory(  # type: ignore[no-untyped-call]
                security_policies.SecurityPolicyNone,
                ua.MessageSecurityMode.None_,
                permission_ruleset=_Nothing(),
            )
        )
        tokens: list[type] = [ua.UserNameIdentityToken, ua.X509IdentityToken]
        if self.anonymous_read:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        server.iserver.user_manager = _Users(self)  # type: ignore[assignment]
        redact_asyncua_passwords()
        server.set_certificate_validator(self._check_client)

    async def _check_client(
        self, cert: x509.Certificate, client: ua.ApplicationDescription
    ) -> None:
        try:
            # the host name check is the client's (OPC UA Part 4): a client has no endpoint URL
            self.pki.check_peer(cert, expected_uri=client.ApplicationUri, expected_host=None)
        except CertificateRejected as exc:
            raise ServiceError(getattr(StatusCodes, exc.reason.value)) from exc


class _Users:
    """asyncua's user manager: a password or a user certificate names an operator."""

    def __init__(self, security: SimulatorSecurity):
        self._security = security

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        security = self._security
        if username is not None:
            entry = security.passwords.get(username)
            given = (password or "").encode()
            # compare even for an unknown user: the answer takes as long either way
            expected = entry[0].encode() if entry is not None else b"\0" * len(given)
            if entry is None or not hmac.compare_digest(given, expected):
                return None
            return ToolUser(
                role=UserRole.User, name=username, operator=Operator(username, entry[1])
            )
        if certificate is not None:
            found = security.user_certificates.get(bytes(certificate))
            if found is not None:
                name, tools = found
                return ToolUser(role=UserRole.User, name=name, operator=Operator(name, tools))
        # An anonymous token (the application certificate is passed as ``certificate`` then),
        # or a user certificate of nobody: reads only, where anonymous reading is on.
        if security.anonymous_read:
            return ToolUser(role=UserRole.Anonymous, name="anonymous", operator=None)
        return None


class _Nothing(PermissionRuleset):
    """No service at all (session management and GetEndpoints are not asked about)."""

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Buffer) -> bool:
        return False


class _ToolRules(PermissionRuleset):
    """Which requests a user may make: reads, browses and subscriptions for everyone with a
    session; a command method only for an operator of the tool it belongs to (the method's
    node id is ``s=<tool>/<method>``); writes and address space changes for nobody."""

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Buffer) -> bool:
        if action_type_id == _CALL:
            params = struct_from_binary(ua.CallParameters, body.copy())
            operator = user.operator if isinstance(user, ToolUser) else None
            for method in params.MethodsToCall or ():
                ident = method.MethodId.Identifier
                if not isinstance(ident, str):
                    continue
                tool_id, _, name = ident.rpartition("/")
                if name in COMMAND_METHODS and (operator is None or not operator.operates(tool_id)):
                    return False
            return True
        return action_type_id in _ALLOWED
