"""SQL expressions of the store that each dialect writes its own way: a lot's running tool
and step, as the lots' expression indexes hold them (revision 0019), a filter that few
rows meet (:func:`rare`), hinted to SQLite's planner, and a list's bounded count
(:func:`capped_count`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, String, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

from mes.domain.paging import COUNTED_UP_TO


class LotTool(FunctionElement[str]):
    """The tool a lot runs on (``Lot.running.tool``), NULL for a lot not running."""

    type = String()
    inherit_cache = True


class LotStep(FunctionElement[str]):
    """``Lot.step``: the running step, else the last step of the path."""

    type = String()
    inherit_cache = True


# Written with literal keys, never bound ones: an index on an expression serves only a query
# that has the same expression (SQLite compares them term by term and allows no parameter in
# an index; PostgreSQL matches a parameter only in a plan made for its value).
@compiles(LotTool, "postgresql")
def _lot_tool_postgresql(element: LotTool, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} ->> 'tool')"


@compiles(LotTool, "sqlite")
def _lot_tool_sqlite(element: LotTool, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_extract({compiler.process(element.clauses, **kw)}, '$.tool')"


@compiles(LotStep, "postgresql")
def _lot_step_postgresql(element: LotStep, compiler: SQLCompiler, **kw: Any) -> str:
    running, path = (compiler.process(c, **kw) for c in element.clauses)
    return f"coalesce({running} ->> 'step', {path} ->> -1)"


@compiles(LotStep, "sqlite")
def _lot_step_sqlite(element: LotStep, compiler: SQLCompiler, **kw: Any) -> str:
    running, path = (compiler.process(c, **kw) for c in element.clauses)
    return f"coalesce(json_extract({running}, '$.step'), json_extract({path}, '$[#-1]'))"


class _Hinted(FunctionElement[Any]):
    """A condition with how often it holds said to SQLite's planner (:func:`rare`,
    :func:`common`). Untyped: a Boolean one would be compared with 1 on SQLite
    (``unlikely(...) = 1``), which no index serves."""

    type = NullType()
    inherit_cache = True
    likelihood = 0.5


class _Rare(_Hinted):
    inherit_cache = True
    likelihood = 0.001


class _Common(_Hinted):
    inherit_cache = True
    likelihood = 0.9375  # SQLite's likely()


@compiles(_Hinted)
def _hinted(element: _Hinted, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)})"


@compiles(_Hinted, "sqlite")
def _hinted_sqlite(element: _Hinted, compiler: SQLCompiler, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.clauses, **kw)}, {element.likelihood})"


def rare(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """``condition``, which few rows meet, said so to SQLite's planner (``likelihood(X,
    0.001)``, a hint it removes before it runs the query; PostgreSQL gets the condition as
    it is). ``unlikely()`` (0.0625) is not enough: without statistics it made the planner
    scan the lots along the priority index where it searched the state index unhinted.

    After ``ANALYZE`` (the seeding runs it; ``PRAGMA optimize`` may), SQLite's planner knows
    only the average rows per value of an index (``sqlite_stat1``; the histograms of
    ``STAT4`` are not compiled into Python's SQLite). A plant's lots are nearly all finished
    and nearly none has a parent, so a filter on the states in progress, or on a parent, looks
    to it as if it kept a fifth or all of the lots: it scanned every lot along the order
    index instead (dispatch's read took 131 ms at 100,000 lots against 0.8 ms at 1,000).
    PostgreSQL keeps the most common values and their frequencies, and plans these well."""
    return _Rare(condition)


def common(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """``condition``, which many rows meet, said so to SQLite's planner (``likelihood(X,
    0.9375)``, SQLite's ``likely``: :func:`rare`'s opposite), so that it searches along the
    index of a rarer condition beside it rather than this one's: a flow's lots in progress
    are found among the lots in progress, not among every lot the flow ever had. PostgreSQL
    gets the condition as it is."""
    return _Common(condition)


def capped_count(table: FromClause, *where: Any) -> Select[Any]:
    """The count of ``table``'s rows that meet ``where``, reading at most
    ``COUNTED_UP_TO + 1`` of them (:func:`mes.domain.paging.bounded_total` reads it): the
    rows are found as the page's are, along the filters' index, and the count stops there
    instead of visiting every match."""
    matching = select(literal(1)).select_from(table).where(*where).limit(COUNTED_UP_TO + 1)
    return select(func.count()).select_from(matching.subquery("matching"))
