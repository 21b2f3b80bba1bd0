"""The ``authgw`` command: ``serve``, ``deliver`` and ``simulate-call``.

``authgw serve`` runs the gateway under gunicorn (settings in ``config/gunicorn.conf.py``),
each worker building its own app with ``create_app()``, and a webhook deliverer beside them
(``--no-deliver`` leaves it out). Without ``AUTHGW_REDIS_URL`` it first starts the embedded
store and hands its URL to the workers and the deliverer. ``authgw deliver`` runs a deliverer
alone (``authgw.outbound.deliverer``); any number may run at once.
"""

from __future__ import annotations

import argparse
import atexit
import os
import runpy
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from typing import Any

from authgw.errors import ConfigError
from authgw.settings import load_settings
from authgw.webhooks.simulate import DEV_TOKEN

# Values `serve --dev` fills in where the environment has none; printed at start-up.
DEV_API_KEYS = "corebank=dev-corebank-key-0001,ops=dev-ops-key-00000001"
DEV_TWILIO_TOKEN = DEV_TOKEN  # the token simulate-call signs with by default
DEV_OPERATORS = "ops"  # the dev key named ops is the operator, corebank is core banking
DEV_CALLBACK_NUMBERS = "050-3000-0001,050-3000-0002,050-3000-0003"


def gunicorn_options(
    host: str, port: int, workers: int, worker_class: str | None = None, threads: int | None = None
) -> dict[str, Any]:
    """``config/gunicorn.conf.py`` with the command line's bind, workers and worker settings."""
    path = resources.files("authgw.config").joinpath("gunicorn.conf.py")
    options = {k: v for k, v in runpy.run_path(str(path)).items() if not k.startswith("_")}
    options.update(bind=f"{host}:{port}", workers=workers)
    if worker_class:
        options["worker_class"] = worker_class
    if threads:
        options["threads"] = threads
    return options


