"""asyncua's publish loop logs two things that happen in normal operation: a publish request
failed by a dropped connection, and a new subscription's first keep-alive that overtakes the
answer creating it. The session drops those records and keeps every other one."""

from __future__ import annotations

import logging

import pytest

from drivers.config import ConnectionPolicy
from drivers.opcua.session import EndpointSession

LOGGER = "asyncua.client.ua_session.UaSession"


def _record(
    level: int, msg: str, *args: object, cause: BaseException | None = None
) -> logging.LogRecord:
    exc_info = (type(cause), cause, None) if cause is not None else None
    return logging.getLogger(LOGGER).makeRecord(LOGGER, level, __file__, 1, msg, args, exc_info)


@pytest.mark.parametrize(
    ("record", "kept"),
    [
        (
            _record(
                logging.WARNING,
                "Received data for unknown subscription %s active are %s",
                81,
                {78: 1},
            ),
            False,
        ),
        (
            _record(
                logging.ERROR,
                "Publish iteration crashed; retrying in 1s",
                cause=ConnectionResetError(),
            ),
            False,
        ),
        (
            _record(
                logging.ERROR, "Publish iteration crashed; retrying in 1s", cause=ValueError("bad")
            ),
            True,
        ),
        (_record(logging.WARNING, "Exception while calling user callback"), True),
    ],
    ids=[
        "unknown subscription",
        "publish lost with the connection",
        "other publish failure",
        "other warning",
    ],
)
def test_a_session_drops_only_the_publish_loops_expected_records(
    record: logging.LogRecord, kept: bool
) -> None:
    EndpointSession("opc.tcp://127.0.0.1:4840", ConnectionPolicy())  # installs the filter
    assert logging.getLogger(LOGGER).filter(record) is kept
