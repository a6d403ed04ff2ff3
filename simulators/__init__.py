"""Software tools that speak the line's protocols, so the whole line runs with no hardware.

:mod:`simulators.engine` plays the equipment model; transport servers expose it over
Modbus TCP or OPC UA.
"""
