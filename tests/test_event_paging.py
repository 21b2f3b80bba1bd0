"""Events: ids and paging (API.md Additions, "Events: ids, paging, long-poll")."""

from __future__ import annotations

import pytest

from authgw.identifiers import event_id
from tests.helpers.api import assert_problem, new_challenge, register


def trail_id(event: dict) -> str:
    """The trail entry id an event id ends with (``ev_<stem>_<ms>-<seq>``)."""
    return event["id"].rsplit("_", 1)[1]


def events(api, query: str = "") -> list[dict]:
    rv = api.get(f"/v1/customers/cust-001/events{query}")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return rv.get_json()["events"]


def make_trail(api, clock, challenges: int) -> None:
    register(api)
    for _ in range(challenges):
        cid = new_challenge(api, methods=["callback"], ttl_seconds=60)["id"]
        assert api.post(f"/v1/challenges/{cid}/cancel").status_code == 200
        clock.advance(61)  # its number is free again


def test_every_event_has_a_unique_id_that_stays_the_same(api, clock):
    make_trail(api, clock, 3)
    first = events(api, "?limit=100")
    again = events(api, "?limit=100")
    ids = [e["id"] for e in first]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == [e["id"] for e in again]
    # The same event read on its own page carries the same id.
    assert events(api, "?limit=1")[0] == first[0]


def test_pages_with_before_walk_the_whole_trail_newest_first(api, clock):
    make_trail(api, clock, 12)  # registration + 12 x (created, cancelled)
    whole = events(api, "?limit=100")
    assert len(whole) == 25
    walked: list[dict] = []
    query = "?limit=7"
    for _ in range(len(whole)):  # bounded: a before that is ignored would page forever
        page = events(api, query)
        if not page:
            break
        assert len(page) <= 7
        walked.extend(page)
        query = f"?limit=7&before={page[-1]['id']}"
    assert walked == whole


def test_before_the_oldest_event_is_an_empty_page(api, clock):
    make_trail(api, clock, 1)
    oldest = events(api, "?limit=100")[-1]
    assert events(api, f"?before={oldest['id']}") == []
    assert events(api, f"?before={event_id('cust-001', '0-0')}") == []


def test_before_an_id_not_in_the_trail_pages_from_where_it_would_be(api, clock):
    make_trail(api, clock, 2)
    whole = events(api, "?limit=100")
    ms, seq = trail_id(whole[1]).split("-")
    # Any id between the second and the first: the page starts at the second.
    between = event_id("cust-001", f"{ms}-{int(seq) + 1}")
    assert events(api, f"?before={between}")[0]["id"] in (whole[1]["id"], whole[0]["id"])
    assert events(api, f"?before={event_id('cust-001', '99999999999999-0')}") == whole[:20]


def test_event_ids_are_unique_across_customers_and_name_their_customer(api):
    register(api)
    register(api, "cust-002")
    mine = api.get("/v1/customers/cust-001/events").get_json()["events"]
    theirs = api.get("/v1/customers/cust-002/events").get_json()["events"]
    assert not {e["id"] for e in mine} & {e["id"] for e in theirs}
    # Two trails may hold the same entry id; the event ids still differ.
    assert event_id("cust-001", trail_id(mine[0])) != event_id("cust-002", trail_id(mine[0]))
    # One customer's event id pages nobody else's trail.
    assert_problem(
        api.get("/v1/customers/cust-002/events", query_string={"before": mine[0]["id"]}),
        422,
        "validation_error",
    )


@pytest.mark.parametrize(
    "bad",
    [
        *("", "abc", "1", "1-", "-1", "1-2-3", "1.5-0", "+1-0", " 1-0", "1-x", "１-０"),
        "1-0",  # a bare trail entry id is not an event id
        event_id("cust-001", "18446744073709551616-0"),
        event_id("cust-001", "1-0") + " ",
        event_id("cust-002", "1-0"),  # another customer's event
        event_id("cust-001", "1-0").upper(),
    ],
)
def test_a_bad_before_is_a_validation_error(api, bad):
    register(api)
    body = assert_problem(
        api.get("/v1/customers/cust-001/events", query_string={"before": bad}), 422, "validation_error"
    )
    assert [e["field"] for e in body["errors"]] == ["before"]


def test_paging_an_unknown_customer_is_not_found(api):
    assert_problem(
        api.get(f"/v1/customers/nobody/events?before={event_id('nobody', '1-0')}"), 404, "customer_not_found"
    )
