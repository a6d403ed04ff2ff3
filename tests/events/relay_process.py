"""Event relays in processes of their own, for tests that kill them (SIGKILL) and start them
again: ``python -m tests.events.relay_process DATABASE_URL SETTINGS_JSON CONTROLLER LOG``.

The process imports the relay once, then forks one relay process per ``start`` line on its
stdin (answering the child's pid), so that twenty restarts do not cost twenty imports of
pkgline; ``wait PID`` answers the child's exit status (negative: the signal that ended it).
Each child publishes the database's outbox as ``pkgline serve`` does (the same
:class:`Relay`), logs JSON lines to LOG (``event feed connected`` once its session is up) and
stops cleanly on SIGTERM (what it published is marked, then its goodbye). Nothing of the
parent is shared but the imported code: a child opens its own database engine and MQTT
connection, after the fork."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxStore
from pkgline.events.config import EventsConfig
from pkgline.events.relay import Relay
from pkgline.logs import configure_logging


async def relay(url: str, settings: str, controller: str, log: str) -> None:
    with Path(log).open("a", encoding="utf-8") as stream:  # noqa: ASYNC230 - before any work
        configure_logging("info", json=True, stream=stream)
        engine = create_engine(url)
        config = EventsConfig.model_validate_json(settings)
        relay = Relay(config, OutboxStore(engine), controller=controller)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, relay.request_stop)
        try:
            await relay.run()
        finally:
            await engine.dispose()


def serve(url: str, settings: str, controller: str, log: str) -> None:
    for line in sys.stdin:
        command = line.split()
        if command == ["start"]:
            pid = os.fork()
            if pid == 0:  # the relay
                code = 1
                try:
                    asyncio.run(relay(url, settings, controller, log))
                    code = 0
                finally:
                    os._exit(code)
            print(pid, flush=True)
        elif len(command) == 2 and command[0] == "wait":
            _, status = os.waitpid(int(command[1]), 0)
            print(os.waitstatus_to_exitcode(status), flush=True)
        else:
            print(f"expected 'start' or 'wait PID', got {line.strip()!r}", flush=True)


if __name__ == "__main__":
    serve(*sys.argv[1:5])
