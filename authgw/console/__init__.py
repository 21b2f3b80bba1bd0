"""The operator console (``/console/``) and, under ``authgw serve --dev``, the demo (``/demo/``).

Server-rendered pages (Jinja2) for bank operators: sign in with an operator API key, find a
customer by id or phone number, read their lock, TOTP state, open challenges and trail, and
lock, unlock or remove TOTP, each behind a confirmation page. Rules:

- **Session.** The API key is exchanged for Flask's signed session cookie (``HttpOnly``,
  ``SameSite=Strict``, ``Secure`` unless ``AUTHGW_DEV`` with a loopback ``http`` public URL),
  signed with a key derived from ``AUTHGW_SECRET_KEY``. The cookie holds the client's name and
  a fingerprint of its key, never the key: a key removed from ``AUTHGW_API_KEYS`` ends every
  session it opened. Fifteen minutes without a request (on the host's clock) end it too.
- **Roles.** Only a client with the operator role (``authgw.auth.roles_of``) signs in; a
  corebank key is refused with 403, an anonymous visitor is sent to the sign-in page.
- **CSRF.** Every POST carries a token (Flask-WTF's, bound to the session) in the form or in
  ``X-CSRFToken``; without a valid one it is refused with 400 before it does anything.
- **Audit.** Every action goes through the same domain calls as the API and writes the same
  events, ``by`` the operator's client name; showing a customer's full phone numbers writes
  ``customer.phones_viewed``.
- **No inline script.** Every response carries a Content-Security-Policy without
  ``'unsafe-inline'``; the little JavaScript there is lives in ``static/``.
- **Language.** Japanese unless ``AUTHGW_CONSOLE_LANGUAGE`` says ``en`` or the operator
  switches (kept in the session); the browser's ``Accept-Language`` is not consulted.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, Response, request, session
from flask_babel import Babel

from authgw.console import stats
from authgw.settings import Settings

LANGUAGES = ("ja", "en")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def compile_translations() -> str:
    """Compile the packaged ``.po`` catalogs into ``.mo`` files in a folder of this process (so a
    plain ``pip install`` needs no build step), and return that folder."""
    target = Path(tempfile.mkdtemp(prefix="authgw-translations-"))
    atexit.register(shutil.rmtree, target, True)
    root = resources.files("authgw.console").joinpath("translations")
    for language in root.iterdir():
        po = language.joinpath("LC_MESSAGES", "messages.po")
        if not po.is_file():
            continue
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=language.name)
        out = target / language.name / "LC_MESSAGES"
        out.mkdir(parents=True)
        with open(out / "messages.mo", "wb") as fh:
            write_mo(fh, catalog)
    return str(target)


def cookie_is_secure(settings: Settings) -> bool:
    """Secure, except in development mode on a loopback ``http`` public URL."""
    if not settings.dev:
        return True
    url = settings.public_url or "http://127.0.0.1"
    if not url.startswith("http://"):
        return True
    host = url[len("http://") :].split("/", 1)[0].rsplit(":", 1)[0]
    return host not in LOOPBACK_HOSTS


def language() -> str:
    from flask import current_app

    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return str(chosen)
    return str(current_app.extensions["authgw"].settings.console_language)


def init_app(app: Flask, background: bool = True) -> None:
    """Mount the console (and the demo in development mode) on ``app``; ``background=False``
    sends the overview's counts only when the overview is read (``stats.Stats``)."""
    from authgw.console import views

    gateway = app.extensions["authgw"]
    settings: Settings = gateway.settings

    # The session cookie's key: derived from the first secret key, for this purpose only.
    app.secret_key = hmac.new(settings.secret_keys[0], b"authgw console session", hashlib.sha256).digest()
    app.config.update(
        SESSION_COOKIE_NAME="authgw_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=cookie_is_secure(settings),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session (15 minutes idle)
        BABEL_DEFAULT_LOCALE=settings.console_language,
        BABEL_TRANSLATION_DIRECTORIES=compile_translations(),
    )
    Babel(app, locale_selector=language)
    app.extensions["authgw_console_stats"] = stats.Stats(
        gateway.store, gateway.domain.store_clock.now_ms, background
    )
    app.register_blueprint(views.bp)
    if settings.dev:
        from authgw.console import demo

        app.register_blueprint(demo.bp)

    @app.after_request
    def security_headers(response: Response) -> Response:
        if request.blueprint in ("console", "demo"):
            response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers.setdefault("Cache-Control", "no-store")
        return response
