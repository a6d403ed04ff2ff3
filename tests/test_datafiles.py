"""Checked data files (pkgline.datafiles): a document's size is bounded with its aliases
expanded, and nesting too deep for the parser is a data file error, not a crash."""

from __future__ import annotations

import pytest

from pkgline.datafiles import MAX_NODES, DataFileError, read_yaml


def _repeated(levels: int, width: int = 10) -> str:
    """Anchors whose aliases repeat the one before ``width`` times: ``width ** levels``
    values in a few lines."""
    lines = ['a0: &a0 ["x"]']
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def test_aliases_that_repeat_past_the_limit_are_refused() -> None:
    """Ten lines of anchors stand for a billion values (here seven, a million): walking them (the duplicate-key
    check, then validation) held the server's event loop for minutes when an engineer
    published a flow version. Such a document is refused once the walk passes the limit,
    naming the line where it did."""
    with pytest.raises(DataFileError, match=f"more than {MAX_NODES:,} values") as refused:
        read_yaml("bomb.yaml", _repeated(6))
    assert refused.value.line is not None and 1 <= refused.value.line <= 10


def test_aliases_within_the_limit_are_read() -> None:
    doc = read_yaml("shared.yaml", _repeated(3))
    assert len(doc.data["a3"]) == 10 and doc.data["a3"][0][0] == [["x"]] * 10


def test_merge_keys_that_repeat_past_the_limit_are_refused() -> None:
    lines = ["m0: &m0 {x: 1}"]
    for level in range(1, 7):
        merged = ", ".join([f"*m{level - 1}"] * 10)
        lines.append(f"m{level}: &m{level} {{<<: [{merged}], y{level}: 1}}")
    with pytest.raises(DataFileError, match="values, counting each alias"):
        read_yaml("merge.yaml", "\n".join(lines) + "\n")


def test_brackets_nested_too_deep_are_a_data_file_error() -> None:
    """Past libyaml's depth PyYAML's own parser took over and ran out of stack: a
    RecursionError, which the server answered with a 500 and a traceback of 175 KB."""
    text = "a: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(DataFileError, match="nested too deeply"):
        read_yaml("deep.yaml", text)


def test_a_duplicate_key_is_still_named_at_the_first_one_in_document_order() -> None:
    text = "a:\n  b: 1\n  b: 2\nc:\n  d: 1\n  d: 2\n"
    with pytest.raises(DataFileError, match="duplicate key 'b' \\(first at line 2\\)"):
        read_yaml("dup.yaml", text)