def run_gunicorn(options: dict[str, Any], factory: Callable[[], Any]) -> None:
    """Serve the WSGI app each worker gets from ``factory()`` (called after the fork)."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return factory()

    Server().run()


def _create_app() -> Any:
    from authgw.app import create_app

    return create_app()


def _dev_defaults(host: str, port: int) -> list[str]:
    """Fill unset settings for a development run; returns what was filled, for the banner."""
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 (a comparison)
    filled = []
    defaults = {
        "AUTHGW_API_KEYS": DEV_API_KEYS,
        "AUTHGW_SECRET_KEY": secrets.token_urlsafe(32),
        "AUTHGW_TWILIO_AUTH_TOKEN": DEV_TWILIO_TOKEN,
        "AUTHGW_PUBLIC_URL": f"http://{shown_host}:{port}",
        "AUTHGW_CALLBACK_NUMBERS": DEV_CALLBACK_NUMBERS,
        "AUTHGW_OPERATORS": DEV_OPERATORS,
        "AUTHGW_WEBHOOK_ALLOW_HTTP": "1",  # a webhook receiver on loopback (the README's)
        "AUTHGW_DEV": "1",  # the demo at /demo/
    }
    for name, value in defaults.items():
        if not os.environ.get(name):
            os.environ[name] = value
            filled.append(name if name == "AUTHGW_SECRET_KEY" else f"{name}={value}")
    return filled


def _at_exit_of_this_process(func: Callable[..., Any], *args: Any) -> None:
    """``atexit`` for the master only: gunicorn's workers are forks that inherit its exit
    handlers, and one worker ending (a reload, a restart) must not stop the embedded store or
    remove the metrics folder under the others."""
    owner = os.getpid()
    atexit.register(lambda: func(*args) if os.getpid() == owner else None)


def serve(args: argparse.Namespace) -> int:
    options = gunicorn_options(args.host, args.port, args.workers, args.worker_class, args.threads)
    if options.get("worker_class") == "gevent":
        # gevent makes the standard library cooperative in each worker, and asks for that to
        # happen before anything imports ssl (gunicorn and Flask do, below), so it is done
        # here, in the master, before they are imported.
        from gevent import monkey

        monkey.patch_all()
    filled = _dev_defaults(args.host, args.port) if args.dev else []
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"authgw: cannot start: {exc}", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        print(f"authgw: {text}", file=sys.stderr, flush=True)

    if filled:
        say("development values (do not use in production):")
        for line in filled:
            say(f"  {line}" + (" (random for this run)" if line == "AUTHGW_SECRET_KEY" else ""))
    if settings.operators:
        say(f"operators: {', '.join(settings.operators)}; every other client is corebank.")
    else:
        say(
            "warning: AUTHGW_OPERATORS is not set: roles are off and every API client may make "
            "every call, operator-only ones included (unlock, delete a customer, remove TOTP)."
        )
    if not settings.redis_url:
        from authgw.embedded import start_embedded

        store = start_embedded()
        _at_exit_of_this_process(store.stop)
        os.environ["AUTHGW_REDIS_URL"] = store.url
        say(f"no AUTHGW_REDIS_URL: started the embedded store ({store.kind}) on loopback.")
        say("state is in memory only and is lost when the gateway stops.")

    from authgw.logs import configure as configure_logs

    configure_logs()
    metrics_dir = tempfile.mkdtemp(prefix="authgw-metrics-")
    _at_exit_of_this_process(shutil.rmtree, metrics_dir, True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    def child_exit(_server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

    options["child_exit"] = child_exit
    if args.deliver:
        _start_deliverer()
        say("a webhook deliverer runs beside the workers (--no-deliver leaves it out)")
    else:
        say("no webhook deliverer here (--no-deliver): run `authgw deliver` somewhere")
    say(f"serving on http://{args.host}:{args.port} with {args.workers} worker(s)")
    run_gunicorn(options, _create_app)
    return 0


def _start_deliverer() -> None:
    """``authgw deliver`` as a child of this process (same environment: store, keys, metrics
    folder), stopped when this process exits; it also stops by itself if this one is killed."""
    child = subprocess.Popen([sys.executable, "-m", "authgw", "deliver", "--parent-pid", str(os.getpid())])

    def stop() -> None:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()

    _at_exit_of_this_process(stop)


def deliver(args: argparse.Namespace) -> int:
    from authgw.logs import configure as configure_logs
    from authgw.outbound.deliverer import build, run_forever

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"authgw: cannot start: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        print(
            "authgw: cannot start: AUTHGW_REDIS_URL is not set (the deliverer needs the gateway's store)",
            file=sys.stderr,
        )
        return 2
    configure_logs()
    deliverer = build(settings)

    def stop(_signum: int, _frame: Any) -> None:
        deliverer.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=args.metrics_host, registry=deliverer.metrics.registry)
    print(f"authgw: deliverer {deliverer.name} running", file=sys.stderr, flush=True)
    run_forever(deliverer, parent=args.parent_pid)
    return 0


def simulate_call(args: argparse.Namespace) -> int:
    from authgw.webhooks.simulate import run

    return int(run(args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="authgw", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway under gunicorn")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--worker-class", default=None, help="gunicorn worker class (default gevent)")
    p.add_argument(
        "--threads", type=int, default=None, help="threads per worker, with --worker-class gthread"
    )
    p.add_argument(
        "--dev", action="store_true", help="fill unset secrets with development values (printed at start-up)"
    )
    p.add_argument(
        "--no-deliver",
        dest="deliver",
        action="store_false",
        help="run no webhook deliverer beside the workers (run `authgw deliver` elsewhere)",
    )
    p.set_defaults(func=serve)

    p = sub.add_parser("deliver", help="run a webhook deliverer alone")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    p.add_argument("--metrics-host", default="127.0.0.1")
    # Given by `authgw serve` to the deliverer it starts: stop when that process is gone.
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=deliver)

    p = sub.add_parser("simulate-call", help="play Twilio's part: sign and post a call")
    p.add_argument("--from", dest="from_", required=True, help="caller ID, any format")
    p.add_argument("--to", required=True, help="the designated number dialled")
    p.add_argument("--digits", default=None, help="keys pressed when the call asks for them")
    p.add_argument("--url", default=None, help="gateway base URL (default AUTHGW_PUBLIC_URL)")
    p.add_argument("--call-sid", default=None, help="CallSid to send (default: a new one)")
    p.set_defaults(func=simulate_call)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
