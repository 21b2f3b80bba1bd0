"""Bad input, field by field: the contract's strict types and ranges, problem+json every time.

Every refusal here is a 4xx problem document (``type``, ``title``, ``status``, ``code``,
``detail`` and, for field problems, ``errors: [{field, message}]``), no input gives a 500, and a
refused request leaves the store exactly as it was.
"""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from authgw.app import create_app
from tests.helpers.api import Api, assert_problem, field_errors, register, transfer
from tests.helpers.settings import API_KEY, OTHER_KEY, Clock, settings_for_tests
from tests.helpers.stores import every_key

# Refusals made before the store is touched are judged on fakeredis alone; the tests that
# check a refusal leaves a real store (and a Cluster) untouched run on every store.
FAKE_ONLY = pytest.mark.parametrize("store", ["fake"], indirect=True)

TRANSFER_PAYEE = transfer()["payee"]
PAYEASY_PAYEE = {
    "biller_number": "12345",
    "customer_number": "1234567890",
    "confirmation_number": "123456",
    "name": "ﾄｳｷｮｳﾄ",
}


def snapshot(client: Any) -> dict[str, Any]:
    """Everything in the store, by key, in a comparable form.

    Rate-limit counters (hash tag ``{r:...}``) are left out: they count every request, refused
    or not, by design; what a refusal must not leave behind is state.
    """
    state: dict[str, Any] = {}
    for key in sorted(every_key(client)):
        if ":{r:" in key:
            continue
        kind = client.type(key)
        if kind == "hash":
            state[key] = client.hgetall(key)
        elif kind == "stream":
            state[key] = [entry_id for entry_id, _ in client.xrange(key)]
        elif kind == "set":
            state[key] = client.smembers(key)
        elif kind == "zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        else:
            state[key] = client.get(key)
    return state


@pytest.fixture
def registered(api, store):
    """A registered customer; yields a function that asserts nothing changed since."""
    register(api)
    before = snapshot(store)

    def unchanged() -> None:
        assert snapshot(store) == before

    return unchanged


# -- POST /v1/challenges: one bad field at a time ---------------------------------------------

