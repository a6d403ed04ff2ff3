"""Checked data files: YAML read with line numbers, validated by a pydantic model.

Flows, register maps, node maps and the equipment class catalogue are all data. A mistake in
one of them must be reported as ``path:line: what is wrong, what was expected``, so that an
engineer editing the file can fix it without reading our code. This is a leaf module: it
imports nothing from the project.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    # imported where a file is read: flows.errors imports this module for DataFileError, and
    # a process with its flows from pkgline.flowcache reads no YAML at all
    import yaml
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")


class DataFileError(Exception):
    """A data file cannot be read or is invalid. ``str()`` is ``path:line: message``."""

    def __init__(self, path: Path | str, line: int | None, message: str):
        self.path = Path(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.message}"


class YamlDocument:
    """A parsed YAML document that remembers where every value came from."""

    def __init__(self, path: Path, node: yaml.Node | None, data: Any):
        self.path = path
        self.node = node
        self.data = data

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The 1-based line of the value at ``loc`` (keys and indexes), or of its nearest
        existing parent when the value itself is missing."""
        import yaml

        node = self.node
        if node is None:
            return None
        line: int = node.start_mark.line + 1
        for key in loc:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if str(key_node.value) == str(key):
                        child = value_node
                        break
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(key, int)
                and 0 <= key < len(node.value)
            ):
                child = node.value[key]
            if child is None:
                return line
            node = child
            line = node.start_mark.line + 1
        return line

    def error(self, loc: Sequence[str | int], message: str) -> DataFileError:
        return DataFileError(self.path, self.line_of(loc), message)


MAX_NODES = 100_000
"""The most values a data file may hold, an alias (``*name``) counted as the values it
repeats. The project's largest data file has under 1,000; a flow version's request body
(256 KB) written out without aliases, under 70,000. A few lines of anchors whose aliases
repeat each other (``&b [*a, *a, ...]``, nested) stand for a billion values: walking them
held the server's event loop for minutes (a publish of a flow version)."""


def _check_nodes(path: Path, root: yaml.Node) -> None:
    """Refuse two equal keys in a mapping (PyYAML keeps the last without a word: in a recipe
    or a map that hides a typo), and a document of more than :data:`MAX_NODES` values, its
    aliases expanded (walked once here, in document order, stopping at the limit: what reads
    the document after would walk them all)."""
    import yaml

    pending: list[yaml.Node] = [root]
    walked = 0
    while pending:
        node = pending.pop()
        walked += 1
        if walked > MAX_NODES:
            raise DataFileError(
                path,
                node.start_mark.line + 1,
                f"more than {MAX_NODES:,} values, counting each alias (*name) as the values "
                "it repeats: write the values out, or repeat fewer of them",
            )
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DataFileError(
                        path, line, f"duplicate key {key!r} (first at line {seen[key]})"
                    )
                seen[key] = line
                children.append(value_node)
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        pending.extend(reversed(children))


