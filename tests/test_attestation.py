"""STIR/SHAKEN: which attestations a call may carry and still verify (``AUTHGW_CALLBACK_MIN_ATTESTATION``).

Twilio's ``StirVerstat`` values (sent only for US calls with SHAKEN attestation):
``TN-Validation-Passed-A/B/C``, ``TN-Validation-Failed-A/B/C``, ``No-TN-Validation``,
``TN-Validation-Failed``. Anything containing "failed", in any case, is always refused. At
``none`` (the default) everything else passes, absent included (Japanese calls carry none); at
``A``, ``B`` or ``C`` only ``TN-Validation-Passed-`` of that level or better, spelled as Twilio
spells it, passes: absent and ``No-TN-Validation`` are refused.
"""

from __future__ import annotations

from typing import Any

import pytest

from authgw.app import create_app
from authgw.errors import ConfigError
from authgw.settings import load_settings
from authgw.webhooks.callerid import attestation_refusal
from tests.helpers.api import Api, new_challenge, register
from tests.helpers.settings import CALLBACK_NUMBERS, settings_for_tests
from tests.helpers.webhooks import call, challenge_status, new_sid, verbs

PHONE = "+819011113333"
LINE = CALLBACK_NUMBERS[0]
PASS, FAIL, LOW = "", "attestation_failed", "attestation_insufficient"

# value: the refusal at minimum none, C, B, A (None: StirVerstat absent).
TABLE: dict[str | None, tuple[str, str, str, str]] = {
    None: (PASS, LOW, LOW, LOW),
    "TN-Validation-Passed-A": (PASS, PASS, PASS, PASS),
    "TN-Validation-Passed-B": (PASS, PASS, PASS, LOW),
    "TN-Validation-Passed-C": (PASS, PASS, LOW, LOW),
    "TN-Validation-Failed-A": (FAIL, FAIL, FAIL, FAIL),
    "TN-Validation-Failed-B": (FAIL, FAIL, FAIL, FAIL),
    "TN-Validation-Failed-C": (FAIL, FAIL, FAIL, FAIL),
    "TN-Validation-Failed": (FAIL, FAIL, FAIL, FAIL),
    "No-TN-Validation": (PASS, LOW, LOW, LOW),
    # Odd casing: a failure is a failure in any case; a pass counts only as Twilio spells it.
    "tn-validation-failed-a": (FAIL, FAIL, FAIL, FAIL),
    "TN-VALIDATION-FAILED-C": (FAIL, FAIL, FAIL, FAIL),
    "tn-validation-FaIlEd": (FAIL, FAIL, FAIL, FAIL),
    "tn-validation-passed-a": (PASS, LOW, LOW, LOW),
    "TN-VALIDATION-PASSED-A": (PASS, LOW, LOW, LOW),
    "Passed-A": (PASS, LOW, LOW, LOW),
    "TN-Validation-Passed-D": (PASS, LOW, LOW, LOW),
    "TN-Validation-Passed-A-Failed": (FAIL, FAIL, FAIL, FAIL),
}
MINIMUMS = ("none", "C", "B", "A")
CASES = [(value, minimum, row[i]) for value, row in TABLE.items() for i, minimum in enumerate(MINIMUMS)]


@pytest.mark.parametrize(("value", "minimum", "refusal"), CASES)
def test_attestation_table(value, minimum, refusal):
    assert attestation_refusal(value or "", minimum) == refusal


def gateway(store: Any, clock: Any, **settings: Any) -> tuple[Api, Any]:
    app = create_app({**settings_for_tests(**settings), "redis_client": store, "clock": clock})
    return Api(app.test_client()), app.test_client()


@pytest.mark.parametrize("minimum", MINIMUMS)
@pytest.mark.parametrize("value", list(TABLE))
def test_a_call_verifies_only_with_an_accepted_attestation(store, clock, value, minimum):
    refusal = TABLE[value][MINIMUMS.index(minimum)]
    api, twilio = gateway(store, clock, callback_min_attestation=minimum)
    register(api, phones=(PHONE,))
    challenge = new_challenge(api)
    extra = {} if value is None else {"StirVerstat": value}
    assert verbs(call(twilio, PHONE, LINE, new_sid(), **extra)) == ["Reject"]
    events = api.get("/v1/customers/cust-001/events?limit=100").get_json()["events"]
    if refusal:
        assert challenge_status(api, challenge) == "pending"
        assert events[0]["type"] == "call.unmatched"
        assert events[0]["reason"] == refusal
        assert events[0].get("stir_verstat") == value
    else:
        assert challenge_status(api, challenge) == "verified"
        received = [e for e in events if e["type"] == "call.received"]
        assert received[0].get("stir_verstat") == value


@pytest.mark.parametrize(("raw", "expected"), [("a", "A"), (" B ", "B"), ("c", "C"), ("NONE", "none")])
def test_the_minimum_is_read_in_any_case(raw, expected):
    settings = load_settings(settings_for_tests(callback_min_attestation=raw), environ={})
    assert settings.callback_min_attestation == expected


@pytest.mark.parametrize("raw", ["D", "", "AB", "any", "0"])
def test_a_bad_minimum_stops_start_up(raw):
    with pytest.raises(ConfigError) as exc:
        load_settings(settings_for_tests(callback_min_attestation=raw), environ={})
    assert exc.value.name == "AUTHGW_CALLBACK_MIN_ATTESTATION"


@pytest.mark.parametrize("value", ["0", "1"])
def test_the_replaced_setting_stops_start_up_with_a_clear_message(value, tmp_path):
    env = {"AUTHGW_CALLBACK_REFUSE_FAILED_ATTESTATION": value}
    with pytest.raises(ConfigError) as exc:
        load_settings(settings_for_tests(), environ=env)
    assert exc.value.name == "AUTHGW_CALLBACK_REFUSE_FAILED_ATTESTATION"
    assert "AUTHGW_CALLBACK_MIN_ATTESTATION" in str(exc.value)
    config = tmp_path / "authgw.toml"
    config.write_text(f"callback_refuse_failed_attestation = {'true' if value == '1' else 'false'}\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(settings_for_tests(), environ={"AUTHGW_CONFIG_FILE": str(config)})
    assert "AUTHGW_CALLBACK_MIN_ATTESTATION" in str(exc.value)