BAD_CHALLENGES = [
    # (what, overrides or a callable on the body, the field the problem names)
    ("amount as a string", {"amount": "100"}, "amount"),
    ("amount as a float", {"amount": 1.0}, "amount"),
    ("amount as a boolean", {"amount": True}, "amount"),
    ("amount null", {"amount": None}, "amount"),
    ("amount zero", {"amount": 0}, "amount"),
    ("amount negative", {"amount": -1}, "amount"),
    ("amount over 99,999,999,999", {"amount": 100_000_000_000}, "amount"),
    ("amount huge", {"amount": 10**30}, "amount"),
    ("amount missing", {"amount": ...}, "amount"),
    ("customer_id as a number", {"customer_id": 1}, "customer_id"),
    ("customer_id as a boolean", {"customer_id": True}, "customer_id"),
    ("customer_id empty", {"customer_id": ""}, "customer_id"),
    ("customer_id too long", {"customer_id": "c" * 65}, "customer_id"),
    ("customer_id with a space", {"customer_id": "cust 001"}, "customer_id"),
    ("customer_id with a slash", {"customer_id": "cust/001"}, "customer_id"),
    ("customer_id non-ASCII", {"customer_id": "顧客"}, "customer_id"),
    ("customer_id missing", {"customer_id": ...}, "customer_id"),
    ("kind unknown", {"kind": "wire"}, "kind"),
    ("kind as a boolean", {"kind": True}, "kind"),
    ("kind in capitals", {"kind": "TRANSFER"}, "kind"),
    ("kind missing", {"kind": ...}, "kind"),
    ("currency lower case", {"currency": "jpy"}, "currency"),
    ("currency as a number", {"currency": 392}, "currency"),
    ("currency too long", {"currency": "JPYY"}, "currency"),
    ("currency not ISO 4217", {"currency": "ABC"}, "currency"),
    ("currency withdrawn", {"currency": "DEM"}, "currency"),
    ("currency the test code", {"currency": "XTS"}, "currency"),
    ("currency full-width", {"currency": "ＪＰＹ"}, "currency"),
    ("payee missing", {"payee": ...}, "payee"),
    ("payee as a string", {"payee": "ﾔﾏﾀﾞ"}, "payee"),
    ("payee as a list", {"payee": [TRANSFER_PAYEE]}, "payee"),
    ("payee null", {"payee": None}, "payee"),
    ("payee with an unknown field", {"payee": {**TRANSFER_PAYEE, "iban": "JP00"}}, "payee.iban"),
    ("payee name as a number", {"payee": {**TRANSFER_PAYEE, "name": 5}}, "payee.name"),
    ("payee name empty", {"payee": {**TRANSFER_PAYEE, "name": ""}}, "payee.name"),
    ("payee bank_code as a number", {"payee": {**TRANSFER_PAYEE, "bank_code": 168}}, "payee.bank_code"),
    ("payee bank_code too short", {"payee": {**TRANSFER_PAYEE, "bank_code": "168"}}, "payee.bank_code"),
    (
        "payee account_type unknown",
        {"payee": {**TRANSFER_PAYEE, "account_type": "gold"}},
        "payee.account_type",
    ),
    (
        "payee field missing",
        {"payee": {k: v for k, v in TRANSFER_PAYEE.items() if k != "bank_code"}},
        "payee.bank_code",
    ),
    ("payee over 2 KiB", {"payee": {**TRANSFER_PAYEE, "name": "ﾔ" * 1000}}, "payee.name"),
    ("payee of the other kind", {"payee": PAYEASY_PAYEE}, "payee.bank_code"),
    ("payeasy with a transfer payee", {"kind": "payeasy"}, "payee.biller_number"),
    ("methods as a string", {"methods": "totp"}, "methods"),
    ("methods null", {"methods": None}, "methods"),
    ("methods empty", {"methods": []}, "methods"),
    ("methods unknown", {"methods": ["sms"]}, "methods[0]"),
    ("methods with a boolean", {"methods": [True]}, "methods[0]"),
    ("methods duplicated", {"methods": ["totp", "totp"]}, "methods"),
    ("methods duplicated thrice", {"methods": ["totp", "callback", "totp"]}, "methods"),
    ("ttl under 60", {"ttl_seconds": 59}, "ttl_seconds"),
    ("ttl over 900", {"ttl_seconds": 901}, "ttl_seconds"),
    ("ttl as a string", {"ttl_seconds": "300"}, "ttl_seconds"),
    ("ttl as a float", {"ttl_seconds": 300.0}, "ttl_seconds"),
    ("ttl as a boolean", {"ttl_seconds": True}, "ttl_seconds"),
    ("unknown top-level field", {"memo": "rent"}, "memo"),
    ("unknown field that looks internal", {"status": "verified"}, "status"),
]


def bad_body(overrides: dict[str, Any]) -> dict[str, Any]:
    body = transfer()
    for name, value in overrides.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


@FAKE_ONLY
@pytest.mark.parametrize("overrides, field", [pytest.param(o, f, id=w) for w, o, f in BAD_CHALLENGES])
def test_a_bad_challenge_field_is_a_validation_error_naming_it(api, registered, overrides, field):
    rv = api.post("/v1/challenges", bad_body(overrides))
    assert_problem(rv, 422, "validation_error")
    assert field in field_errors(rv)
    registered()


@FAKE_ONLY
@pytest.mark.parametrize(
    "currency", ["JPY", "USD", "EUR", "GBP", "AUD", "CNY", "HKD", "SGD", "CHF", "CAD", "NZD", "THB", "KRW"]
)
def test_the_currencies_a_japanese_bank_moves_money_in_are_accepted(api, registered, currency):
    """The currency check comes from CLDR data: a Babel release that dropped one fails here."""
    rv = api.post("/v1/challenges", transfer(currency=currency))
    assert rv.status_code == 201, rv.get_json()
    assert rv.get_json()["currency"] == currency


