#!/usr/bin/env python3
"""Benchmark the gateway against its ceiling: ``python3 bench/run.py [--quick] [options]``.

Runs from a clean clone with nothing but Python 3.11+ and ``wrk`` (Debian: ``apt-get install
-y wrk``; as root the script installs it itself): the first run makes ``.venv`` exactly as
``python3 dev.py test`` does, then re-runs itself inside it. See ``docs/performance.md``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == (ROOT / ".venv").resolve()


def run_in_venv(script: str) -> None:
    """Outside ``.venv``: make it as ``python3 dev.py test`` does and re-run ``script`` inside it."""
    if not in_venv():
        sys.path.insert(0, str(ROOT))
        import dev

        dev.ensure_env()
        python = str(dev.BIN / "python")
        os.execv(python, [python, str(Path(script).resolve()), *sys.argv[1:]])


def main() -> int:
    run_in_venv(__file__)
    sys.path.insert(0, str(ROOT))
    from bench.suite import main as suite_main

    return suite_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
