"""A client spends only its own per-customer budget.

The per-customer counter is kept per API client and customer: a call is attributed to a
customer before the store has said whether the challenge it names is the caller's, so one
shared counter would let any client use up another's budget for that customer, for instance
with made-up challenge ids carrying the customer's hash tag.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from authgw.keys import customer_tag
from tests.helpers.api import assert_problem, new_challenge, register

LIMIT = 4


@pytest.fixture
def settings(settings: dict[str, Any]) -> dict[str, Any]:
    # The client limit stays high: only the per-customer limit is under test.
    return {**settings, "rate_limit_client": 1000, "rate_limit_customer": LIMIT}


def fake_id(customer_id: str) -> str:
    """A well-formed challenge id with the customer's hash tag that names no challenge."""
    random_part = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(26))
    return f"ch_{customer_tag(customer_id)}{random_part}"


def test_fake_ids_with_a_customers_tag_do_not_spend_another_clients_budget(api, other_api):
    register(api, "cust-x")  # 1 of A's budget for cust-x
    # Client B floods made-up ids of cust-x's slot: 404, then 429 once B's budget is spent.
    answers = [other_api.get(f"/v1/challenges/{fake_id('cust-x')}") for _ in range(3 * LIMIT)]
    assert answers[0].status_code == 404
    for rv in answers[LIMIT:]:
        assert_problem(rv, 429, "rate_limited")
    bodies = {"cancel": None, "totp": {"code": "123456"}, "consume": {"transaction_digest": "0" * 64}}
    for path, body in bodies.items():
        assert_problem(
            other_api.post(f"/v1/challenges/{fake_id('cust-x')}/{path}", body), 429, "rate_limited"
        )
    # Client A's requests for cust-x are still served.
    challenge = new_challenge(api, "cust-x")  # 2
    assert api.get(f"/v1/challenges/{challenge['id']}").status_code == 200  # 3
    assert api.get("/v1/customers/cust-x").status_code == 200  # 4
    # A's own budget for cust-x is its own limit, as before.
    assert_problem(api.get("/v1/customers/cust-x"), 429, "rate_limited")


def test_another_clients_calls_on_the_customer_itself_do_not_spend_it_either(api, other_api):
    register(api, "cust-x")  # 1
    for _ in range(LIMIT):
        assert other_api.get("/v1/customers/cust-x").status_code == 200
    assert_problem(other_api.get("/v1/customers/cust-x"), 429, "rate_limited")
    assert api.get("/v1/customers/cust-x").status_code == 200  # 2
    assert new_challenge(api, "cust-x")["status"] == "pending"  # 3


def test_one_clients_budget_for_a_customer_still_binds_it_on_every_route(api, other_api):
    register(api, "cust-x")  # 1
    challenge = new_challenge(api, "cust-x")  # 2
    assert api.get(f"/v1/challenges/{fake_id('cust-x')}").status_code == 404  # 3 (its own budget)
    assert api.get("/v1/customers/cust-x").status_code == 200  # 4
    assert_problem(api.get(f"/v1/challenges/{challenge['id']}"), 429, "rate_limited")
    assert_problem(api.post("/v1/challenges", {"customer_id": "cust-x"}), 429, "rate_limited")
    # Other customers are not held back.
    register(api, "cust-y")
