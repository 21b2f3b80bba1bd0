"""Helpers for the tests (not fixtures: those live in ``tests/conftest.py``), one module a concern.

- ``settings``: the suite's keys, tokens, numbers, ``settings_for_tests`` and the hand-moved ``Clock``.
- ``api``: ``Api`` (a test client speaking as one API client), request bodies, ``register``,
  ``enrol_totp``, ``new_challenge``, TOTP codes and ``assert_problem``.
- ``stores``: the ``redis-server`` binary, clients, ``every_key`` (every "the store is
  unchanged" check goes through it) and ``CountingConnection`` (round trips).
- ``polling``: ``wait_until``, the suite's one polling helper.
- ``ports``: ``free_ports``, the suite's one free-port helper.
- ``apps``: ``open_app`` / ``close_apps`` for apps over a topology's store.
- ``serving``: ``http`` (one real HTTP request) and ``serving`` (``authgw serve`` until ready).
- ``traffic``: ``Traffic``, requests in a loop from a thread while a fault is injected.
- ``webhooks``: Twilio's signed webhooks one request at a time (``call``, ``status``, the
  ``verbs`` of a response, ``call_events``).
- ``phone``: Twilio's side of whole calls (``Phone``, ``twiml``, ``spoken``, ``race``).
- ``calls``: the phone callback tests' ``Phone`` (any URL, any token, remembered sids) and
  ``approve``.

No test module imports another test module, and nothing imports from ``conftest``.
"""