@FAKE_ONLY
def test_a_payee_over_2_kib_is_refused_even_when_each_field_fits(api, registered):
    # A payee the field rules accept but whose canonical JSON is over 2 KiB cannot be built
    # from the transfer or Pay-easy fields (names stop at 100 characters); this checks the
    # largest one passes and its digest is bound, and that a bigger document is refused.
    big = {**PAYEASY_PAYEE, "name": "𠮷" * 100, "customer_number": "9" * 20}
    assert api.post("/v1/challenges", transfer(kind="payeasy", payee=big)).status_code == 201
    rv = api.post("/v1/challenges", transfer(kind="payeasy", payee={**big, "name": "𠮷" * 600}))
    assert_problem(rv, 422, "validation_error")


@FAKE_ONLY
@pytest.mark.parametrize("amount", [1, 99_999_999_999])
def test_amount_bounds_are_accepted(api, amount):
    register(api)
    rv = api.post("/v1/challenges", transfer(amount=amount))
    assert rv.status_code == 201, rv.get_data(as_text=True)
    assert rv.get_json()["amount"] == amount


@FAKE_ONLY
@pytest.mark.parametrize("ttl", [60, 900])
def test_ttl_bounds_are_accepted(api, ttl):
    register(api)
    assert api.post("/v1/challenges", transfer(ttl_seconds=ttl)).status_code == 201


def test_a_refused_body_under_an_idempotency_key_leaves_nothing_and_frees_the_key(api, registered):
    rv = api.post("/v1/challenges", bad_body({"amount": "150000"}), headers={"Idempotency-Key": "k-1"})
    assert_problem(rv, 422, "validation_error")
    registered()
    # The key was not spent on the refused body: the corrected one goes through under it.
    assert api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "k-1"}).status_code == 201


def test_every_bad_field_is_listed(api, registered):
    rv = api.post("/v1/challenges", bad_body({"amount": "1", "kind": "wire", "ttl_seconds": 5, "extra": 1}))
    assert_problem(rv, 422, "validation_error")
    assert {"amount", "kind", "ttl_seconds", "extra"} <= set(field_errors(rv))
    registered()


# -- PUT /v1/customers/{id} -------------------------------------------------------------------

BAD_CUSTOMERS = [
    ("no phones", {"phones": []}, "phones"),
    ("six phones", {"phones": [f"090-1234-000{i}" for i in range(6)]}, "phones"),
    ("phones missing", {}, "phones"),
    ("phones as a string", {"phones": "090-1234-5678"}, "phones"),
    ("a phone as a number", {"phones": [9012345678]}, "phones[0]"),
    ("a phone as null", {"phones": [None]}, "phones[0]"),
    ("a phone empty", {"phones": [""]}, "phones[0]"),
    ("region lower case", {"phones": ["090-1234-5678"], "region": "jp"}, "region"),
    ("region as a boolean", {"phones": ["090-1234-5678"], "region": True}, "region"),
    ("unknown field", {"phones": ["090-1234-5678"], "name": "山田"}, "name"),
]


@FAKE_ONLY
@pytest.mark.parametrize("body, field", [pytest.param(b, f, id=w) for w, b, f in BAD_CUSTOMERS])
def test_a_bad_customer_field_is_a_validation_error_naming_it(api, store, body, field):
    before = snapshot(store)
    rv = api.put("/v1/customers/cust-001", body)
    assert_problem(rv, 422, "validation_error")
    assert field in field_errors(rv)
    assert snapshot(store) == before


@FAKE_ONLY
@pytest.mark.parametrize(
    "customer_id", ["cust%20001", "c" * 65, "%E9%A1%A7%E5%AE%A2", "cust%2B1", "cust:1", "cust%7B1%7D"]
)
def test_a_bad_customer_id_in_the_path_is_refused(api, store, customer_id):
    rv = api.put(f"/v1/customers/{customer_id}", {"phones": ["090-1234-5678"]})
    body = assert_problem(rv, 422, "validation_error")
    assert body["errors"][0]["field"] == "customer_id"
    assert snapshot(store) == {}


