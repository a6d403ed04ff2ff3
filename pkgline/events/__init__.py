"""The event feed: every outbox event, every tool state and the line's status, published to
an MQTT broker for the plant's systems (docs/events.md).

- ``config``    the ``[events]`` table of ``line.toml``
- ``topics``    the ISA-95 topic names
- ``payloads``  what each message says (pure; one JSON Schema per kind in ``schemas/``)
- ``publisher`` the ``Publisher`` Protocol and its MQTT implementation
- ``relay``     outbox -> broker, in order, marked published after the broker's PUBACK
"""
