"""The notation of flows.md: the parser's tree and errors, and the automaton compiled from it."""

from __future__ import annotations

import pytest

from flows.automaton import compile_expression
from flows.grammar import Alt, Count, Expr, Name, Opt, Repeat, Seq, SequenceError, Step, parse


def _codes(text: str) -> Expr:
    """Parse, then turn every name into a step (what the loader does for step codes)."""

    def resolve(e: Expr) -> Expr:
        if isinstance(e, Name):
            return Step(e.name)
        if isinstance(e, Seq):
            return Seq(tuple(resolve(i) for i in e.items))
        if isinstance(e, Alt):
            return Alt(tuple(resolve(o) for o in e.options))
        if isinstance(e, Opt):
            return Opt(resolve(e.body))
        assert isinstance(e, Repeat)
        return Repeat(resolve(e.body), e.count)

    return resolve(parse(text))


def test_a_sequence_of_names_keeps_their_columns() -> None:
    tree = parse("A  BB C")
    assert tree == Seq((Name("A"), Name("BB"), Name("C")))
    assert isinstance(tree, Seq)
    assert [n.column for n in tree.items if isinstance(n, Name)] == [1, 4, 7]


def test_optional_alternatives_and_repeats_parse_into_their_nodes() -> None:
    tree = parse("A [B] (C D | E) { F } x 3")
    assert tree == Seq(
        (
            Name("A"),
            Opt(Name("B")),
            Alt((Seq((Name("C"), Name("D"))), Name("E"))),
            Repeat(Name("F"), Count(None, 3)),
        )
    )


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("{ A } x layers", Count("layers", 0)),
        ("{ A } x (layers - 1)", Count("layers", 1)),
        ("{ A } x layers-2", Count("layers", 2)),
        ("{ A } x (4)", Count(None, 4)),
    ],
)
def test_a_repeat_count_is_a_number_or_a_lot_parameter_minus_a_number(
    text: str, count: Count
) -> None:
    tree = parse(text)
    assert isinstance(tree, Repeat)
    assert tree.count == count


def test_a_count_evaluates_against_the_lot_parameters_and_prints_as_written() -> None:
    assert Count("layers", 1).evaluate({"layers": 3}) == 2
    assert Count(None, 4).evaluate({}) == 4
    assert [str(Count("layers", 1)), str(Count("layers", 0)), str(Count(None, 2))] == [
        "(layers - 1)",
        "layers",
        "2",
    ]


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("", 1, "the sequence is empty"),
        ("A # B", 3, "unexpected character '#'"),
        ("A ( ) B", 5, "expected a step code, a fragment, '[', '(' or '{', found ')'"),
        ("A [B C", 7, "expected ']' to close the '[' at column 3, found the end of the text"),
        ("A (B | C]", 9, "expected ')' to close the '(' at column 3, found ']'"),
        ("{ A } y 3", 7, "expected 'x' and a repeat count after '}'"),
        ("{ A } x", 8, "expected a repeat count"),
        ("{ A } x (n - )", 14, "expected a whole number after '-', found ')'"),
        ("A B )", 5, "unexpected ')'"),
        ("A |", 4, "expected a step code"),
    ],
)
def test_bad_notation_is_reported_at_its_column(text: str, column: int, message: str) -> None:
    with pytest.raises(SequenceError) as caught:
        parse(text)
    assert caught.value.column == column
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"column {column}: ")


def test_alternatives_sharing_a_first_step_are_simulated_as_a_set_of_positions() -> None:
    automaton = compile_expression(_codes("(S [E] | E | L) P"), {})
    state = automaton.step(None, "E")
    assert len(state) == 1
    state = automaton.step(None, "S")
    assert automaton.allowed(state) == {"E", "P"}
    assert automaton.step(automaton.step(state, "E"), "E") == frozenset()


def test_an_all_optional_expression_accepts_the_empty_path() -> None:
    automaton = compile_expression(_codes("[A] [B]"), {})
    assert automaton.accepts_end(None)
    assert automaton.allowed(None) == {"A", "B"}


def test_a_repeat_of_zero_is_skipped_and_a_negative_one_is_refused() -> None:
    expr = _codes("A { B } x (n - 1) C")
    automaton = compile_expression(expr, {"n": 1})
    assert automaton.allowed(automaton.step(None, "A")) == {"C"}
    with pytest.raises(ValueError, match=r"repeat count \(n - 1\) is -1"):
        compile_expression(expr, {"n": 0})


def test_compiled_automata_are_cached_per_count() -> None:
    expr = _codes("{ A B } x n")
    first = compile_expression(expr, {"n": 3})
    assert compile_expression(expr, {"n": 3}) is first
    assert len(compile_expression(expr, {"n": 4}).symbols) == 8