@FAKE_ONLY
@pytest.mark.parametrize("customer_id", ["a", "A.b_c-9", "c" * 64])
def test_good_customer_ids_are_accepted(api, customer_id):
    assert api.put(f"/v1/customers/{customer_id}", {"phones": ["090-1234-5678"]}).status_code == 200
    assert api.get(f"/v1/customers/{customer_id}").get_json()["customer_id"] == customer_id


BAD_PHONES = [
    ("too short", "090-1234-567"),
    ("too long", "090-1234-56789"),
    ("letters", "phone"),
    ("not Japanese", "+1 202 555 01"),
    ("VoIP 050", "050-1234-5678"),
    ("VoIP 050 in E.164", "+81 50 1234 5678"),
    ("toll-free", "0120-123-456"),
    ("toll-free 0800", "0800-123-4567"),
    ("Navi Dial (UAN)", "0570-064-556"),
    ("pager / M2M", "020-4000-1234"),
    ("premium rate", "0990-12-3456"),
    ("whitespace only", "   "),
]


@FAKE_ONLY
@pytest.mark.parametrize("phone", [pytest.param(p, id=w) for w, p in BAD_PHONES])
def test_an_unusable_phone_is_invalid_phone_naming_its_index(api, store, phone):
    rv = api.put("/v1/customers/cust-001", {"phones": ["090-1234-5678", phone]})
    body = assert_problem(rv, 422, "invalid_phone")
    assert [e["field"] for e in body["errors"]] == ["phones[1]"]
    assert snapshot(store) == {}


@FAKE_ONLY
def test_every_unusable_phone_is_listed(api):
    rv = api.put("/v1/customers/cust-001", {"phones": ["123", "090-1234-5678", "050-1234-5678"]})
    body = assert_problem(rv, 422, "invalid_phone")
    assert [e["field"] for e in body["errors"]] == ["phones[0]", "phones[2]"]


@FAKE_ONLY
@pytest.mark.parametrize(
    "phone, e164",
    [
        ("070-1234-5678", "+817012345678"),
        ("080-1234-5678", "+818012345678"),
        ("06-1234-5678", "+81612345678"),
    ],
)
def test_mobile_and_fixed_line_ranges_are_accepted(api, phone, e164):
    assert api.put("/v1/customers/cust-001", {"phones": [phone]}).get_json()["phones"] == [e164]


ACCEPTED_SPELLINGS = [
    "090-1234-5678",
    "09012345678",
    "０９０１２３４５６７８",
    "０９０－１２３４－５６７８",
    "+81 90 1234 5678",
    "+819012345678",
    "(090) 1234-5678",
    "090 1234 5678",
]


@FAKE_ONLY
@pytest.mark.parametrize("phone", ACCEPTED_SPELLINGS)
def test_phones_in_any_parseable_format_are_stored_in_e164(api, phone):
    rv = api.put("/v1/customers/cust-001", {"phones": [phone]})
    assert rv.status_code == 200, rv.get_data(as_text=True)
    assert rv.get_json()["phones"] == ["+819012345678"]


@FAKE_ONLY
def test_a_fixed_line_is_accepted(api):
    assert api.put("/v1/customers/cust-001", {"phones": ["03-1234-5678"]}).get_json()["phones"] == [
        "+81312345678"
    ]


@FAKE_ONLY
def test_five_phones_are_accepted(api):
    phones = [f"090-1234-000{i}" for i in range(5)]
    assert len(api.put("/v1/customers/cust-001", {"phones": phones}).get_json()["phones"]) == 5


