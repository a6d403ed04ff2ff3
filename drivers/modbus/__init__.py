"""Modbus TCP transport: a tool seen through holding and input registers.

Layers, each testable alone (docs/equipment.md, "Modbus TCP"):

- :mod:`drivers.modbus.codec`: pure encoding of values into registers and back (no I/O);
- :mod:`drivers.modbus.regmap`: the register map, every block as a codec;
  :mod:`drivers.modbus.mapfile`: its files (``drivers/maps/modbus/*.yaml``), read, merged
  and checked against the class catalogue;
- :mod:`drivers.modbus.session`: the one pymodbus connection to a tool, with every transport
  failure translated once into :mod:`drivers.errors`;
- :mod:`drivers.modbus.driver`: :class:`~drivers.modbus.driver.ModbusDriver`, the
  :class:`~drivers.interface.ToolDriver` in equipment words.

This package imports nothing at package level, so that simulators can use the codec and the
map loader without pulling in the driver.
"""
