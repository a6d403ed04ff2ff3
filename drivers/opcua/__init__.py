"""The OPC UA transport (asyncua).

::

    nodemap   where signals and methods live in a server's address space (checked YAML data)
    codec     OPC UA values <-> the equipment model (pure; malformed values are caught here)
    session   one asyncua Client per endpoint, shared by every tool behind it: connect,
              watchdog, reconnect with backoff, ONE subscription rebuilt after every reconnect,
              and the one translation of asyncua errors into drivers.errors
    driver    OpcUaDriver: the ToolDriver protocol in equipment words

The information model our simulators serve, and how to map another one, is documented in
docs/equipment.md ("OPC UA").
"""

from drivers.opcua.driver import OpcUaDriver
from drivers.opcua.pool import OpcUaSessionPool
from drivers.opcua.session import EndpointSession

__all__ = ["EndpointSession", "OpcUaDriver", "OpcUaSessionPool"]