@FAKE_ONLY
@pytest.mark.parametrize("settings", [settings_for_tests(allow_voip=True)])
def test_voip_is_accepted_when_the_bank_allows_it(api, settings):
    rv = api.put("/v1/customers/cust-001", {"phones": ["050-1234-5678"]})
    assert rv.status_code == 200, rv.get_data(as_text=True)
    assert rv.get_json()["phones"] == ["+815012345678"]


# -- bodies of the code and digest calls ------------------------------------------------------

BAD_CODE_BODIES = [
    ("code as a number", {"code": 123456}, "code"),
    ("code empty", {"code": ""}, "code"),
    ("code null", {"code": None}, "code"),
    ("code too long", {"code": "1" * 17}, "code"),
    ("code missing", {}, "code"),
    ("unknown field", {"code": "123456", "challenge": "x"}, "challenge"),
]


@FAKE_ONLY
@pytest.mark.parametrize("body, field", [pytest.param(b, f, id=w) for w, b, f in BAD_CODE_BODIES])
def test_a_bad_code_body_is_a_validation_error_and_costs_nothing(api, store, app, body, field):
    register(api)
    api.post("/v1/customers/cust-001/totp")
    challenge_id = api.post("/v1/challenges", transfer()).get_json()["id"]
    before = snapshot(store)
    for path in (f"/v1/challenges/{challenge_id}/totp", "/v1/customers/cust-001/totp/confirm"):
        rv = api.post(path, body)
        assert_problem(rv, 422, "validation_error")
        assert field in field_errors(rv)
    assert snapshot(store) == before


@FAKE_ONLY
@pytest.mark.parametrize(
    "body, field",
    [
        ({"transaction_digest": 5}, "transaction_digest"),
        ({"transaction_digest": ""}, "transaction_digest"),
        ({"transaction_digest": "a" * 129}, "transaction_digest"),
        ({}, "transaction_digest"),
        ({"transaction_digest": "a" * 64, "amount": 1}, "amount"),
    ],
)
def test_a_bad_consume_body_is_a_validation_error(api, registered, body, field):
    challenge_id = api.post("/v1/challenges", transfer()).get_json()["id"]
    before_status = api.get(f"/v1/challenges/{challenge_id}").get_json()["status"]
    rv = api.post(f"/v1/challenges/{challenge_id}/consume", body)
    assert_problem(rv, 422, "validation_error")
    assert field in field_errors(rv)
    assert api.get(f"/v1/challenges/{challenge_id}").get_json()["status"] == before_status


# -- bodies that are not what JSON calls an object --------------------------------------------

BAD_RAW_BODIES = [
    ("malformed", b'{"customer_id": "cust-001",'),
    ("a list", b"[]"),
    ("a string", b'"transfer"'),
    ("a number", b"150000"),
    ("null", b"null"),
    ("NaN", b'{"customer_id":"cust-001","kind":"transfer","amount":NaN,"payee":{}}'),
    ("Infinity", b'{"amount": Infinity}'),
    ("empty", b""),
    ("whitespace", b"  \n"),
    ("not UTF-8", '{"customer_id": "顧客"}'.encode("shift_jis")),
    ("a BOM and garbage", b"\xef\xbb\xbf{x}"),
    ("deeply nested", b"[" * 5000 + b"]" * 5000),
    ("a huge integer", b'{"amount": ' + b"9" * 5000 + b"}"),
    ("a lone surrogate", b'{"customer_id": "\\ud800"}'),
    ("trailing data", b'{"customer_id": "cust-001"} {}'),
]

JSON_ROUTES = [
    ("post", "/v1/challenges"),
    ("put", "/v1/customers/cust-001"),
    ("post", "/v1/customers/cust-001/totp/confirm"),
    ("post", "/v1/challenges/{id}/totp"),
    ("post", "/v1/challenges/{id}/consume"),
]


def post_raw(api, method, path, raw):
    return getattr(api.client, method)(
        path, data=raw, headers=api.headers({"Content-Type": "application/json"})
    )


