"""Strip and panel maps in and out of the lot tracker: SEMI E142 substrate maps.

``e142`` is the pure codec (XML text <-> maps, and what an imported map rejects); ``service``
exports a lot's maps and imports one through the lot service. The schema the codec writes
is ``e142.xsd`` beside it (docs/e142.md).
"""
