"""Tool metrics for SCADA as a Sparkplug B 3.0 edge node (docs/sparkplug.md).

    config.py    SparkplugConfig: the [sparkplug] table of line.toml, broker settings included
    codec.py     payloads (the specification's protobuf, sparkplug_b_pb2) and topics; no I/O
    metrics.py   each tool as a device: metric names, datatypes, aliases, values
    bdseq.py     the birth/death sequence number, kept in a file across restarts
    node.py      EdgeNode: the MQTT session (aiomqtt), births, data, deaths, STATE, rebirth

``sparkplug_b_pb2`` is generated from ``sparkplug_b.proto`` by ``generate.sh``; do not edit it.
"""
