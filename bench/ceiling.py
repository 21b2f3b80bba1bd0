"""The ceiling: a bare Flask app whose one view makes one Redis round trip (a GET) and returns a
small JSON body, served exactly as ``authgw serve`` serves the gateway (same gunicorn settings
file, worker class, threads and worker count; same redis-py client settings).

No gateway can beat this on the same machine, stack and store, so the gateway's figures are
reported as ratios to it.

    python -m bench.ceiling --port 8100 --workers 2 [--worker-class gthread] [--threads 4]

The store is ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from flask import Flask, Response

from authgw.cli import gunicorn_options, run_gunicorn
from authgw.store import connect

KEY = "bench:ceiling"


def create_app() -> Flask:
    client = connect(os.environ["BENCH_REDIS_URL"], 0.5, 32)
    app = Flask("ceiling")

    @app.get("/")
    def one_round_trip() -> Response:
        value = client.get(KEY)
        body = json.dumps({"status": "ok", "value": value}, separators=(",", ":"))
        return Response(body, mimetype="application/json")

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ceiling")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    # The very code `authgw serve` runs, so both are served alike.
    run_gunicorn(
        gunicorn_options(args.host, args.port, args.workers, args.worker_class, args.threads), create_app
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
