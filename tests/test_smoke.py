from tests.conftest import transfer


def test_registered_customer_can_be_read_back(api):
    assert api.put("/v1/customers/cust-001", {"phones": ["090-1234-5678"]}).status_code == 200
    body = api.get("/v1/customers/cust-001").get_json()
    assert body == {"customer_id": "cust-001", "phones": ["+819012345678"], "totp": "none",
                    "locked": False, "failed_attempts": 0}


def test_challenge_binds_a_callback_number(api):
    api.put("/v1/customers/cust-001", {"phones": ["090-1234-5678"]})
    rv = api.post("/v1/challenges", transfer())
    assert rv.status_code == 201
    assert rv.get_json()["callback"]["number"] == "+815030000001"
