#!/usr/bin/env python3
"""What a second factor costs a login: password-only logins against password + TOTP logins.

Starts the release build on a fresh SQLite database (and, with --pg-url, on a throw-away
PostgreSQL database), creates N users without TOTP and N with it (each enrolled and
confirmed over the API), then logs each in once, sequentially from one connection, and
prints a latency table: the password-only login, and for TOTP users the password step,
the code step and their sum. A code is accepted once per 30-second step and user, hence
one login per user. Standard library only.

    python3 benches/mfa_login.py [--users 100] [--bcrypt-cost 12] [--bin PATH]
        [--pg-url postgres://postgres@127.0.0.1:5432/]
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import statistics
import struct
import sys
import time
from pathlib import Path

from live import PASSWORD, RELEASE_BIN, request, servers


def totp(secret_b32: str, step: int) -> str:
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{binary % 1_000_000:06d}"


def timed(conn, method, path, body=None, token=None):
    t = time.perf_counter()
    status, answer = request(conn, method, path, body, token)
    return (time.perf_counter() - t) * 1000, status, answer


def measure(port: int, users: int):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    plain, enrolled = [], []
    for i in range(users):
        for kind, into in (("plain", plain), ("totp", enrolled)):
            name = f"{kind}{i}"
            body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD,
                    "password_confirm": PASSWORD}
            status, pair = request(conn, "POST", "/auth/register", body)
            assert status == 201, (status, pair)
            if kind == "plain":
                into.append(name)
                continue
            token = pair["access_token"]
            status, enrolment = request(conn, "POST", "/users/me/mfa/totp",
                                        {"current_password": PASSWORD}, token)
            assert status == 200, (status, enrolment)
            step = int(time.time()) // 30
            code = totp(enrolment["secret"], step)
            status, answer = request(conn, "POST", "/users/me/mfa/totp/confirm", {"code": code}, token)
            assert status == 200, (status, answer)
            into.append((name, enrolment["secret"], step))

    password_only, first, second, both = [], [], [], []
    for name in plain:
        ms, status, _ = timed(conn, "POST", "/auth/login", {"username": name, "password": PASSWORD})
        assert status == 200, status
        password_only.append(ms)
    for name, secret, used in enrolled:
        ms1, status, challenge = timed(conn, "POST", "/auth/login", {"username": name, "password": PASSWORD})
        assert status == 200 and challenge["mfa_required"], (status, challenge)
        # A step newer than the confirming one, within the one step of skew allowed.
        step = max(used + 1, int(time.time()) // 30)
        ms2, status, pair = timed(conn, "POST", "/auth/login/mfa",
                                  {"mfa_token": challenge["mfa_token"], "code": totp(secret, step)})
        assert status == 200, (status, pair)
        first.append(ms1)
        second.append(ms2)
        both.append(ms1 + ms2)
    return [("password only", password_only), ("TOTP: password step", first),
            ("TOTP: code step", second), ("TOTP: both steps", both)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--bcrypt-cost", type=int, default=12)
    p.add_argument("--bin", type=Path, default=RELEASE_BIN)
    p.add_argument("--pg-url", help="a PostgreSQL server to measure too (a throw-away database is created)")
    args = p.parse_args()
    tables = [(backend, measure(port, args.users))
              for backend, port in servers(args.bin, args.pg_url, args.bcrypt_cost)]
    print(f"login latency, {args.users} users per kind, bcrypt cost {args.bcrypt_cost}, sequential (ms)")
    print(f"{'backend':<10} {'what':<22} {'p50':>8} {'p95':>8} {'max':>8}")
    for backend, rows in tables:
        for what, times in rows:
            q = statistics.quantiles(times, n=100)
            print(f"{backend:<10} {what:<22} {statistics.median(times):8.2f} {q[94]:8.2f} {max(times):8.2f}")


if __name__ == "__main__":
    sys.exit(main())
