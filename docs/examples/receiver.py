"""A receiver of authgw's webhooks: verify, de-duplicate by webhook-id, answer 2xx, print.

    WEBHOOK_SECRET=whsec_... .venv/bin/python docs/examples/receiver.py 8001

WEBHOOK_SECRET may hold several secrets, comma-separated, while one is being rotated. The ids
seen are kept in memory here; a real receiver records each id with what it does about the
event, in one transaction (unique on the id), since every event comes at least once.
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from authgw.client import InvalidWebhook, verify_webhook

SECRETS = os.environ["WEBHOOK_SECRET"].split(",")
seen: set[str] = set()
seen_lock = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            event = verify_webhook(self.headers, body, SECRETS)  # the raw bytes, as received
        except InvalidWebhook as refused:
            print(f"refused: {refused}", file=sys.stderr, flush=True)
            self.send_response(400)  # not the gateway's, or replayed late: never acted on
            self.end_headers()
            return
        with seen_lock:
            first = self.headers["webhook-id"] not in seen
            seen.add(self.headers["webhook-id"])
        if first:
            print(json.dumps(event, ensure_ascii=False), flush=True)
        self.send_response(204)  # a duplicate gets 2xx too, or the gateway would retry it
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # stdout is for the events


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8001
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
