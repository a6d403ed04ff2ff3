"""Tests of the Modbus TCP transport: codec, register maps, session, driver."""
