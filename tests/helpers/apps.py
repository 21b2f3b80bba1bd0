"""Apps over a topology's store, remembered so a test can close their connections."""

from __future__ import annotations

from typing import Any

from authgw.app import create_app

OPENED: list[Any] = []


def open_app(config: dict[str, Any]) -> Any:
    """``create_app``, remembered so ``close_apps`` can close its store connections."""
    app = create_app(config)
    OPENED.append(app)
    return app


def close_apps() -> None:
    while OPENED:
        OPENED.pop().extensions["authgw"].store.close()
