"""``pkgline`` as the tests run it: its command line parsed and run by the CLI's own entry
point, in the test's process, with its environment, standard streams and exit code as a
child process would have them; or as a child process where the process itself is what a
test is about.

Most of a short command's cost in a child process is starting Python and importing pkgline
and SQLAlchemy again (a profile of the suite found seven tenths of the CLI children's CPU
in imports, a quarter of the whole suite's). In this process the imports are paid once per
test worker, and the command runs the same code from the same ``main``: the parsing, the
service, the database, what it prints and the exit code.

A child process is still used for:

- the long-running commands and those that prompt (:data:`CHILD_COMMANDS`): servers, the
  simulators, the demo, the feed's tail, ``login``, whose signals, ports and terminals are
  the process's own;
- a call given standard input (a password, a map from ``-``): what reads it is the
  process's stdin;
- every call when ``PKGLINE_TEST_CLI=process`` is set, to check that both ways agree.

Tests of the entry point itself (``python -m pkgline``, exit codes of a real process, a
broken pipe) call :func:`child` directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO, cast

CHILD_COMMANDS = frozenset({"api", "demo", "events", "login", "logout", "serve", "sim"})
"""Commands that always run as a child process: servers and long-running commands (their
signal handlers, sockets and lifetime are the process's), and those that talk to a
terminal or keep a session for the next process."""

IN_PROCESS = os.environ.get("PKGLINE_TEST_CLI", "") != "process"

Ran = subprocess.CompletedProcess[str]

_one_at_a_time = threading.Lock()
"""The environment and the standard streams are the process's: one command at a time."""


def pkgline(
    *args: str,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60,
) -> Ran:
    """``pkgline ARGS`` with ``env`` as its whole environment (this process's if None) and
    ``input`` on its standard input: what it printed on stdout and stderr, and its exit
    code (a :class:`subprocess.CompletedProcess`)."""
    if IN_PROCESS and input is None and not (args and args[0] in CHILD_COMMANDS):
        if _loop_running():  # a coroutine that waits, as it waited on subprocess.run
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
                return thread.submit(in_process, args, env).result()
        return in_process(args, env)
    return child(args, env=env, input=input, timeout=timeout)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def pkgline_async(
    *args: str, env: Mapping[str, str] | None = None, input: str | None = None
) -> Ran:
    """:func:`pkgline` from a coroutine: on a thread of its own, so that what the test runs
    in its event loop (a server the command talks to) goes on meanwhile."""
    return await asyncio.to_thread(pkgline, *args, env=env, input=input)


def child(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60,
) -> Ran:
    """``python -m pkgline ARGS`` as a child process."""
    return subprocess.run(
        [sys.executable, "-m", "pkgline", *args],
        env=None if env is None else dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def in_process(args: Sequence[str], env: Mapping[str, str] | None = None) -> Ran:
    """``pkgline ARGS`` run by the CLI's entry point in this process: ``sys.argv``, the
    environment and the three standard streams are the command's while it runs (stdin
    empty, stdout and stderr captured as a pipe would take them: not a terminal), its
    ``sys.exit`` is its exit code, and an exception it lets out is a traceback on stderr and
    exit code 1, as Python does."""
    from pkgline.cli import app, common

    with _one_at_a_time:
        stdout, stderr = _Captured(), _Captured()
        with _environment(env), _streams(stdout, stderr), _argv(args):
            # the consoles are made on first use, for the streams and $COLUMNS of the call
            common.out._console = None  # type: ignore[attr-defined]
            common.err._console = None  # type: ignore[attr-defined]
            try:
                code = _exit_code(app.main)
            finally:
                common.out._console = None  # type: ignore[attr-defined]
                common.err._console = None  # type: ignore[attr-defined]
        return subprocess.CompletedProcess(
            [sys.executable, "-m", "pkgline", *args], code, stdout.text(), stderr.text()
        )


def _exit_code(main: Callable[[], object]) -> int:
    try:
        main()
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except Exception:  # what Python prints of an uncaught exception, and its exit code
        traceback.print_exc()
        return 1
    return 0


class _Captured:
    """A standard stream as a pipe takes it: UTF-8 bytes (``.buffer`` too), read back as
    ``subprocess.run(text=True)`` reads them (universal newlines)."""

    def __init__(self) -> None:
        self.raw = io.BytesIO()
        self.stream = io.TextIOWrapper(self.raw, encoding="utf-8", write_through=True)

    def text(self) -> str:
        self.stream.flush()
        return self.raw.getvalue().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    """``env`` as the whole environment while the command runs ($TZ read again, as a new
    process reads it when it starts)."""
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    zone = saved.get("TZ") != env.get("TZ")
    if zone:
        time.tzset()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if zone:
            time.tzset()


class _Routed:
    """A standard stream that is the command's on the command's thread and the one it
    replaced on every other: a line controller or a server the test runs in this process
    writes its log where it did, not into what the command printed."""

    def __init__(self, thread: int, command: TextIO, others: TextIO) -> None:
        self._thread, self._command, self._others = thread, command, others

    def _target(self) -> TextIO:
        return self._command if threading.get_ident() == self._thread else self._others

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._target())


@contextlib.contextmanager
def _streams(stdout: _Captured, stderr: _Captured) -> Iterator[None]:
    saved = sys.stdin, sys.stdout, sys.stderr
    thread = threading.get_ident()
    empty = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    sys.stdin = cast(TextIO, _Routed(thread, empty, saved[0]))
    sys.stdout = cast(TextIO, _Routed(thread, stdout.stream, saved[1]))
    sys.stderr = cast(TextIO, _Routed(thread, stderr.stream, saved[2]))
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _argv(args: Sequence[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = ["pkgline", *args]
    try:
        yield
    finally:
        sys.argv = saved
