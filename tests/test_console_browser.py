"""The console and the demo as a person uses them: a real Chromium (Debian's ``chromium``,
driven by Playwright) against ``authgw serve --dev`` on a real Redis.

Where no Chromium is found these tests skip with the reason, unless ``CI=true`` or
``AUTHGW_REQUIRE_REAL_REDIS=1`` (``.ci/run`` installs the package), which makes that a failure.
Screenshots are refused without a Japanese font (``fc-list :lang=ja``): every character would
be an empty box.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authgw.app import create_app
from authgw.cli import DEV_API_KEYS
from tests.helpers.api import Api, register
from tests.helpers.delivering import attempts_made, deliveries, delivering, endpoint
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_ports
from tests.helpers.receiver import receiver
from tests.helpers.serving import http, in_process, serving
from tests.helpers.settings import OTHER_KEY, settings_for_tests

pytestmark = pytest.mark.real_redis

DEV_KEYS = dict(pair.split("=", 1) for pair in DEV_API_KEYS.split(","))
REQUIRED = os.environ.get("CI") == "true" or os.environ.get("AUTHGW_REQUIRE_REAL_REDIS") == "1"
TIMEOUT_MS = 15_000
# Screenshots for docs/console.md: written into docs/screenshots/ (to be committed) when
# AUTHGW_UPDATE_SCREENSHOTS=1, else into the test's temporary folder.
DOCS_SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def shot_path(tmp_path: Path, name: str) -> Path:
    if os.environ.get("AUTHGW_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(exist_ok=True)
        return DOCS_SCREENSHOTS / name
    return tmp_path / name


def shots(page: Any, tmp_path: Path, name: str) -> None:
    """``name`` at laptop width and at phone width (``<name>.png``, ``<name>-phone.png`` before
    the language suffix), then back to laptop width."""
    stem, lang = name.rsplit("-", 1)
    screenshot(page, shot_path(tmp_path, f"{stem}-{lang}.png"))
    page.set_viewport_size(PHONE)
    screenshot(page, shot_path(tmp_path, f"{stem}-phone-{lang}.png"))
    page.set_viewport_size(LAPTOP)


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "no Chromium found (Debian: apt-get install chromium fonts-noto-cjk)"
        if REQUIRED:
            pytest.fail(reason + "; required under CI / AUTHGW_REQUIRE_REAL_REDIS=1")
        pytest.skip(reason)
    return path


def japanese_font() -> bool:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    out = subprocess.run([fc_list, ":lang=ja"], capture_output=True, text=True, timeout=30).stdout
    return bool(out.strip())


def screenshot(page: Any, path: Path) -> None:
    """A full-page screenshot, only when Japanese can render."""
    assert japanese_font(), "no Japanese font (fc-list :lang=ja): install fonts-noto-cjk"
    page.screenshot(path=str(path), full_page=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def serve_dev(redis_server: Any, db: int, **settings: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGW_")}
    # A database of its own on the suite's server, so no other test's data is touched.
    env["AUTHGW_REDIS_URL"] = redis_server.url.rsplit("/", 1)[0] + f"/{db}"
    env.update(settings)
    argv = [sys.executable, "-m", "authgw.cli", "serve", "--dev", "--workers", "1"]
    return serving(argv, env)


@pytest.fixture(scope="module")
def gateway(redis_server: Any) -> Iterator[str]:
    with serve_dev(redis_server, 7) as (base, _log):
        yield base


@pytest.fixture(scope="module")
def confirming_gateway(redis_server: Any) -> Iterator[str]:
    with serve_dev(redis_server, 8, AUTHGW_CALLBACK_MODE="confirm") as (base, _log):
        yield base


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=LAPTOP, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    # A CSP violation or a script error shows in the console: none is expected. (A refused
    # page's status, such as the corebank key's 403, is logged too; the tests check those.)
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, errors


def sign_in(page: Any, base: str, tmp_path: Path | None = None) -> None:
    """Sign in as the dev operator; with ``tmp_path``, screenshots of the empty sign-in page."""
    page.goto(f"{base}/console/")
    assert page.url.endswith("/console/sign-in")
    if tmp_path is not None:
        shots(page, tmp_path, "console-sign-in-ja")
    page.fill("#api_key", DEV_KEYS["ops"])
    page.click("#sign-in")
    page.wait_for_url(f"{base}/console/")


def test_operator_finds_by_full_width_phone_locks_with_a_note_and_unlocks(
    page: Any, gateway: str, tmp_path: Path
) -> None:
    status, _ = http(
        "PUT", f"{gateway}/v1/customers/cust-web", {"phones": ["090-5555-0101"]}, key=DEV_KEYS["corebank"]
    )
    assert status == 200
    sign_in(page, gateway, tmp_path)
    page.fill("#q", "０９０－５５５５－０１０１")
    page.click("#find")
    page.wait_for_url(f"{gateway}/console/customers/cust-web")
    assert page.text_content("#phones") == "•••-••••-0101"
    shots(page, tmp_path, "console-customer-ja")

    page.fill("#note", "お客さまから不審な振込の連絡")
    page.click("#lock-button")
    assert "お客さまから不審な振込の連絡" in page.text_content("#confirm-note")
    shots(page, tmp_path, "console-confirm-lock-ja")
    status, customer = http("GET", f"{gateway}/v1/customers/cust-web", key=DEV_KEYS["corebank"])
    assert customer["lock"] is None  # the confirmation page alone changes nothing
    page.click("#confirm")
    page.wait_for_selector("#lock-reason")
    assert page.text_content("#lock-reason") == "オペレーター"
    assert page.text_content("#lock-by") == "ops"
    first_event = page.text_content("#events tbody tr")
    assert "customer.locked" in first_event and "お客さまから不審な振込の連絡" in first_event
    shots(page, tmp_path, "console-locked-ja")

    page.click("#unlock")
    page.wait_for_selector("#question")
    shots(page, tmp_path, "console-confirm-unlock-ja")
    page.click("#confirm")
    page.wait_for_selector("#lock-button")
    assert "customer.unlocked" in page.text_content("#events tbody tr")
    status, customer = http("GET", f"{gateway}/v1/customers/cust-web", key=DEV_KEYS["corebank"])
    assert customer["lock"] is None

    page.click("#switch-language")
    page.wait_for_selector("text=Event trail (newest first)")
    page.reload()
    assert page.is_visible("text=Event trail (newest first)")  # remembered
    shots(page, tmp_path, "console-customer-en")
    page.click("#switch-language")
    page.wait_for_selector("text=履歴（新しい順）")

    # The overview counts the lock just made (this host's counts are sent when it is shown).
    page.click("a.brand")
    page.wait_for_url(f"{gateway}/console/")
    assert int(page.text_content("#count-locks")) >= 1
    shots(page, tmp_path, "console-overview-ja")


def test_a_phone_shared_by_two_customers_lists_both(page: Any, gateway: str, tmp_path: Path) -> None:
    for customer_id in ("cust-family-1", "cust-family-2"):
        status, _ = http(
            "PUT",
            f"{gateway}/v1/customers/{customer_id}",
            {"phones": ["03-5555-0199"]},
            key=DEV_KEYS["corebank"],
        )
        assert status == 200
    sign_in(page, gateway)
    page.fill("#q", "０３－５５５５－０１９９")
    page.click("#find")
    page.wait_for_selector("ul.matches")
    assert page.locator("ul.matches li").all_text_contents() == ["cust-family-1", "cust-family-2"]
    shots(page, tmp_path, "console-find-ja")
    page.click("text=cust-family-2")
    page.wait_for_url(f"{gateway}/console/customers/cust-family-2")


def test_a_corebank_key_cannot_sign_in(page: Any, gateway: str) -> None:
    page.goto(f"{gateway}/console/sign-in")
    page.fill("#api_key", DEV_KEYS["corebank"])
    page.click("#sign-in")
    page.wait_for_selector("#error")
    page.goto(f"{gateway}/console/")
    assert page.url.endswith("/console/sign-in")


def test_demo_transfer_verified_by_a_call_from_the_browser_phone(
    page: Any, gateway: str, tmp_path: Path
) -> None:
    page.goto(f"{gateway}/demo/")
    page.click("#send-transfer")
    page.wait_for_selector("#callback-number:not(:empty)")
    assert page.get_attribute("#transfer-status", "data-state") == "pending"

    # A stranger's phone calls the number: nothing changes.
    page.select_option("#caller", "stranger")
    page.click("#call")
    page.wait_for_selector("#call-ended")
    assert page.get_attribute("#transfer-status", "data-state") == "pending"

    page.select_option("#caller", "registered")
    page.click("#call")
    page.wait_for_selector("#transfer-status[data-state=verified]")
    # The state is told in the customer's language, not as the API's word.
    assert page.text_content("#transfer-status").endswith("(承認済み)")
    assert "verified" not in page.text_content("#transfer-status")
    shots(page, tmp_path, "demo-verified-ja")


def test_demo_in_confirm_mode_pressing_9_denies_and_locks(
    page: Any, confirming_gateway: str, tmp_path: Path
) -> None:
    page.goto(f"{confirming_gateway}/demo/")
    page.click("#send-transfer")
    page.wait_for_selector("#callback-number:not(:empty)")
    page.click("#call")
    page.wait_for_selector("#keys:not(.hidden)")
    heard = page.text_content("#screen")
    assert "円" in heard  # the amount, read to the caller in Japanese
    shots(page, tmp_path, "demo-confirm-call-ja")
    page.click("#keys button[data-key='9']")
    page.wait_for_selector("#transfer-status[data-state=denied]")
    assert page.text_content("#transfer-status").endswith("(電話で拒否)")
    status, customer = http("GET", f"{confirming_gateway}/v1/customers/demo-customer", key=DEV_KEYS["ops"])
    assert status == 200 and customer["lock"]["reason"] == "fraud_report"


def test_operator_retries_a_failed_webhook_delivery(
    page: Any, real_store: Any, clock: Any, tmp_path: Path
) -> None:
    port = free_ports(1)[0]
    settings = settings_for_tests(
        operators="ops",
        dev=True,
        public_url=f"http://127.0.0.1:{port}",
        webhook_allow_http="1",
        webhook_retry_schedule="5",  # two tries, then failed
    )
    app = create_app({**settings, "redis_client": real_store, "clock": clock})
    ops = Api(app.test_client(), OTHER_KEY)
    with receiver() as got, in_process(app, port) as base:
        # Core banking's endpoint is down (500); the archive's answers.
        got.answer = lambda r: (200 if r.path.endswith("/archive") else 500, {}, 0.0)
        endpoint(ops, "core-banking", got.url, ["customer.*", "challenge.verified"])
        clock.advance(1)
        endpoint(ops, "archive", got.url + "/archive", ["*"])
        wanted = 3  # phones_changed, locked, unlocked

        def tried_once() -> bool:
            # Every delivery to core banking tried once and its try recorded (not only claimed).
            found = deliveries(ops, "core-banking")
            tries = sum(d["attempts"] for d in found)
            return (
                len(found) == wanted
                and all(d["attempts"] for d in found)
                and attempts_made(deliverer, "core-banking") == tries
            )

        with delivering(app, clock) as deliverer:
            clock.advance(3600)
            register(Api(app.test_client()), "cust-0042", ("090-5555-0142",))
            wait_until("fanned out", lambda: len(deliveries(ops, "core-banking")) == 1)
            clock.advance(47)
            assert ops.post("/v1/customers/cust-0042/lock", {"note": "不審な振込"}).status_code == 200
            wait_until("fanned out", lambda: len(deliveries(ops, "core-banking")) == 2)
            clock.advance(312)
            assert ops.post("/v1/customers/cust-0042/unlock").status_code == 200
            wait_until("every first try", tried_once)
            clock.advance(6)  # past the schedule's one wait: every second try is due
            wait_until(
                "core banking's deliveries failed",
                lambda: len(deliveries(ops, "core-banking", "failed")) == wanted,
            )
            wait_until(
                "the archive's delivered", lambda: len(deliveries(ops, "archive", "delivered")) == wanted
            )
        # The deliverer is stopped: a retried delivery stays pending for the page to show.
        newest = deliveries(ops, "core-banking", "failed")[0]
        assert newest["type"] == "customer.unlocked" and newest["attempts"] == 2

        page.goto(f"{base}/console/")
        page.fill("#api_key", OTHER_KEY)
        page.click("#sign-in")
        page.wait_for_url(f"{base}/console/")
        assert page.text_content("#webhook-lag tr[data-webhook='core-banking'] .lag") == "0 秒"
        page.click("#nav-webhooks")
        page.wait_for_url(f"{base}/console/webhooks")
        row = f"#webhook-core-banking table.failed tr[data-delivery='{newest['id']}']"
        assert newest["event_id"] in page.text_content(row)
        assert "HTTP 500" in page.text_content(row)
        assert page.locator("#webhook-core-banking table.failed tbody tr").count() == wanted
        assert page.locator("#webhook-archive table.failed").count() == 0  # none failed there
        shots(page, tmp_path, "console-webhooks-ja")

        page.click(f"{row} button.retry")
        page.wait_for_selector("#question")
        assert newest["id"] in page.text_content("#question")
        assert deliveries(ops, "core-banking", "failed")[0]["id"] == newest["id"]  # asking changed nothing
        page.click("#confirm")
        page.wait_for_selector("#done")
        assert (
            page.get_attribute(
                f"#webhook-core-banking table.latest tr[data-delivery='{newest['id']}']", "data-state"
            )
            == "pending"
        )
        assert page.locator(row).count() == 0  # no longer among the failed
        # The retry is audited in the store: the page's operator actions show it first.
        audited = page.locator("#webhook-audit tbody tr").first
        assert audited.get_attribute("data-action") == "webhook.delivery_retried"
        assert audited.get_attribute("data-delivery") == newest["id"]
        assert "配信を再送" in audited.text_content() and "ops" in audited.text_content()
        assert (
            next(d for d in deliveries(ops, "core-banking") if d["id"] == newest["id"])["state"] == "pending"
        )
        # Pending again, it counts in the endpoint's lag on the overview.
        page.goto(f"{base}/console/")
        assert page.text_content("#webhook-lag tr[data-webhook='core-banking'] .lag") != "0 秒"
