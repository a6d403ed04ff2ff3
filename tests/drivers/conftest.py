"""Fixtures shared by the driver tests of both transports."""

from __future__ import annotations

import pytest

from drivers.model import EquipmentClass


@pytest.fixture(params=list(EquipmentClass), ids=lambda c: c.value)
def equipment_class(request: pytest.FixtureRequest) -> EquipmentClass:
    cls: EquipmentClass = request.param
    return cls
