"""Equipment drivers: one async interface (:class:`drivers.interface.ToolDriver`) to every tool
of the line, over Modbus TCP (pymodbus) or OPC UA (asyncua).

Drivers know nothing of lots or flows: they speak in equipment words (recipes, jobs, site
maps, results, alarms). The equipment model is :mod:`drivers.model`; the vocabulary of each
equipment class is ``classes.yaml``; errors are :mod:`drivers.errors`.
"""