@FAKE_ONLY
@pytest.mark.parametrize("raw", [pytest.param(r, id=w) for w, r in BAD_RAW_BODIES])
def test_a_body_that_is_not_a_json_object_is_a_validation_error(api, registered, raw):
    assert_problem(post_raw(api, "post", "/v1/challenges", raw), 422, "validation_error")
    registered()


@pytest.mark.parametrize("method, path", JSON_ROUTES)
def test_every_json_call_refuses_a_body_that_is_not_a_json_object(api, store, method, path):
    register(api)
    api.post("/v1/customers/cust-001/totp")
    challenge_id = api.post("/v1/challenges", transfer()).get_json()["id"]
    before = snapshot(store)
    for raw in (b"[]", b"{", b'{"code": NaN}', b""):
        assert_problem(post_raw(api, method, path.format(id=challenge_id), raw), 422, "validation_error")
    assert snapshot(store) == before


@pytest.mark.parametrize("method, path", JSON_ROUTES)
def test_a_body_over_16_kib_is_413(api, store, method, path):
    register(api)
    challenge_id = api.post("/v1/challenges", transfer()).get_json()["id"]
    before = snapshot(store)
    raw = json.dumps({**transfer(), "pad": "x" * (16 * 1024)}).encode()
    rv = getattr(api.client, method)(
        path.format(id=challenge_id), data=raw, headers=api.headers({"Content-Type": "application/json"})
    )
    assert_problem(rv, 413, "payload_too_large")
    assert snapshot(store) == before


@FAKE_ONLY
def test_a_body_just_under_16_kib_is_read(api):
    register(api)
    body = transfer(memo="")
    body["memo"] = "x" * (16 * 1024 - len(json.dumps(body).encode()))
    raw = json.dumps(body).encode()
    assert len(raw) == 16 * 1024
    rv = api.client.post("/v1/challenges", data=raw, headers=api.headers())
    # Read and judged on its fields (the memo is unknown), not refused for its size.
    assert_problem(rv, 422, "validation_error")
    assert field_errors(rv) == ["memo"]


@FAKE_ONLY
def test_a_json_body_without_a_content_type_is_read_as_json(api):
    register(api)
    rv = api.client.post("/v1/challenges", data=json.dumps(transfer()), headers=api.headers())
    assert rv.status_code == 201


# -- routes, methods, keys --------------------------------------------------------------------


@FAKE_ONLY
@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/v1/nope"),
        ("get", "/nope"),
        ("post", "/v1/customers"),
        ("get", "/v1/customers/"),
        ("get", "/v1/challenges/ch_x/events"),
        ("post", "/v1/challenges/ch_x/verify"),
        ("get", "/v2/challenges"),
    ],
)
def test_an_unknown_route_is_a_404_problem(api, method, path):
    rv = getattr(api, method)(path)
    assert_problem(rv, 404, "not_found")


@FAKE_ONLY
@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/v1/challenges"),
        ("put", "/v1/challenges"),
        ("delete", "/v1/challenges/ch_x"),
        ("get", "/v1/challenges/ch_x/consume"),
        ("post", "/v1/customers/cust-001"),
        ("put", "/v1/customers/cust-001/totp"),
        ("get", "/v1/customers/cust-001/unlock"),
        ("patch", "/v1/customers/cust-001"),
    ],
)
def test_a_wrong_method_is_a_405_problem_with_allow(api, method, path):
    rv = getattr(api.client, method)(path, headers=api.headers())
    assert_problem(rv, 405, "method_not_allowed")
    assert rv.headers.get("Allow")


