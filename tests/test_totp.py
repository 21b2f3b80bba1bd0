"""TOTP (RFC 6238) through the gateway's own verification path, and replay refusal.

The published vectors are RFC 6238 Appendix B (T0 = 0, 30-second steps, 8 digits; seeds are the
ASCII strings below). Codes are also computed here by hand (RFC 4226 §5.3 dynamic truncation
over HMAC of the big-endian step counter), independently of pyotp, and must be accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pytest

from authgw.challenges.totp import TotpPolicy
from tests.helpers.api import assert_problem, enrol_totp, new_challenge, register, totp_code, wrong_code
from tests.helpers.settings import settings_for_tests

# RFC 6238 Appendix B.
SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
RFC6238 = [
    pytest.param(algorithm, t, codes[i], id=f"{algorithm}-{t}")
    for t, *codes in VECTORS
    for i, algorithm in enumerate(("SHA1", "SHA256", "SHA512"))
]
# RFC 4226 Appendix D: HOTP of the SHA1 seed for counters 0..9.
RFC4226 = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]
HASHES = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


def hotp(key: bytes, counter: int, digits: int = 6, algorithm: str = "SHA1") -> str:
    """RFC 4226 by hand: HMAC of the 8-byte counter, dynamic truncation, modulo 10^digits."""
    mac = hmac.new(key, struct.pack(">Q", counter), HASHES[algorithm]).digest()
    offset = mac[-1] & 0x0F
    (value,) = struct.unpack(">I", mac[offset : offset + 4])
    return f"{(value & 0x7FFFFFFF) % 10**digits:0{digits}d}"


def hand_totp(secret_b32: str, at: float, digits: int = 6, algorithm: str = "SHA1") -> str:
    return hotp(base64.b32decode(secret_b32), int(at) // 30, digits, algorithm)


def install_secret(app, store, customer_id: str, secret_b32: str, field: str) -> None:
    """Put a known secret where enrolment would, sealed with the app's own SecretBox."""
    sealed = app.extensions["authgw"].domain.box.seal(secret_b32, f"totp:{customer_id}")
    key = app.extensions["authgw"].store.keys.for_customer(customer_id).customer
    assert store.hget(key, field) is not None, f"enrolment should have written {field}"
    store.hset(key, field, sealed)


def rfc_settings(algorithm: str) -> dict:
    return settings_for_tests(totp_algorithm=algorithm, totp_digits=8)


def verify(api, challenge, code):
    return api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": code})


# -- the hand-written reference, checked against the RFCs ------------------------------------


@pytest.mark.parametrize("counter, code", list(enumerate(RFC4226)))
def test_hand_written_hotp_matches_rfc4226(counter, code):
    assert hotp(SEEDS["SHA1"], counter) == code


