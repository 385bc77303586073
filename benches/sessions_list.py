#!/usr/bin/env python3
"""How long `GET /users/me/sessions` takes for a user with many live sessions.

API.md "Sessions" asks for under 20 ms with 1,000 live sessions. This starts the release
build on a fresh SQLite database (and, with --pg-url, on a throw-away PostgreSQL
database), opens N sessions for one user (N logins), then times sequential list requests
from one connection and prints a table of the latencies. Standard library only.

    python3 benches/sessions_list.py [--sessions 1000] [--requests 200] [--bin PATH]
        [--pg-url postgres://postgres@127.0.0.1:5432/]
"""

import argparse
import concurrent.futures
import http.client
import statistics
import sys
import time
from pathlib import Path

from live import PASSWORD, RELEASE_BIN, request, servers


def measure(port: int, sessions: int, requests: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = {"username": "ada", "email": "ada@example.com", "password": PASSWORD, "password_confirm": PASSWORD}
    status, pair = request(conn, "POST", "/auth/register", body)
    assert status == 201, (status, pair)

    def login(_):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, _ = request(c, "POST", "/auth/login", {"username": "ada", "password": PASSWORD})
        assert status == 200, status

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(login, range(sessions - 1)))
    token = pair["access_token"]
    status, listed = request(conn, "GET", "/users/me/sessions", token=token)
    assert status == 200 and len(listed) == sessions, (status, len(listed or []))
    times = []
    for _ in range(requests):
        t = time.perf_counter()
        status, _ = request(conn, "GET", "/users/me/sessions", token=token)
        times.append((time.perf_counter() - t) * 1000)
        assert status == 200
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--bin", type=Path, default=RELEASE_BIN)
    p.add_argument("--pg-url", help="a PostgreSQL server to measure too (a throw-away database is created)")
    args = p.parse_args()
    rows = []
    for backend, port in servers(args.bin, args.pg_url):
        times = measure(port, args.sessions, args.requests)
        q = statistics.quantiles(times, n=100)
        rows.append((backend, statistics.median(times), q[94], q[98], max(times)))
    print(f"GET /users/me/sessions, {args.sessions} live sessions, {args.requests} sequential requests (ms)")
    print(f"{'backend':<10} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    for backend, p50, p95, p99, worst in rows:
        print(f"{backend:<10} {p50:8.2f} {p95:8.2f} {p99:8.2f} {worst:8.2f}")


if __name__ == "__main__":
    sys.exit(main())
