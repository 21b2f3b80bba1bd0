#!/usr/bin/env python3
"""The quick start's two commands; each installs what it needs into ./.venv first.

    python3 dev.py serve [authgw serve options]   the gateway on the embedded store
    python3 dev.py test  [pytest options]         the whole test suite (after ruff and mypy)

Only Python 3.11+ is needed: the virtual environment and every dependency are made here.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".authgw-installed"


def ensure_env() -> None:
    if sys.version_info < (3, 11):
        sys.exit("authgw needs Python 3.11 or newer")
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text() != wanted:
        print("dev.py: installing authgw and its dependencies into .venv", file=sys.stderr)
        pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "install", "-e", f"{ROOT}[test]"], check=True)
        STAMP.write_text(wanted)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("serve", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    ensure_env()
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "serve":
        args = [str(BIN / "authgw"), "serve", *rest]
        if "--dev" not in rest and not os.environ.get("AUTHGW_API_KEYS"):
            args.append("--dev")
        os.execv(args[0], args)  # noqa: S606 (the venv's own authgw)
    os.chdir(ROOT)
    tree = ["authgw", "config", "tests", "bench", "docs/examples", "dev.py"]
    for check in (["check", *tree], ["format", "--check", *tree]):
        lint = subprocess.run([str(BIN / "ruff"), *check], check=False)
        if lint.returncode:
            return lint.returncode
    # authgw strictly, tests and bench loosely (pyproject's per-module overrides say how).
    types = subprocess.run([str(BIN / "mypy"), "authgw", "tests", "bench"], check=False)
    if types.returncode:
        return types.returncode
    return subprocess.run([str(BIN / "python"), "-m", "pytest", *rest], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
