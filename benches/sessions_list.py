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
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Violet-Harbor-Quill-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(conn, method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, (json.loads(data) if data else None)


def start(bin_path: Path, workdir: Path, database_url: str, key: Path | None):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_")}
    env.update({
        "LATCHKEY_SERVER__BIND": f"127.0.0.1:{port}",
        "LATCHKEY_DATABASE__URL": database_url,
        "LATCHKEY_PASSWORD__BCRYPT_COST": "4",
        "LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION": "false",
        "LATCHKEY_THROTTLE__ENABLED": "false",
        "RUST_LOG": "warn",
    })
    if key:
        env["LATCHKEY_JWT__SIGNING_KEY"] = str(key)
    proc = subprocess.Popen([str(bin_path), "serve"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            if request(conn, "GET", "/readyz")[0] == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("latchkey did not become ready")


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
    p.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "latchkey")
    p.add_argument("--pg-url", help="a PostgreSQL server to measure too (a throw-away database is created)")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        backends = [("sqlite", f"sqlite://{work}/bench.db", None, None)]
        if args.pg_url:
            name = f"latchkey_sessions_{os.getpid()}"
            admin = urllib.parse.urlsplit(args.pg_url)
            subprocess.run(["psql", args.pg_url, "-qc", f"CREATE DATABASE {name}"], check=True)
            key = work / "signing.pem"
            subprocess.run([str(args.bin), "keys", "generate", "--algorithm", "ES256", "--out", str(key)],
                           check=True, stdout=subprocess.DEVNULL)
            url = admin._replace(path=f"/{name}").geturl()
            backends.append(("postgres", url, key, name))
        for backend, url, key, dropped in backends:
            proc, port = start(args.bin, work, url, key)
            try:
                times = measure(port, args.sessions, args.requests)
            finally:
                proc.terminate()
                proc.wait()
                if dropped:
                    subprocess.run(["psql", args.pg_url, "-qc", f"DROP DATABASE {dropped}"], check=True)
            q = statistics.quantiles(times, n=100)
            rows.append((backend, statistics.median(times), q[94], q[98], max(times)))
    print(f"GET /users/me/sessions, {args.sessions} live sessions, {args.requests} sequential requests (ms)")
    print(f"{'backend':<10} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    for backend, p50, p95, p99, worst in rows:
        print(f"{backend:<10} {p50:8.2f} {p95:8.2f} {p99:8.2f} {worst:8.2f}")


if __name__ == "__main__":
    sys.exit(main())