V1_CALLS = [
    ("put", "/v1/customers/cust-001", {"phones": ["090-1234-5678"]}),
    ("get", "/v1/customers/cust-001", None),
    ("delete", "/v1/customers/cust-001", None),
    ("post", "/v1/customers/cust-001/totp", None),
    ("post", "/v1/customers/cust-001/totp/confirm", {"code": "123456"}),
    ("delete", "/v1/customers/cust-001/totp", None),
    ("post", "/v1/customers/cust-001/unlock", None),
    ("get", "/v1/customers/cust-001/events", None),
    ("post", "/v1/challenges", transfer()),
    ("get", "/v1/challenges/{id}", None),
    ("post", "/v1/challenges/{id}/totp", {"code": "123456"}),
    ("post", "/v1/challenges/{id}/consume", {"transaction_digest": "0" * 64}),
    ("post", "/v1/challenges/{id}/cancel", None),
]

BAD_AUTH = [
    ("missing", None),
    ("empty", ""),
    ("wrong key", f"Bearer {API_KEY}x"),
    ("a prefix of the key", f"Bearer {API_KEY[:-1]}"),
    ("Basic scheme", f"Basic {API_KEY}"),
    ("no key", "Bearer "),
    ("key alone", API_KEY),
    ("non-ASCII", "Bearer 鍵"),
]


def call(api, method, path, body, headers):
    return getattr(api.client, method)(path, json=body, headers=headers)


@pytest.fixture
def with_challenge(api, store):
    """A registered customer and a challenge; returns its id and a check that nothing changed."""
    register(api)
    challenge_id = api.post("/v1/challenges", transfer()).get_json()["id"]
    before = snapshot(store)
    return challenge_id, lambda: snapshot(store) == before


@FAKE_ONLY
@pytest.mark.parametrize("auth", [pytest.param(a, id=w) for w, a in BAD_AUTH])
def test_a_missing_or_wrong_api_key_is_401(api, with_challenge, auth):
    challenge_id, unchanged = with_challenge
    headers = {} if auth is None else {"Authorization": auth}
    rv = call(api, "post", f"/v1/challenges/{challenge_id}/cancel", None, headers)
    assert_problem(rv, 401, "unauthorized")
    assert rv.headers["WWW-Authenticate"].startswith("Bearer")
    assert unchanged()


@pytest.mark.parametrize("method, path, body", V1_CALLS)
def test_every_v1_call_needs_an_api_key_and_changes_nothing_without_one(
    api, with_challenge, method, path, body
):
    challenge_id, unchanged = with_challenge
    for headers in ({}, {"Authorization": f"Bearer {API_KEY}x"}):
        assert_problem(call(api, method, path.format(id=challenge_id), body, headers), 401, "unauthorized")
    assert unchanged()


@FAKE_ONLY
def test_401_comes_before_any_judgement_of_the_body(api):
    rv = api.client.post("/v1/challenges", data=b"{not json", headers={"Authorization": "Bearer nope"})
    assert_problem(rv, 401, "unauthorized")


@FAKE_ONLY
def test_both_configured_keys_work_and_the_scheme_is_case_blind(api, other_api):
    register(api)
    assert other_api.get("/v1/customers/cust-001").status_code == 200
    rv = api.client.get("/v1/customers/cust-001", headers={"Authorization": f"bearer {OTHER_KEY}"})
    assert rv.status_code == 200


@FAKE_ONLY
def test_no_response_leaks_internals(api, store):
    register(api)
    responses = [
        api.post("/v1/challenges", bad_body({"amount": "x"})),
        api.get("/v1/challenges/ch_0123456789abcdef0123456789abcdefaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        api.client.get("/v1/customers/cust-001"),
    ]
    for rv in responses:
        text = rv.get_data(as_text=True)
        for secret in ("Traceback", "authgw:{", API_KEY, "redis", ".py"):
            assert secret not in text


# -- no input is a 500 ------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUES = {
    "customer_id": st.sampled_from(["cust-001", "nobody", "", "c" * 65]) | JSON_VALUES,
    "kind": st.sampled_from(["transfer", "payeasy", "wire"]) | JSON_VALUES,
    "amount": st.integers(min_value=-2, max_value=10**12) | JSON_VALUES,
    "currency": st.sampled_from(["JPY", "USD", "jpy"]) | JSON_VALUES,
    "payee": st.sampled_from([TRANSFER_PAYEE, PAYEASY_PAYEE])
    | st.dictionaries(st.sampled_from(list(TRANSFER_PAYEE) + list(PAYEASY_PAYEE) + ["x"]), JSON_VALUES),
    "methods": st.lists(st.sampled_from(["callback", "totp", "sms"]), max_size=3) | JSON_VALUES,
    "ttl_seconds": st.integers(min_value=0, max_value=1000) | JSON_VALUES,
    "extra": JSON_VALUES,
}
CHALLENGE_BODIES = st.fixed_dictionaries({}, optional=FIELD_VALUES) | JSON_VALUES


