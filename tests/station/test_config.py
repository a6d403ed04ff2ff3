"""``[api.http]``: plain HTTP for a browser on the same host, on a loopback address only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pkgline.config import ApiConfig, LoopbackHttpConfig


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1"])
def test_plain_http_listens_on_loopback(host: str) -> None:
    assert ApiConfig.model_validate({"http": {"host": host, "port": 8080}}).http == (
        LoopbackHttpConfig(host=host, port=8080)
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.4.21", "::", "line1.plant.example", ""])
def test_plain_http_on_any_other_address_is_refused_saying_what_is_expected(host: str) -> None:
    with pytest.raises(ValidationError, match="loopback address only"):
        LoopbackHttpConfig(host=host)
