"""Typed helpers over ``asyncua.ua``, so the OPC UA package passes ``mypy --strict``.

asyncua 2.1 annotates node ids, numbers and booleans with its own classes (``ua.Int32``,
``ua.String``, ``ua.Int16``; ``ua.Boolean`` is not even a ``bool``) and re-exports its constants
without ``__all__``. These helpers take plain Python values; the casts below are there for that
reason only (the values are what asyncua accepts at run time).
"""

from __future__ import annotations

from typing import cast

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

__all__ = [
    "AttributeIds",
    "Client",
    "ObjectIds",
    "StatusCodes",
    "UaClientState",
    "UaError",
    "UaStatusCodeError",
    "boolean",
    "node_id",
    "qualified_name",
    "status",
]


def node_id(identifier: int | str, namespace: int = 0) -> ua.NodeId:
    """A numeric (``int``) or string node id."""
    return ua.NodeId(cast(ua.String, identifier), ua.Int16(namespace))


def qualified_name(name: str, namespace: int) -> ua.QualifiedName:
    return ua.QualifiedName(name, namespace)


def status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def boolean(value: bool) -> ua.Boolean:
    return cast(ua.Boolean, value)
