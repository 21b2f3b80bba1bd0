"""How many Redis round trips a webhook costs, counted at the connection on the real server."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
import redis

from authgw.app import create_app
from tests.helpers.api import Api, new_challenge, register
from tests.helpers.calls import (
    LINE_1,
    PHONE,
    Phone,
    approve,
    status_of,
)
from tests.helpers.phone import gather_of, twiml
from tests.helpers.settings import settings_for_tests
from tests.helpers.stores import CountingConnection


@pytest.mark.real_redis
@pytest.mark.parametrize(("mode", "expected"), [("reject", 3), ("confirm", 4), ("code", 4)])
@pytest.mark.parametrize("caller_limit", [0, 5])
def test_a_webhook_costs_a_few_round_trips(redis_server, real_store, clock, mode, expected, caller_limit):
    # A matched call: the phone index (with the caller's counter when that limit is on); the
    # call record, with the first candidate's holder of the dialled number; the judgement; and
    # in confirm and code modes, binding the call to its challenge for the keys webhook.
    pool = redis.ConnectionPool.from_url(
        redis_server.url, decode_responses=True, connection_class=CountingConnection
    )
    client = redis.Redis(connection_pool=pool)
    app = create_app(
        {
            **settings_for_tests(callback_mode=mode, rate_limit_caller=caller_limit),
            "redis_client": client,
            "clock": clock,
        }
    )
    api, phone = Api(app.test_client()), Phone(app.test_client())
    register(api)
    # Each script is loaded (SCRIPT LOAD) before its first use: one of each first.
    twiml(phone.call("anonymous", LINE_1))
    assert phone.status(phone.sids[-1]).status_code == 204
    approve(phone, mode, new_challenge(api))
    challenge = new_challenge(api)

    def cost(action: Callable[[], Any]) -> int:
        before = CountingConnection.sent
        action()
        return CountingConnection.sent - before

    assert cost(lambda: twiml(phone.call("anonymous", LINE_1))) == 2
    assert cost(lambda: twiml(phone.call("+819087654321", LINE_1))) == 3
    assert cost(lambda: phone.status(phone.sids[-1])) == 2
    root: list[ET.Element] = []
    line = challenge["callback"]["number"]  # 0001 stays bound to the first challenge
    assert cost(lambda: root.append(twiml(phone.call(PHONE, line)))) == expected
    if mode != "reject":
        keys = "1" if mode == "confirm" else challenge["callback"]["code"]
        assert cost(lambda: twiml(phone.press(gather_of(root[0]), keys))) == 2
    assert status_of(api, challenge)["status"] == "verified"
    client.close()
