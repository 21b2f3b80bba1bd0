"""Fixtures for the phone callback tests: each runs in every callback mode unless it names one.

The ``store`` fixture runs each test on fakeredis, a real redis-server and a Redis Cluster.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.calls import MODES, Phone
from tests.helpers.settings import settings_for_tests


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The suite's settings, in the callback mode the test is parametrised with."""
    settings = settings_for_tests()
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and "mode" in callspec.params:
        settings["callback_mode"] = callspec.params["mode"]
    return settings


@pytest.fixture
def phone(app: Any) -> Phone:
    return Phone(app.test_client())