@pytest.fixture(scope="module")
def fuzz_api():
    """An app over fakeredis of its own, with one customer (hypothesis reuses it per example).

    Without rate limits: hundreds of examples a second on one customer would otherwise be
    answered 429 before the code under test ever saw them.
    """
    app = create_app(
        {
            **settings_for_tests(rate_limit_client=0, rate_limit_customer=0),
            "redis_client": fakeredis.FakeRedis(decode_responses=True),
            "clock": Clock(),
        }
    )
    api = Api(app.test_client())
    register(api)
    return api


def assert_answer_is_sound(rv):
    assert rv.status_code < 500, rv.get_data(as_text=True)
    assert rv.status_code != 429
    if rv.status_code >= 400:
        assert_problem(rv, rv.status_code, rv.get_json()["code"])


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=CHALLENGE_BODIES,
    key=st.none() | st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=8),
)
def test_no_json_body_makes_challenge_creation_fail_with_a_500(fuzz_api, body, key):
    headers = {} if key is None else {"Idempotency-Key": key.encode("utf-8").decode("latin-1")}
    assert_answer_is_sound(fuzz_api.post("/v1/challenges", body, headers=headers))


@hsettings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=300))
def test_no_bytes_make_any_json_call_fail_with_a_500(fuzz_api, raw):
    for method, path in JSON_ROUTES:
        rv = getattr(fuzz_api.client, method)(
            path.format(id="ch_0123456789abcdef0123456789abcdefaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            data=raw,
            headers=fuzz_api.headers(),
        )
        assert_answer_is_sound(rv)


@hsettings(max_examples=150, deadline=None)
@given(
    phones=JSON_VALUES | st.lists(st.text(max_size=20), max_size=6),
    region=JSON_VALUES,
    code=JSON_VALUES,
    limit=st.text(max_size=6),
)
def test_no_customer_input_fails_with_a_500(fuzz_api, phones, region, code, limit):
    assert_answer_is_sound(fuzz_api.put("/v1/customers/cust-fuzz", {"phones": phones, "region": region}))
    assert_answer_is_sound(fuzz_api.post("/v1/customers/cust-001/totp/confirm", {"code": code}))
    assert_answer_is_sound(fuzz_api.get("/v1/customers/cust-001/events", query_string={"limit": limit}))


@hsettings(max_examples=150, deadline=None)
@given(segment=st.text(min_size=1, max_size=80), body=JSON_VALUES)
def test_no_path_segment_fails_with_a_500(fuzz_api, segment, body):
    from urllib.parse import quote

    part = quote(segment, safe="")
    for method, path in [
        ("get", "/v1/challenges/{}"),
        ("post", "/v1/challenges/{}/totp"),
        ("post", "/v1/challenges/{}/consume"),
        ("post", "/v1/challenges/{}/cancel"),
        ("get", "/v1/customers/{}"),
        ("put", "/v1/customers/{}"),
        ("delete", "/v1/customers/{}"),
        ("post", "/v1/customers/{}/totp"),
        ("post", "/v1/customers/{}/totp/confirm"),
        ("delete", "/v1/customers/{}/totp"),
        ("post", "/v1/customers/{}/unlock"),
        ("get", "/v1/customers/{}/events"),
    ]:
        rv = getattr(fuzz_api, method)(path.format(part), json=body)
        assert_answer_is_sound(rv)