def read_yaml(path: Path | str, text: str | None = None) -> YamlDocument:
    """Parse a YAML file (or ``text`` reported as coming from ``path``)."""
    import yaml

    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DataFileError(path, None, f"cannot read: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise DataFileError(path, None, f"not UTF-8 text (byte {exc.start})") from None
    try:
        node, data = _compose(path, text)
    except RecursionError:
        # PyYAML composes and constructs a document recursively: brackets nested some
        # hundreds deep exhausted the stack (the server answered 500, a traceback logged)
        raise DataFileError(
            path, None, "not valid YAML: nested too deeply (lists or mappings in each other)"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise DataFileError(path, line, f"not valid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise DataFileError(path, None, f"not valid YAML: {exc}") from exc
    return YamlDocument(path, node, data)


@cache
def _fast_loader() -> Any:
    """libyaml's parser: the same nodes, with the same marks (lines), as PyYAML's own, about
    ten times faster (every CLI command reads the flows); None without libyaml. A text it
    refuses is parsed again by PyYAML's, so that the error reads as it always did."""
    import yaml

    return getattr(yaml, "CSafeLoader", None)


def _compose(path: Path, text: str) -> tuple[yaml.Node | None, Any]:
    import yaml

    fast = _fast_loader()
    if fast is not None:
        try:
            return _compose_with(fast, path, text)
        except yaml.YAMLError:
            pass
    return _compose_with(yaml.SafeLoader, path, text)


def _compose_with(loader_class: Any, path: Path, text: str) -> tuple[yaml.Node | None, Any]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_nodes(path, node)
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    return node, data


def _describe(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


_UNION_TAGS = {"int": "a whole number", "float": "a number", "str": "text", "bool": "true or false"}
"""The member of a union that pydantic names at the end of an error's place (``max_minutes.int``,
``max_minutes.float``): one mistake, said once, with every kind of value it may be."""


def _fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str] | None:
    """The field names (as written in the file: aliases) of the model at ``loc`` inside
    ``model``, None where the place is not a model (or not found)."""
    import typing

    from pydantic import BaseModel, RootModel

    def unwrap(tp: Any) -> Any:
        while True:
            origin = typing.get_origin(tp)
            if origin is typing.Annotated:
                tp = typing.get_args(tp)[0]
                continue
            if origin in (typing.Union, UnionType):
                members = [a for a in typing.get_args(tp) if a is not type(None)]
                if len(members) != 1:
                    return tp
                tp = members[0]
                continue
            if isinstance(tp, type) and issubclass(tp, RootModel):
                tp = tp.model_fields["root"].annotation
                continue
            return tp

    def names(m: type[BaseModel]) -> dict[str, Any]:
        return {(f.alias or n): f.annotation for n, f in m.model_fields.items()}

    tp: Any = model
    for part in loc:
        tp = unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            tp = names(tp).get(str(part))
            if tp is None:
                return None
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) in (list, tuple):
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(names(tp))
    return None


def explained(
    model: type[BaseModel], errors: list[Any], *, quote: bool = True
) -> list[tuple[list[str | int], str]]:
    """Each mistake once, in the file's words: an unknown field with the fields expected there
    (and the nearest, for a typo), a missing one by name, a value of the wrong kind with the
    kinds it may be (pydantic says it once per member of the union). ``quote``: say the value
    refused (False where a value may be a secret: a configuration's password)."""
    import difflib

    out: list[tuple[list[str | int], str]] = []
    kinds: dict[tuple[str | int, ...], list[str]] = {}
    # an unknown field first: beside the field it misspells (missing, then), it is the
    # mistake, and its line is the one to edit
    for e in sorted(errors, key=lambda e: e["type"] != "extra_forbidden"):
        loc = list(e["loc"])
        if loc and loc[-1] in _UNION_TAGS and e["type"].endswith(("_type", "_parsing")):
            place = tuple(loc[:-1])
            if place not in kinds:
                kinds[place] = []
                got = e.get("input")
                given = f"not {got!r}" if quote and got is not None else ""
                out.append((list(place), given))
            kinds[place].append(_UNION_TAGS[str(loc[-1])])
            continue
        if e["type"] == "extra_forbidden" and loc:
            name = str(loc[-1])
            fields = _fields_at(model, loc[:-1])
            text = f"unknown field {name!r}"
            if fields:
                close = difflib.get_close_matches(name, fields, n=1)
                if close:
                    text += f" (did you mean {close[0]}?)"
                text += f"; expected one of {', '.join(fields)}"
            out.append((loc, text))
        elif e["type"] == "missing" and loc:
            out.append((loc, f"the field {loc[-1]} is missing; it is required here"))
        elif e["type"] == "value_error":
            out.append((loc, str(e["msg"]).removeprefix("Value error, ")))
        else:
            got = e.get("input")
            scalar = quote and isinstance(got, bool | int | float | str)
            out.append((loc, str(e["msg"]) + (f", not {got!r}" if scalar else "")))
    said = []
    for loc, text in out:
        may_be = kinds.get(tuple(loc))
        if may_be is not None:
            if "a number" in may_be:  # an int or a float: any number
                may_be = [k for k in may_be if k != "a whole number"]
            expected = " or ".join(dict.fromkeys(may_be))
            text = f"expected {expected}, {text}" if text else f"expected {expected}"
        said.append((loc, text))
    return said


def validate(doc: YamlDocument, model: type[M], *, context: dict[str, Any] | None = None) -> M:
    """Validate a parsed document against ``model``; errors name the file and line."""
    from pydantic import ValidationError

    try:
        return model.model_validate(doc.data, context=context)
    except ValidationError as exc:
        errors = explained(model, exc.errors(include_url=False))
        loc = errors[0][0]
        parts = [f"{_describe(loc)}: {errors[0][1]}"]
        if len(errors) > 1:
            more = "; ".join(
                f"line {doc.line_of(where)} {_describe(where)}: {text}"
                for where, text in errors[1:6]
            )
            parts.append(f"(and {len(errors) - 1} more: {more})")
        raise doc.error(loc, " ".join(parts)) from exc


def load_model(path: Path | str, model: type[M], *, context: dict[str, Any] | None = None) -> M:
    """Read and validate a YAML data file in one call."""
    return validate(read_yaml(path), model, context=context)
