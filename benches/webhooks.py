#!/usr/bin/env python3
"""Webhook delivery: latency at rest (a change, to its event at the receiver) and the
throughput of the delivery worker against a receiver that answers at once.

Starts the release build on a fresh SQLite database (and, with --pg-url, on a throw-away
PostgreSQL database) with one webhook endpoint: a receiver in this process (asyncio,
answering 204 as soon as a request has arrived). Then:
- latency: N sequential `PATCH /users/me`, each waiting for its `user.updated` event;
  the time from sending the request to the event's arrival;
- throughput: M `PATCH /users/me` from 8 threads as fast as the API takes them; the rate
  the API recorded events at, and the rate the receiver got them (first request to last
  arrival).
Standard library only.

    python3 benches/webhooks.py [--events 100] [--burst 3000] [--bin PATH]
        [--pg-url postgres://postgres@127.0.0.1:5432/]
"""

import argparse
import asyncio
import base64
import http.client
import json
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from live import PASSWORD, RELEASE_BIN, free_port, request, servers


class Receiver:
    """Accepts deliveries on a loopback port and notes when each event arrived."""

    def __init__(self):
        self.port = free_port()
        self.arrived: dict[str, float] = {}  # first_name -> arrival time
        self.count = 0
        self.changed = threading.Condition()
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._listen(), loop).result()

    async def _listen(self):
        await asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)

    async def _serve(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = json.loads(await reader.readexactly(length))
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()
        now = time.perf_counter()
        with self.changed:
            self.count += 1
            self.arrived.setdefault(body["data"].get("first_name", ""), now)
            self.changed.notify_all()

    def wait(self, done, timeout=60.0):
        with self.changed:
            if not self.changed.wait_for(done, timeout):
                raise SystemExit("events did not arrive in time")


def signed_in(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = {"username": "hooked", "email": "hooked@example.com", "password": PASSWORD,
            "password_confirm": PASSWORD}
    status, answer = request(conn, "POST", "/auth/register", body)
    assert status == 201, (status, answer)
    return answer["access_token"]


def latency(port, token, receiver, n, tag):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    waits = []
    for i in range(n):
        name = f"{tag}-rest{i}"
        sent = time.perf_counter()
        status, _ = request(conn, "PATCH", "/users/me", {"first_name": name}, token)
        assert status == 200, status
        receiver.wait(lambda: name in receiver.arrived)
        waits.append((receiver.arrived[name] - sent) * 1000)
    return waits


def burst(port, token, receiver, n, tag):
    before = receiver.count
    local = threading.local()

    def patch(i):
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, _ = request(local.conn, "PATCH", "/users/me", {"first_name": f"{tag}-b{i}"}, token)
        assert status == 200, status

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(patch, range(n)))
    recorded = time.perf_counter() - started
    receiver.wait(lambda: receiver.count - before >= n, timeout=300)
    delivered = max(receiver.arrived[f"{tag}-b{i}"] for i in range(n)) - started
    return n / recorded, n / delivered


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--burst", type=int, default=3000)
    ap.add_argument("--bin", type=Path, default=RELEASE_BIN)
    ap.add_argument("--pg-url")
    args = ap.parse_args()
    receiver = Receiver()
    with tempfile.TemporaryDirectory() as tmp:
        secret = Path(tmp) / "whsec"
        secret.write_text("whsec_" + base64.b64encode(os.urandom(32)).decode() + "\n")
        endpoints = [{"url": f"http://127.0.0.1:{receiver.port}/hook", "secret": str(secret),
                      "events": ["user.updated"]}]
        env = {"LATCHKEY_WEBHOOKS__ENDPOINTS": json.dumps(endpoints)}
        print(f"{'backend':<10} {'at rest p50':>12} {'p90':>8} {'p99':>8} "
              f"{'API events/s':>13} {'delivered/s':>12}")
        for backend, port in servers(args.bin, args.pg_url, extra_env=env):
            token = signed_in(port)
            waits = sorted(latency(port, token, receiver, args.events, backend))
            recorded, delivered = burst(port, token, receiver, args.burst, backend)
            pick = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))]
            print(f"{backend:<10} {statistics.median(waits):>9.2f} ms {pick(0.9):>5.2f} ms "
                  f"{pick(0.99):>5.2f} ms {recorded:>13,.0f} {delivered:>12,.0f}")


if __name__ == "__main__":
    main()
