#!/usr/bin/env python3
"""Receive latchkey's webhooks: verify each delivery with the official Standard Webhooks
library, drop duplicates by webhook-id, and print each new event as one JSON line.

    pip install -r requirements.txt
    python receiver.py --port 8001 --secret-file /path/to/whsec
    # or WEBHOOK_SECRET=whsec_... python receiver.py --port 8001

Answers 204 to a verified delivery (also to a duplicate, so that latchkey stops retrying
it), 400 to a missing, bad or expired signature, 413 to a body over 1 MiB. Prints
{"webhook_id": ..., "type": ..., "timestamp": ..., "data": {...}} on stdout for each new
event; rejections and duplicates are logged on stderr.
"""

import argparse
import collections
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

MAX_BODY = 1 << 20  # latchkey's bodies are a few hundred bytes


class SeenIds:
    """The webhook-ids already handled, the most recent `size` of them.

    Delivery is at least once: an event whose 2xx answer did not reach latchkey (a timeout,
    a restart) comes again with the same webhook-id. In a real service, record the id in
    the same database transaction as the work the event causes (a table with a unique
    key), so that a crash cannot separate the two; this in-memory set is the example's
    stand-in.
    """

    def __init__(self, size: int = 100_000):
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, webhook_id: str) -> bool:
        """Records the id; False if it was already there."""
        with self._lock:
            if webhook_id in self._ids:
                self._ids.move_to_end(webhook_id)
                return False
            self._ids[webhook_id] = None
            if len(self._ids) > self._size:
                self._ids.popitem(last=False)
            return True

    def forget(self, webhook_id: str) -> None:
        with self._lock:
            self._ids.pop(webhook_id, None)


def handle(event: dict, webhook_id: str) -> None:
    """The receiver's work. Keep it quick (latchkey waits `webhooks.timeout`, 10 s by
    default, then retries), or queue it and answer at once. Events of one user may arrive
    out of order: order them by the body's `timestamp`."""
    line = {"webhook_id": webhook_id, "type": event.get("type"),
            "timestamp": event.get("timestamp"), "data": event.get("data")}
    print(json.dumps(line, separators=(",", ":")), flush=True)


def make_handler(webhook: Webhook, seen: SeenIds):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, for senders that reuse connections
        timeout = 60  # seconds: a connection idle (or stalled) longer is closed

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("content-length", ""))
            except ValueError:
                self.close_connection = True
                return self.answer(411, "content-length required")
            if length < 0 or length > MAX_BODY:
                self.close_connection = True
                return self.answer(413, "body too large")
            body = self.rfile.read(length)  # the exact bytes: the signature covers them

            try:
                # Checks webhook-id, webhook-timestamp (within 5 minutes of now) and
                # webhook-signature against the raw body, then parses it.
                event = webhook.verify(body, dict(self.headers))
            except (WebhookVerificationError, ValueError) as err:
                # ValueError: a malformed signature header, or a body that is not UTF-8
                # JSON; neither can come from latchkey.
                self.log_message("rejected %s: %s", self.headers.get("webhook-id"), err)
                return self.answer(400, "invalid signature")

            webhook_id = self.headers["webhook-id"]
            if not seen.add(webhook_id):
                self.log_message("duplicate %s ignored", webhook_id)
                return self.answer(204)
            try:
                handle(event, webhook_id)
            except Exception as err:
                # Not done: forget the id and answer 500, so that latchkey's retry is handled.
                seen.forget(webhook_id)
                self.log_message("failed %s: %r", webhook_id, err)
                return self.answer(500, "failed")
            self.answer(204)

        def answer(self, status: int, message: str = "") -> None:
            payload = message.encode()
            self.send_response(status)
            if status != 204:
                self.send_header("content-type", "text/plain; charset=utf-8")
                self.send_header("content-length", str(len(payload)))
            self.end_headers()
            if status != 204:
                self.wfile.write(payload)

        def log_message(self, format: str, *args) -> None:
            # Access lines and rejections on stderr; stdout carries only events.
            sys.stderr.write("receiver: " + (format % args) + "\n")

        def log_request(self, code="-", size="-") -> None:
            pass  # one line per event on stdout is enough

    return Handler


def read_secret(secret_file: str | None) -> str:
    if secret_file:
        with open(secret_file, encoding="utf-8") as f:
            return f.read().strip()
    secret = os.environ.get("WEBHOOK_SECRET", "").strip()
    if not secret:
        raise SystemExit("receiver: give --secret-file PATH or set WEBHOOK_SECRET")
    return secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--secret-file", default=os.environ.get("WEBHOOK_SECRET_FILE"),
                        help="file holding whsec_<base64> (else $WEBHOOK_SECRET)")
    args = parser.parse_args()

    try:
        webhook = Webhook(read_secret(args.secret_file))
    except (ValueError, EmptyWebhookSecretError):
        raise SystemExit("receiver: the secret is not whsec_<base64>") from None
    server = ThreadingHTTPServer((args.host, args.port), make_handler(webhook, SeenIds()))
    print(f"receiver: listening on http://{args.host}:{server.server_port}/",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
