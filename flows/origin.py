"""Where a defs value was written (file and key path), and reading the defs files, so that
every problem can be reported as ``path:line: message``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flows.errors import FlowError
from pkgline.datafiles import DataFileError, YamlDocument, read_yaml, validate


@dataclass(frozen=True)
class Origin:
    """Where something was written: a document and the key path inside it."""

    doc: YamlDocument
    loc: tuple[str | int, ...]

    def child(self, *keys: str | int) -> Origin:
        return Origin(self.doc, self.loc + keys)

    def line(self) -> int | None:
        """The line of the last key of ``loc`` (of the nearest one present): for a key whose
        value is a block below it, the key's own line is where an engineer looks."""
        node = self.doc.node
        if node is None:
            return None
        line: int = node.start_mark.line + 1
        for key in self.loc:
            if isinstance(node, yaml.MappingNode):
                pair = next(((k, v) for k, v in node.value if str(k.value) == str(key)), None)
                if pair is None:
                    return line
                line = pair[0].start_mark.line + 1
                node = pair[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                if not 0 <= key < len(node.value):
                    return line
                node = node.value[key]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def error(self, message: str) -> FlowError:
        return FlowError(self.doc.path, self.line(), message)

    def node(self) -> yaml.Node | None:
        node = self.doc.node
        for key in self.loc:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if str(k.value) == str(key)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                node = node.value[key] if 0 <= key < len(node.value) else None
            else:
                return None
        return node

    def sequence_error(self, text: str, column: int, message: str) -> FlowError:
        """An error at ``column`` (1-based) of the sequence text written here."""
        line = self.line()
        offset = column - 1
        line_start = text.rfind("\n", 0, offset) + 1
        node = self.node()
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            # A block scalar keeps its lines; its text starts on the line after the indicator.
            line = node.start_mark.line + 2 + text.count("\n", 0, offset)
        else:
            line_start = 0
        return FlowError(
            self.doc.path, line, f"sequence, column {offset - line_start + 1}: {message}"
        )


def validated(doc: YamlDocument, model: type[Any]) -> Any:
    try:
        return validate(doc, model)
    except DataFileError as exc:
        raise FlowError(exc.path, exc.line, exc.message) from exc


def read_doc(path: Path, text: str | None = None) -> YamlDocument:
    """The YAML document at ``path``, or ``text`` given for it (a published flow version)."""
    try:
        doc = read_yaml(path, text)
    except DataFileError as exc:
        raise FlowError(exc.path, exc.line, exc.message) from exc
    if doc.data is None:
        raise FlowError(path, None, "the file is empty")
    return doc
