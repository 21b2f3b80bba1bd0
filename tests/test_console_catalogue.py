"""Every message the console's templates and views mark for translation has its Japanese in the
catalogue (English is the message id itself), so no page shows English to a Japanese operator."""

from __future__ import annotations

from importlib import resources
from typing import Any

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

TEMPLATES = "**/templates/**.html"


def test_every_marked_message_has_its_japanese() -> None:
    root = resources.files("authgw.console")
    with root.joinpath("translations", "ja", "LC_MESSAGES", "messages.po").open("rb") as fh:
        catalogue = read_po(fh, locale="ja")
    methods = [(TEMPLATES, "jinja2"), ("**.py", "python")]
    options = {TEMPLATES: {"extensions": "jinja2.ext.i18n"}}
    missing, marked = [], 0
    for filename, lineno, message, _comments, _context in extract_from_dir(str(root), methods, options):
        for msgid in message if isinstance(message, tuple) else (message,):
            if not msgid:
                continue
            marked += 1
            entry = catalogue.get(msgid)
            if entry is None or not entry.string:
                missing.append(f"{filename}:{lineno}: {msgid!r}")
    assert marked > 100  # the extraction found the console's messages
    assert not missing, missing


def test_every_challenge_status_has_words_in_both_languages(app: Any) -> None:
    """The console and the demo say a challenge's status in words, never the API's; the list
    comes from the API's own model, so a status added there without words fails here."""
    from flask_babel import force_locale

    from authgw.console.views import CHALLENGE_STATUSES as statuses
    from authgw.console.views import status_label

    assert "failed" in statuses and "denied" in statuses  # read from the model, not empty
    with app.test_request_context():
        for lang in ("en", "ja"):
            with force_locale(lang):
                words = {s: status_label(s) for s in statuses}
            assert all(words[s] != s for s in statuses), (lang, words)
            assert len(set(words.values())) == len(statuses), (lang, words)  # each its own