@pytest.mark.parametrize("algorithm, t, code", RFC6238)
def test_hand_written_totp_matches_rfc6238(algorithm, t, code):
    assert hotp(SEEDS[algorithm], t // 30, 8, algorithm) == code


@pytest.mark.parametrize("algorithm, t, code", RFC6238)
def test_the_policy_matches_the_vectors_at_their_step(algorithm, t, code):
    policy = TotpPolicy("authgw", digits=8, algorithm=algorithm)
    secret = base64.b32encode(SEEDS[algorithm]).decode()
    assert policy.matching_steps(secret, code, t) == [t // 30]
    # One step of drift either way (API.md), and no more.
    assert policy.matching_steps(secret, code, t + 30) == [t // 30]
    assert policy.matching_steps(secret, code, t - 30) == [t // 30]
    assert policy.matching_steps(secret, code, t + 60) == []


@pytest.mark.parametrize(
    "code", ["", "1234567", "123456789", "abcdefgh", "1234 567", "１２３４５６７８", "²²²²²²²²", "-1234567"]
)
def test_the_policy_refuses_malformed_codes_without_raising(code):
    policy = TotpPolicy("authgw", digits=8)
    assert policy.matching_steps(base64.b32encode(SEEDS["SHA1"]).decode(), code, 59) == []


# -- the vectors through HTTP -----------------------------------------------------------------


# The vectors test the arithmetic and the replay guard's script; fakeredis and one real server
# are enough for that (the Cluster runs every other TOTP test).
FAKE_AND_REAL = pytest.mark.parametrize(
    "store", ["fake", pytest.param("real", marks=pytest.mark.real_redis)], indirect=True
)

RFC6238_APPS = [
    pytest.param(rfc_settings(algorithm), algorithm, t, codes[i], id=f"{algorithm}-{t}")
    for t, *codes in VECTORS
    for i, algorithm in enumerate(("SHA1", "SHA256", "SHA512"))
]


@FAKE_AND_REAL
@pytest.mark.parametrize("settings, algorithm, t, code", RFC6238_APPS)
def test_rfc6238_vectors_confirm_an_enrolment_and_verify_a_challenge(
    api, app, store, clock, algorithm, t, code
):
    clock.now = t
    register(api)
    assert api.post("/v1/customers/cust-001/totp").status_code == 201
    install_secret(app, store, "cust-001", base64.b32encode(SEEDS[algorithm]).decode(), "totp_pending")
    # The vector confirms the enrolment ...
    rv = api.post("/v1/customers/cust-001/totp/confirm", {"code": code})
    assert rv.status_code == 200, rv.get_data(as_text=True)
    assert rv.get_json()["totp"] == "active"
    # ... and, one step later, the next step's code (by hand) verifies a challenge.
    clock.advance(30)
    challenge = new_challenge(api, methods=["totp"])
    rv = verify(api, challenge, hotp(SEEDS[algorithm], t // 30 + 1, 8, algorithm))
    assert rv.status_code == 200, rv.get_data(as_text=True)
    assert (rv.get_json()["status"], rv.get_json()["verified_by"]) == ("verified", "totp")


@FAKE_AND_REAL
@pytest.mark.parametrize("settings, algorithm, t, code", RFC6238_APPS)
def test_rfc6238_vectors_verify_a_challenge_at_their_time(api, app, store, clock, algorithm, t, code):
    clock.now = t
    register(api)
    assert api.post("/v1/customers/cust-001/totp").status_code == 201
    # Active without a confirmation (which would spend the vector's step): move the pending
    # ciphertext to the active field, then replace it with the RFC's seed.
    key = app.extensions["authgw"].store.keys.for_customer("cust-001").customer
    store.hset(key, "totp", store.hget(key, "totp_pending"))
    store.hdel(key, "totp_pending")
    install_secret(app, store, "cust-001", base64.b32encode(SEEDS[algorithm]).decode(), "totp")
    assert api.get("/v1/customers/cust-001").get_json()["totp"] == "active"
    challenge = new_challenge(api, methods=["totp"])
    # The same truncation under another algorithm is not this algorithm's code.
    for other in SEEDS:
        foreign = hotp(SEEDS[algorithm], t // 30, 8, other)
        if foreign != code:
            assert_problem(verify(api, challenge, foreign), 422, "invalid_code")
            break
    rv = verify(api, challenge, code)
    assert rv.status_code == 200, rv.get_data(as_text=True)
    assert rv.get_json()["verified_by"] == "totp"
    # And it is spent: the vector is refused on a second challenge.
    again = new_challenge(api, methods=["totp"])
    assert_problem(verify(api, again, code), 422, "invalid_code")


# -- codes computed by hand, on a secret the gateway made -------------------------------------


def test_hand_computed_codes_confirm_and_verify(api, clock):
    register(api)
    secret = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    rv = api.post("/v1/customers/cust-001/totp/confirm", {"code": hand_totp(secret, clock())})
    assert rv.status_code == 200
    clock.advance(30)
    challenge = new_challenge(api, methods=["totp"])
    assert verify(api, challenge, hand_totp(secret, clock())).status_code == 200


@pytest.mark.parametrize("drift, accepted", [(-1, True), (1, True), (-2, False), (2, False)])
def test_one_step_of_drift_is_accepted_and_no_more(api, clock, drift, accepted):
    register(api)
    secret = enrol_totp(api, clock)
    clock.advance(60)  # clear of the step the enrolment spent, even looking one step back
    challenge = new_challenge(api, methods=["totp"])
    rv = verify(api, challenge, hand_totp(secret, clock() + 30 * drift))
    if accepted:
        assert rv.status_code == 200
    else:
        assert_problem(rv, 422, "invalid_code")


@pytest.mark.parametrize("settings", [settings_for_tests(totp_digits=8, totp_algorithm="SHA256")])
def test_configured_digits_and_algorithm_apply_to_new_enrolments(api, clock, settings):
    register(api)
    body = api.post("/v1/customers/cust-001/totp").get_json()
    assert "digits=8" in body["otpauth_uri"] and "algorithm=SHA256" in body["otpauth_uri"]
    code = hand_totp(body["secret"], clock(), 8, "SHA256")
    assert api.post("/v1/customers/cust-001/totp/confirm", {"code": code}).status_code == 200


# -- replay -----------------------------------------------------------------------------------


def test_the_same_code_is_accepted_once(api, clock):
    register(api)
    secret = enrol_totp(api, clock)
    first, second = new_challenge(api, methods=["totp"]), new_challenge(api, methods=["totp"])
    code = hand_totp(secret, clock())
    assert verify(api, first, code).status_code == 200
    body = assert_problem(verify(api, second, code), 422, "invalid_code")
    assert body["attempts_left"] == 2
    # A fresh step is fine again.
    clock.advance(30)
    assert verify(api, second, hand_totp(secret, clock())).status_code == 200


def test_the_confirmation_code_cannot_be_replayed_on_a_challenge(api, clock):
    register(api)
    secret = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    code = hand_totp(secret, clock())
    assert api.post("/v1/customers/cust-001/totp/confirm", {"code": code}).status_code == 200
    challenge = new_challenge(api, methods=["totp"])
    assert_problem(verify(api, challenge, code), 422, "invalid_code")


def test_an_earlier_step_is_refused_after_a_later_one(api, clock):
    register(api)
    secret = enrol_totp(api, clock)
    clock.advance(30)
    first, second = new_challenge(api, methods=["totp"]), new_challenge(api, methods=["totp"])
    # The next step's code (clock drift) is accepted first ...
    assert verify(api, first, hand_totp(secret, clock() + 30)).status_code == 200
    # ... and then the current and previous steps' codes are stale, though within the window.
    assert_problem(verify(api, second, hand_totp(secret, clock())), 422, "invalid_code")
    assert_problem(verify(api, second, hand_totp(secret, clock() - 30)), 422, "invalid_code")


def test_replay_is_refused_across_clients(api, other_api, clock):
    register(api)
    secret = enrol_totp(api, clock)
    mine = new_challenge(api, methods=["totp"])
    theirs = new_challenge(other_api, methods=["totp"])
    code = totp_code(secret, clock())
    assert verify(api, mine, code).status_code == 200
    assert_problem(verify(other_api, theirs, code), 422, "invalid_code")


def test_replay_is_per_customer(api, clock):
    register(api, "cust-001")
    register(api, "cust-002", ("080-1111-2222",))
    a = enrol_totp(api, clock, "cust-001")
    b = enrol_totp(api, clock, "cust-002")
    clock.advance(30)
    ch_a = new_challenge(api, "cust-001", methods=["totp"])
    ch_b = new_challenge(api, "cust-002", methods=["totp"])
    assert verify(api, ch_a, totp_code(a, clock())).status_code == 200
    assert verify(api, ch_b, totp_code(b, clock())).status_code == 200


def test_a_wrong_code_does_not_spend_the_step(api, clock):
    register(api)
    secret = enrol_totp(api, clock)
    challenge = new_challenge(api, methods=["totp"])
    assert_problem(verify(api, challenge, wrong_code(secret, clock())), 422, "invalid_code")
    assert verify(api, challenge, totp_code(secret, clock())).status_code == 200


def test_a_secret_sealed_for_another_customer_is_not_opened(api, app, store, clock):
    """Sealed secrets are bound to their customer: moving one across fails closed."""
    register(api, "cust-001")
    register(api, "cust-002", ("080-1111-2222",))
    enrol_totp(api, clock, "cust-001")
    enrol_totp(api, clock, "cust-002")
    keys = app.extensions["authgw"].store.keys
    store.hset(
        keys.for_customer("cust-002").customer,
        "totp",
        store.hget(keys.for_customer("cust-001").customer, "totp"),
    )
    challenge = new_challenge(api, "cust-002", methods=["totp"])
    rv = verify(api, challenge, "123456")
    assert_problem(rv, 503, "store_unavailable")
    assert api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"] == "pending"
