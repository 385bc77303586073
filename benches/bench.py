#!/usr/bin/env python3
"""latchkey's benchmark suite: HTTP throughput and latency with wrk, memory, start-up time,
and the bound of this machine's crypto, on SQLite and on PostgreSQL.

    python3 benches/bench.py            # full: 10 s per scenario, 100,000 seeded users
    python3 benches/bench.py --smoke    # CI: ~1 s per scenario, 1,000 users; exit 1 on errors

Per backend it starts the release build (`target/release/latchkey`, built if missing) on a
fresh database (SQLite in a temporary directory; PostgreSQL: a throw-away database on the
local server, dropped at the end), registers one user through the API, copies its bcrypt
hash into N seeded users (inserted straight into the database), creates a staff user with
`latchkey createsuperuser`, and measures for a fixed duration each:

    register  POST /auth/register (email verification off), a new user per request
    login     POST /auth/login as random seeded users
    refresh   POST /auth/token/refresh, each refresh token sent exactly once
    verify    POST /auth/token/verify {"token": access}, the access tokens of 200 users
              taken in turn (--few-tokens)
    me        GET /users/me, the same way
    verify-many, me-many  the same with 10,000 users' tokens (--many-tokens): more live
              tokens than a small cache holds; the figure should stay within 10% of the
              one with 200
    admin     GET /users?search=user_12&is_active=true&ordering=-date_joined&page_size=20
              as the staff user, over the N seeded users
    mixed     on a restarted server with password.queue_limit=8: logins saturating the
              hashing pool (16 connections; after a 503 a client waits Retry-After, as the
              API asks) while verify and /users/me run (8 connections each)
    mixed-flood  the same with login clients that retry at once (no back-off): a flood of
              503s on top of the saturated pool

Errors are non-2xx responses and socket errors/timeouts; in the mixed scenario a 503
`service_unavailable` with Retry-After is the expected answer of a full hashing queue.
Also reported: idle RSS (after warm-up), the server's peak RSS (VmHWM, reset before each
scenario) and start-up-to-ready time on an existing database (/readyz polled every ~1 ms).
The bound comes from benches/bound.rs (the service's own bcrypt and jsonwebtoken crates):
bcrypt hashes/s at the configured cost on all cores, ES256 signatures and verifications/s.

Conditions (see --help): 32 connections, wrk with 2 threads on the same machine, bcrypt
cost 10, throttling off, RUST_LOG=warn. Needs python3 (stdlib only), wrk (installed with
apt-get when missing and run as root), cargo, and for PostgreSQL psql with a server that
trusts postgres@127.0.0.1 (--pg-url). Results: a Markdown table on stdout and JSON in
bench-results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
LUA_DIR = ROOT / "benches" / "wrk"
RESULTS_DIR = ROOT / "bench-results"

THROTTLE_MODES = {
    "off": "throttling off",
    "local": "throttle counting in memory (limits never reached)",
    "redis": "throttle counting in Redis (limits never reached)",
}
SCENARIOS = ["register", "login", "refresh", "verify", "me", "admin", "verify-many", "me-many", "mixed", "mixed-flood"]
MIXED = ("mixed", "mixed-flood")
PASSWORD = "Correct-horse-battery-9"  # every seeded user's, and the bench users'
ADMIN = ("admin", "admin@example.com", "Staff-bench-password-7")
ADMIN_PATH = "/users?search=user_12&is_active=true&ordering=-date_joined&page_size=20"
MIB = 1024.0  # VmRSS and friends are in KiB

# The targets, printed next to the figures. (kind, comparison, value)
TARGETS: dict[str, Any] = {
    "refresh": {"sqlite": ("rps", ">=", 7500), "postgres": ("rps", ">=", 3500)},
    "verify": {"sqlite": ("rps", ">=", 25000), "postgres": ("rps", ">=", 18000)},
    "me": {"sqlite": ("rps", ">=", 20000), "postgres": ("rps", ">=", 14000)},
    "verify-many": ("of", "verify", 0.9),
    "me-many": ("of", "me", 0.9),
    "admin": ("p50", "<=", 25.0),
    "login": ("bound", ">=", 0.95),
    "mixed/me": ("p99", "<", 10.0),
    "mixed-flood/me": ("p99", "<", 10.0),
}
IDLE_RSS_TARGET_MIB = 15.0
PEAK_RSS_TARGET_MIB = 64.0
STARTUP_TARGET_MS = 200.0

FIRST_NAMES = ["Ada", "Grace", "Alan", "Barbara", "Edsger", "Frances", "Donald", "Radia"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Liskov", "Dijkstra", "Allen", "Knuth", "Perlman"]


class BenchError(Exception):
    """A step of the benchmark failed (not a slow figure: something that must not happen)."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Tools: wrk, the release build, the bound program


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError("wrk is missing: install it (Debian: apt-get install -y wrk)")
    log("wrk is missing: apt-get install -y wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=False)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("could not install wrk with apt-get")
    return found


def ensure_binary(path: Path, build: bool) -> Path:
    if build or not path.exists():
        log("cargo build --release --locked")
        rc = subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT).returncode
        if rc != 0:
            raise BenchError("cargo build --release --locked failed")
    if not path.exists():
        raise BenchError(f"{path} does not exist")
    return path


def build_bound(profile: str) -> Path:
    """Builds benches/bound.rs and returns the executable. `release` is the real bound
    (`cargo bench`, optimized); `debug` only checks that it still runs (quick in CI, where
    `cargo test` has built the same dependencies)."""
    command = ["cargo", "bench" if profile == "release" else "test", "--no-run", "--locked"]
    command += ["--bench", "bound", "--message-format=json-render-diagnostics"]
    log(" ".join(command[:-1]))
    proc = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed")
    for line in proc.stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        target = message.get("target") or {}
        if message.get("executable") and target.get("name") == "bound":
            return Path(message["executable"])
    raise BenchError("cargo did not report the bound executable")


def measure_bound(exe: Path, cost: int, seconds: float, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="latchkey-bound-") as tmp:
        out = Path(tmp) / "bound.json"
        env = dict(os.environ, BOUND_COST=str(cost), BOUND_SECONDS=str(seconds))
        env.update(BOUND_THREADS=str(threads), BOUND_OUT=str(out))
        # The arguments select the test when Cargo built it with the default harness; with
        # `harness = false` (its own main) they are ignored.
        args = [str(exe), "--exact", "bound", "--nocapture", "--test-threads", "1"]
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not out.exists():
            raise BenchError(f"bound failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return json.loads(out.read_text())


# ---------------------------------------------------------------------------------------
# HTTP helpers


def call(
    port: int,
    method: str,
    path: str,
    body: dict | None = None,
    token: str | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        status, response_headers = response.status, dict(response.getheaders())
    finally:
        conn.close()
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw.decode(errors="replace")
    return status, response_headers, payload


def cache_lookups(port: int) -> dict[str, float]:
    """The verified-token cache's hits and misses so far, from /metrics."""
    status, _, text = call(port, "GET", "/metrics")
    counts = {"hit": 0.0, "miss": 0.0}
    if status == 200 and isinstance(text, str):
        for line in text.splitlines():
            for outcome in counts:
                if line.startswith(f'latchkey_verified_token_cache_total{{outcome="{outcome}"}} '):
                    counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts


def expect(port: int, method: str, path: str, status: int, **kwargs: Any) -> Any:
    got, _, payload = call(port, method, path, **kwargs)
    if got != status:
        raise BenchError(f"{method} {path}: expected {status}, got {got}: {payload}")
    return payload


def login(port: int, username: str, password: str = PASSWORD) -> dict[str, Any]:
    body = {"username": username, "password": password}
    return expect(port, "POST", "/auth/login", 200, body=body)


def is_ready(port: int) -> bool:
    """One GET /readyz on a fresh connection; False while nothing listens."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = sock.recv(64)
        return head.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------
# The server process


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... of /proc/<pid>/status, in KiB."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key.startswith("Vm") or key == "Threads":
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


class Server:
    def __init__(self, binary: Path, env: dict[str, str], workdir: Path, log_path: Path):
        self.binary, self.env, self.workdir, self.log_path = binary, env, workdir, log_path
        self.port = int(env["LATCHKEY_SERVER__BIND"].rsplit(":", 1)[1])
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> float:
        """Starts the server and polls /readyz every ~1 ms; milliseconds until ready."""
        with open(self.log_path, "ab") as log_file:
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                [str(self.binary), "serve"],
                env=self.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        while True:
            if is_ready(self.port):
                return (time.perf_counter() - started) * 1000.0
            if self.proc.poll() is not None:
                raise BenchError(
                    f"server exited with {self.proc.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            if time.perf_counter() - started > timeout:
                self.kill()
                raise BenchError(f"server not ready after {timeout:.0f} s:\n" + self.log_tail())
            time.sleep(0.001)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def reset_peak(self) -> bool:
        """Resets VmHWM (Linux: writing 5 to clear_refs), so each scenario has its own peak."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM (graceful drain); the exit code, which the contract says is 0."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return -9
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# ---------------------------------------------------------------------------------------
# Databases and seeding


def uuid7(ms: int) -> str:
    rand = secrets.randbits(74)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def seed_rows(count: int, password_hash: str) -> list[tuple]:
    """user_1 .. user_<count>: one a second, the newest a second ago; every tenth inactive
    (so the is_active filter filters), every third has logged in."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    start = now - dt.timedelta(seconds=count + 60)
    rows = []
    for i in range(1, count + 1):
        joined = start + dt.timedelta(seconds=i, microseconds=i % 1000 * 1000)
        active = i % 10 != 0
        last_login = joined + dt.timedelta(seconds=30) if i % 3 == 0 else None
        epoch_ms = int(joined.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
        rows.append((
            uuid7(epoch_ms), f"user_{i}", f"user_{i}", f"user_{i}@example.com",
            f"user_{i}@example.com", password_hash, FIRST_NAMES[i % len(FIRST_NAMES)],
            LAST_NAMES[i // 7 % len(LAST_NAMES)], "", active, False, active, False, "{}",
            joined, last_login,
        ))
    return rows


COLUMNS = (
    "id, username, username_key, email, email_key, password_hash, first_name, last_name, "
    "bio, is_active, is_staff, email_verified, approval_pending, claims, date_joined, last_login"
)


def db_time(value: dt.datetime | None) -> str | None:
    # What diesel writes for a NaiveDateTime with microseconds.
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class Database:
    name: str  # "sqlite" or "postgres"
    url: str
    env: dict[str, str]
    query: Callable[[str], str]  # one value of a one-row query
    seed: Callable[[list[tuple]], None]
    drop: Callable[[], None] = lambda: None


def sqlite_database(tmp: Path) -> Database:
    path = tmp / "latchkey.db"

    def query(sql: str) -> str:
        conn = sqlite3.connect(path, timeout=30)
        try:
            with conn:  # commits a write
                row = conn.execute(sql).fetchone()
        finally:
            conn.close()
        return "" if row is None else str(row[0])

    def seed(rows: list[tuple]) -> None:
        conn = sqlite3.connect(path, timeout=30)
        try:
            with conn:
                conn.executemany(
                    f"INSERT INTO users ({COLUMNS}) VALUES ({', '.join('?' * 16)})",
                    [(*r[:14], db_time(r[14]), db_time(r[15])) for r in rows],
                )
        finally:
            conn.close()

    return Database("sqlite", f"sqlite://{path}", {}, query, seed)


def psql(url: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise BenchError(f"psql {' '.join(args)[:200]}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def with_database(base: str, name: str) -> str:
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def postgres_database(tmp: Path, base_url: str, binary: Path) -> Database:
    if not shutil.which("psql"):
        raise BenchError("psql is missing (PostgreSQL client), needed for --backends postgres")
    admin = with_database(base_url, "postgres")
    name = f"latchkey_bench_{os.getpid()}_{secrets.token_hex(3)}"
    psql(admin, "-c", f'CREATE DATABASE "{name}"')
    url = with_database(base_url, name)
    key = tmp / "signing.pem"
    keygen = [str(binary), "keys", "generate", "--algorithm", "ES256", "--out", str(key)]
    proc = subprocess.run(keygen, capture_output=True, text=True)
    if proc.returncode != 0:
        psql(admin, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        raise BenchError(f"latchkey keys generate failed: {proc.stderr.strip()}")

    def seed(rows: list[tuple]) -> None:
        def csv_field(v: Any) -> str:
            if v is None:
                return ""
            if isinstance(v, bool):
                return "t" if v else "f"
            if isinstance(v, dt.datetime):
                return db_time(v) or ""
            text = str(v)
            return '"' + text.replace('"', '""') + '"' if text == "" or "," in text or '"' in text else text

        data = "\n".join(",".join(csv_field(v) for v in row) for row in rows) + "\n"
        copy = f"\\copy users ({COLUMNS}) FROM STDIN WITH (FORMAT csv)"
        psql(url, "-c", copy, stdin=data)
        # What autovacuum does shortly after a bulk load anyway.
        psql(url, "-c", "ANALYZE users")

    def drop() -> None:
        psql(admin, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return Database(
        "postgres",
        url,
        {"LATCHKEY_JWT__SIGNING_KEY": str(key)},
        lambda sql: psql(url, "-c", sql),
        seed,
        drop,
    )


# ---------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Result:
    backend: str
    scenario: str
    connections: int
    duration_s: float
    requests: int = 0
    rps: float = 0.0
    ok_rps: float = 0.0  # 2xx responses per second (= rps unless statuses were counted)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0
    statuses: dict[str, int] | None = None
    expected_503: int = 0
    unexpected: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    peak_rss_kib: int | None = None
    bound: float | None = None
    problems: list[str] = field(default_factory=list)


def wrk_command(wrk: str, script: str, port: int, conns: int, threads: int, secs: int, timeout: int) -> list[str]:
    return [
        wrk, f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--timeout", f"{timeout}s",
        "-s", str(LUA_DIR / script), f"http://127.0.0.1:{port}",
    ]


def wrk_env(count_status: bool, threads: int, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ, BENCH_LUA=str(LUA_DIR), BENCH_STATUS="1" if count_status else "0")
    env.update(BENCH_THREADS=str(threads), BENCH_PASSWORD=PASSWORD, **extra)
    return env


def parse_wrk(output: str, stderr: str, returncode: int) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise BenchError(f"wrk exited with {returncode} without a result:\n{output[-1500:]}\n{stderr[-1500:]}")


def to_result(
    raw: dict[str, Any], backend: str, scenario: str, conns: int, expect_503: bool = False
) -> Result:
    lat = raw.get("latency_us") or {}
    errors = raw.get("errors") or {}
    duration = (raw.get("duration_us") or 0) / 1e6
    r = Result(backend, scenario, conns, round(duration, 2), requests=int(raw.get("requests") or 0))
    r.rps = r.requests / duration if duration else 0.0
    r.p50_ms, r.p99_ms = (lat.get("p50") or 0) / 1000, (lat.get("p99") or 0) / 1000
    r.p999_ms, r.max_ms = (lat.get("p999") or 0) / 1000, (lat.get("max") or 0) / 1000
    r.socket_errors = {k: int(errors.get(k) or 0) for k in ("connect", "read", "write", "timeout")}
    r.extra = raw.get("extra") or {}
    if raw.get("counted"):
        r.statuses = {k: int(v) for k, v in sorted((raw.get("statuses") or {}).items())}
        r.non_2xx = sum(v for k, v in r.statuses.items() if not 200 <= int(k) < 300)
        ok = sum(v for k, v in r.statuses.items() if 200 <= int(k) < 300)
        r.ok_rps = ok / duration if duration else 0.0
    else:
        r.non_2xx = int(errors.get("status") or 0)
        r.ok_rps = r.rps
    if expect_503:
        r.expected_503 = int(r.extra.get("503_as_promised") or 0)
    r.unexpected = r.non_2xx - r.expected_503 + sum(r.socket_errors.values())
    if r.requests == 0:
        r.problems.append("no request completed")
    if r.unexpected:
        r.problems.append(f"{r.unexpected} unexpected errors ({describe_errors(r)})")
    if r.extra.get("503_unpromised"):
        r.problems.append(f"{r.extra['503_unpromised']} responses 503 without Retry-After/code")
    if r.extra.get("starved"):
        r.problems.append(f"refresh-token pool ran dry {r.extra['starved']} times")
    return r


def describe_errors(r: Result) -> str:
    parts = []
    if r.statuses is not None:
        for k, v in r.statuses.items():
            v -= r.expected_503 if k == "503" else 0
            if v and not 200 <= int(k) < 300:
                parts.append(f"{k}: {v}")
    elif r.non_2xx:
        parts.append(f"non-2xx: {r.non_2xx}")
    parts += [f"{k}: {v}" for k, v in r.socket_errors.items() if v]
    return ", ".join(parts) or "none"


@dataclass
class Config:
    smoke: bool
    duration: int
    hash_duration: int  # register and login: their responses also fill the refresh-token pool
    mixed_duration: int
    connections: int
    threads: int
    users: int
    cost: int
    count_status: bool
    timeout: int
    wrk: str
    binary: Path
    pg_url: str
    only: list[str]
    bound: dict[str, Any] | None
    startup_runs: int
    throttle: str  # off, local or redis
    redis_url: str
    few_tokens: int  # distinct users' access tokens in verify and me
    many_tokens: int  # in verify-many and me-many
    server_env: dict[str, str]  # --server-env: settings every server of the run gets


class BackendRun:
    """One backend: database, server, seeding, scenarios, start-up, mixed load."""

    def __init__(self, cfg: Config, db: Database, tmp: Path):
        self.cfg, self.db, self.tmp = cfg, db, tmp
        self.results: list[Result] = []
        self.facts: dict[str, Any] = {"backend": db.name}
        self.problems: list[str] = []
        self.run_id = secrets.token_hex(3)
        self._fast_hash: str | None = None
        self.token_files: dict[int, tuple[Path, float]] = {}

    def env(self, port: int, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_")}
        env.pop("DATABASE_URL", None)
        env.update(
            RUST_LOG="warn",
            DATABASE_URL=self.db.url,
            LATCHKEY_SERVER__BIND=f"127.0.0.1:{port}",
            LATCHKEY_SERVER__PUBLIC_URL=f"http://127.0.0.1:{port}",
            LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION="false",
            LATCHKEY_PASSWORD__BCRYPT_COST=str(self.cfg.cost),
            LATCHKEY_THROTTLE__ENABLED="false",
            **self.db.env,
        )
        if self.cfg.throttle != "off":
            # Limits no scenario reaches: what is measured is the cost of counting.
            unlimited = "1000000/second"
            env.update(
                LATCHKEY_THROTTLE__ENABLED="true",
                LATCHKEY_THROTTLE__ANON=unlimited,
                LATCHKEY_THROTTLE__USER=unlimited,
                LATCHKEY_THROTTLE__LOGIN=unlimited,
                LATCHKEY_THROTTLE__MFA=unlimited,
            )
        if self.cfg.throttle == "redis":
            env["LATCHKEY_THROTTLE__REDIS_URL"] = self.cfg.redis_url
        env.update(self.cfg.server_env)
        env.update(overrides)
        return env

    def server(self, name: str, **overrides: str) -> Server:
        port = free_port()
        return Server(self.cfg.binary, self.env(port, **overrides), self.tmp, self.tmp / f"{name}.log")

    def stop(self, server: Server, what: str) -> None:
        rc = server.stop()
        if rc != 0:
            self.problems.append(f"{what}: server exited with {rc} on SIGTERM:\n{server.log_tail(10)}")

    # -- set-up -------------------------------------------------------------------------

    def seed(self, server: Server) -> None:
        port = server.port
        body = {
            "username": "benchseed", "email": "benchseed@example.com",
            "password": PASSWORD, "password_confirm": PASSWORD,
        }
        expect(port, "POST", "/auth/register", 201, body=body)
        password_hash = self.db.query("SELECT password_hash FROM users WHERE username_key = 'benchseed'")
        if not password_hash.startswith("bcrypt_sha256$"):
            raise BenchError(f"unexpected password hash format: {password_hash[:20]}")
        started = time.perf_counter()
        self.db.seed(seed_rows(self.cfg.users, password_hash))
        self.facts["seed_s"] = round(time.perf_counter() - started, 2)
        count = int(self.db.query("SELECT count(*) FROM users"))
        if count != self.cfg.users + 1:
            raise BenchError(f"seeding: {count} users in the database, expected {self.cfg.users + 1}")

        username, email, password = ADMIN
        env = server.env
        proc = subprocess.run(
            [str(self.cfg.binary), "createsuperuser", "--username", username, "--email", email, "--password-stdin"],
            input=password + "\n", env=env, cwd=self.tmp, capture_output=True, text=True, timeout=120,
        )
        if proc.returncode != 0:
            raise BenchError(f"createsuperuser failed: {proc.stderr.strip()}")

    def harvest_file(self, scenario: str) -> str:
        return str(self.tmp / f"harvest-{scenario}.txt")

    def refresh_tokens(self, port: int, count: int) -> Path:
        """`count` live refresh tokens (one family each): those the register and login
        scenarios received (each used once, here), topped up with logins of active users."""
        tokens: list[str] = []
        for scenario in ("login", "register"):
            path = Path(self.harvest_file(scenario))
            if path.exists():
                tokens += [t for t in path.read_text().split() if t][: count - len(tokens)]
                path.unlink()
        missing = count - len(tokens)
        if missing > 0:
            names = [f"user_{i}" for i in range(1, self.cfg.users + 1) if i % 10 != 0][:missing]
            names += ["benchseed"] * (missing - len(names))
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                tokens += [p["refresh_token"] for p in pool.map(lambda n: login(port, n), names)]
        self.facts["refresh_pool"] = {"tokens": count, "logged_in_for_it": max(0, missing)}
        path = self.tmp / f"tokens-{secrets.token_hex(3)}.txt"
        path.write_text("".join(t + "\n" for t in tokens))
        return path

    def fast_hash(self) -> str:
        """A bcrypt hash of PASSWORD at cost 4, made by the binary itself (createsuperuser,
        whose row is then removed): logging in 10,000 users at the benchmark's cost would
        take minutes."""
        if self._fast_hash is None:
            name = "benchfast"
            env = dict(self.env(free_port()), LATCHKEY_PASSWORD__BCRYPT_COST="4")
            proc = subprocess.run(
                [str(self.cfg.binary), "createsuperuser", "--username", name, "--email", f"{name}@example.com",
                 "--password-stdin"],
                input=PASSWORD + "\n", env=env, cwd=self.tmp, capture_output=True, text=True, timeout=120,
            )
            if proc.returncode != 0:
                raise BenchError(f"createsuperuser (cost 4) failed: {proc.stderr.strip()}")
            self._fast_hash = self.db.query(f"SELECT password_hash FROM users WHERE username_key = '{name}'")
            self.db.query(f"DELETE FROM users WHERE username_key = '{name}'")
        return self._fast_hash

    def set_hash(self, names: list[str], password_hash: str) -> None:
        """Sets the hash of the users `names` only (an UPDATE of every row would leave
        PostgreSQL's tables and indexes bloated for the scenarios after it)."""
        for start in range(0, len(names), 1000):
            listed = ",".join(f"'{n}'" for n in names[start:start + 1000])
            self.db.query(f"UPDATE users SET password_hash = '{password_hash}' WHERE username_key IN ({listed})")

    def access_tokens(self, server: Server, count: int) -> Path:
        """A file of `count` access tokens of distinct active seeded users, at most five
        minutes old (they live 15). The users log in with a cost-4 copy of their hash, which
        is put back afterwards."""
        cached = self.token_files.get(count)
        if cached and time.monotonic() - cached[1] < 300:
            return cached[0]
        names = [f"user_{i}" for i in range(1, self.cfg.users + 1) if i % 10 != 0][:count]
        if len(names) < count:
            raise BenchError(f"{count} distinct users wanted, {len(names)} active seeded users")
        fast = self.fast_hash()
        seeded = self.db.query("SELECT password_hash FROM users WHERE username_key = 'user_1'")
        self.set_hash(names, fast)
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                tokens = list(pool.map(lambda n: login(server.port, n)["access_token"], names))
        finally:
            self.set_hash(names, seeded)
        # Steady state, as when each client presents its token on every request: every
        # token has been seen twice (the cache admits a token on its second sight).
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda t: expect(server.port, "GET", "/users/me", 200, token=t), tokens * 2))
        path = self.tmp / f"access-{count}.txt"
        path.write_text("".join(t + "\n" for t in tokens))
        self.token_files[count] = (path, time.monotonic())
        self.facts[f"access_tokens_{count}"] = len(set(tokens))
        return path

    def warm_up(self, port: int, access: str, staff: str) -> None:
        for _ in range(50):
            expect(port, "POST", "/auth/token/verify", 200, body={"token": access})
            expect(port, "GET", "/users/me", 200, token=access)
        for _ in range(5):
            expect(port, "GET", ADMIN_PATH, 200, token=staff)
        pair = login(port, "user_1")
        expect(port, "POST", "/auth/token/refresh", 200, body={"refresh_token": pair["refresh_token"]})

    def warm_pool(self, server: Server, access: str) -> None:
        """1 s of GET /users/me at full concurrency, not measured: the connection pool opens
        connections lazily (most of them under the first load), which is start-up, not
        steady state. Skipped in smoke runs."""
        if self.cfg.smoke:
            return
        cmd = wrk_command(self.cfg.wrk, "static.lua", server.port, self.cfg.connections, 1, 1, 5)
        env = wrk_env(False, 1, {"BENCH_PATH": "/users/me", "BENCH_ACCESS": access})
        subprocess.run(cmd, env=env, capture_output=True, timeout=60)

    # -- measuring -----------------------------------------------------------------------

    def run_wrk(
        self, server: Server, scenario: str, script: str, env: dict[str, str],
        timeout: int | None = None, count_status: bool | None = None, duration: int | None = None,
    ) -> Result:
        cfg = self.cfg
        duration = duration or cfg.duration
        count = cfg.count_status if count_status is None else count_status
        timeout = timeout or cfg.timeout
        threads = max(1, min(cfg.threads, cfg.connections))
        cmd = wrk_command(cfg.wrk, script, server.port, cfg.connections, threads, duration, timeout)
        reset = server.reset_peak()
        proc = subprocess.run(
            cmd, env=wrk_env(count, threads, env), capture_output=True, text=True,
            timeout=duration + timeout + 120,
        )
        result = to_result(parse_wrk(proc.stdout, proc.stderr, proc.returncode), self.db.name, scenario, cfg.connections)
        if not server.alive():
            result.problems.append(f"server died (exit {server.proc.returncode}):\n{server.log_tail(10)}")
        else:
            status = server.status()
            result.peak_rss_kib = status.get("VmHWM") if reset else None
            self.facts["peak_rss_kib"] = max(self.facts.get("peak_rss_kib") or 0, status.get("VmHWM", 0))
        return result

    def settle(self, port: int, after_hashing: bool) -> None:
        """Lets the hashing queue drain after wrk stops (the server still works through the
        logins wrk gave up on), so it does not disturb the next scenario: one more login
        queues behind them and returns once they have (nearly) all run."""
        time.sleep(0.2)
        if not after_hashing:
            return
        deadline = time.monotonic() + 60
        while True:
            status, headers, payload = call(port, "POST", "/auth/login", body={"username": "user_1", "password": PASSWORD})
            if status == 200:
                return
            if status != 503 or time.monotonic() > deadline:
                raise BenchError(f"login after the scenario: {status} {payload}")
            time.sleep(float(headers.get("Retry-After") or headers.get("retry-after") or 1))

    def run(self) -> None:
        cfg, only = self.cfg, self.cfg.only
        server = self.server("server")
        try:
            self.facts["startup_fresh_ms"] = round(server.start(), 1)
            log(f"{self.db.name}: seeding {cfg.users} users")
            self.seed(server)
            port = server.port
            access = login(port, "user_1")["access_token"]
            staff = login(port, ADMIN[0], ADMIN[2])["access_token"]
            self.warm_up(port, access, staff)
            time.sleep(0.5)
            self.facts["idle_rss_kib"] = server.status().get("VmRSS")
            self.facts["idle_threads"] = server.status().get("Threads")
            self.warm_pool(server, access)

            issued = time.monotonic()
            for scenario in [s for s in SCENARIOS if s in only and s not in MIXED]:
                log(f"{self.db.name}: {scenario}")
                if time.monotonic() - issued > 300:  # access tokens live 15 minutes
                    access = login(port, "user_1")["access_token"]
                    staff = login(port, ADMIN[0], ADMIN[2])["access_token"]
                    issued = time.monotonic()
                result = self.scenario(server, scenario, access, staff)
                self.results.append(result)
                self.settle(port, scenario in ("register", "login"))
                if not server.alive():
                    raise BenchError(f"server died during {scenario}")
            self.stop(server, "after the scenarios")
            self.startup()
            if any(s in only for s in MIXED):
                self.mixed([s for s in MIXED if s in only])
        finally:
            server.kill()

    def scenario(self, server: Server, scenario: str, access: str, staff: str) -> Result:
        cfg = self.cfg
        if scenario == "register":
            env = {"BENCH_RUN": self.run_id, "BENCH_HARVEST": self.harvest_file(scenario)}
            return self.run_wrk(server, scenario, "register.lua", env, 15, True, cfg.hash_duration)
        if scenario == "login":
            env = {"BENCH_USERS": str(cfg.users), "BENCH_HARVEST": self.harvest_file(scenario)}
            return self.run_wrk(server, scenario, "login.lua", env, 15, True, cfg.hash_duration)
        if scenario == "refresh":
            # One token per connection (each gets its successor back) and a few to spare.
            tokens = self.refresh_tokens(server.port, cfg.connections + max(4, cfg.connections // 4))
            return self.run_wrk(server, scenario, "refresh.lua", {"BENCH_TOKENS": str(tokens)}, count_status=True)
        if scenario in ("verify", "me", "verify-many", "me-many"):
            many = scenario.endswith("-many")
            tokens = self.access_tokens(server, cfg.many_tokens if many else cfg.few_tokens)
            env = {"BENCH_TOKENS": str(tokens), "BENCH_PATH": "/users/me"}
            if scenario.startswith("verify"):
                env.update(BENCH_METHOD="POST", BENCH_PATH="/auth/token/verify", BENCH_TOKEN_IN_BODY="1")
            before = cache_lookups(server.port)
            result = self.run_wrk(server, scenario, "tokens.lua", env)
            after = cache_lookups(server.port)
            hits, misses = (after[k] - before[k] for k in ("hit", "miss"))
            if hits + misses:
                result.extra["cache_hit_ratio"] = hits / (hits + misses)
            return result
        if scenario == "admin":
            # A heavy query: a longer timeout, so the percentiles show how slow it really is.
            env = {"BENCH_PATH": ADMIN_PATH, "BENCH_ACCESS": staff}
            return self.run_wrk(server, scenario, "static.lua", env, timeout=15)
        raise BenchError(f"unknown scenario {scenario}")

    def startup(self) -> None:
        """Start-up to ready on the existing database, a few times; the median is reported."""
        times = []
        for n in range(self.cfg.startup_runs):
            server = self.server(f"startup-{n}")
            try:
                times.append(server.start())
                if n == 0:
                    # The first restart also shows the idle footprint without any warm-up.
                    time.sleep(0.2)
                    self.facts["cold_rss_kib"] = server.status().get("VmRSS")
            finally:
                self.stop(server, "start-up measurement")
        self.facts["startup_existing_ms"] = [round(t, 1) for t in times]
        self.facts["startup_existing_median_ms"] = round(statistics.median(times), 1)

    def mixed(self, variants: list[str]) -> None:
        """Logins saturate a small hashing queue while verify and /users/me go on: `mixed`
        with login clients that honour Retry-After, `mixed-flood` with clients that retry
        at once. One restarted server (password.queue_limit=8) serves both in turn."""
        cfg = self.cfg
        server = self.server("mixed", LATCHKEY_PASSWORD__QUEUE_LIMIT="8")
        try:
            server.start()
            self.warm_pool(server, login(server.port, "user_1")["access_token"])
            for n, variant in enumerate(variants):
                if n:
                    self.settle(server.port, True)
                log(f"{self.db.name}: {variant} (password.queue_limit=8)")
                access = login(server.port, "user_1")["access_token"]
                self.mixed_once(server, variant, access)
            self.stop(server, "after the mixed scenario")
        finally:
            server.kill()

    def mixed_once(self, server: Server, variant: str, access: str) -> None:
        cfg = self.cfg
        login_conns = max(1, cfg.connections // 2)
        other = max(1, (cfg.connections - login_conns) // 2)
        secs = cfg.mixed_duration
        honour = "1" if variant == "mixed" else "0"
        jobs = {
            # A login waits for at most queue_limit + hash_concurrency hashes, but the hash
            # threads run at nice 10 and yield the CPU to the other requests.
            "login": ("login.lua", login_conns, 15, True,
                      {"BENCH_USERS": str(cfg.users), "BENCH_HONOUR_RETRY_AFTER": honour}),
            "verify": ("static.lua", other, cfg.timeout, cfg.count_status, {
                "BENCH_METHOD": "POST", "BENCH_PATH": "/auth/token/verify", "BENCH_NO_AUTH": "1",
                "BENCH_BODY": json.dumps({"token": access})}),
            "me": ("static.lua", other, cfg.timeout, cfg.count_status, {"BENCH_PATH": "/users/me", "BENCH_ACCESS": access}),
        }
        reset = server.reset_peak()
        procs = {}
        for name, (script, conns, timeout, count, env) in jobs.items():
            cmd = wrk_command(cfg.wrk, script, server.port, conns, 1, secs, timeout)
            procs[name] = subprocess.Popen(
                cmd, env=wrk_env(count, 1, env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        outputs = {name: proc.communicate(timeout=secs + 120) for name, proc in procs.items()}
        if not server.alive():
            raise BenchError(f"server died during {variant}:\n{server.log_tail(10)}")
        peak = server.status().get("VmHWM")
        self.facts["peak_rss_kib"] = max(self.facts.get("peak_rss_kib") or 0, peak or 0)
        for name, (out, err) in outputs.items():
            raw = parse_wrk(out, err, procs[name].returncode)
            result = to_result(raw, self.db.name, f"{variant}/{name}", jobs[name][1], expect_503=name == "login")
            result.peak_rss_kib = peak if reset else None
            self.results.append(result)


# ---------------------------------------------------------------------------------------
# Report


def best_rate(bound: dict[str, Any], key: str) -> float:
    """The larger of the all-core rate and cores x the one-core rate: on a machine that is
    busy with something else the one-core figure is the less disturbed, and a bound should
    not be too low."""
    return max(bound[key], bound["threads"] * bound[key + "_one_thread"])


def bound_for(scenario: str, bound: dict[str, Any] | None) -> float | None:
    if not bound:
        return None
    hashes, sign, verify = (best_rate(bound, k) for k in ("bcrypt_per_s", "es256_sign_per_s", "es256_verify_per_s"))
    name = scenario.split("/")[-1]
    if name in ("register", "login"):
        return hashes
    if name == "refresh":  # sign an access token (the refresh token is HS256: an HMAC)
        return sign
    if name in ("verify", "me", "verify-many", "me-many"):
        return verify
    return None


def target_for(r: Result, results: list[Result]) -> tuple[str, bool | None]:
    spec = TARGETS.get(r.scenario)
    if isinstance(spec, dict):
        spec = spec.get(r.backend)
    if not spec:
        return "", None
    kind, op, value = spec
    if kind == "of":  # within a fraction of another scenario's rate on the same backend
        base = next((b for b in results if b.scenario == op and b.backend == r.backend), None)
        if base is None or not base.ok_rps:
            return f"≥ {value:.0%} of {op}", None
        hit = r.extra.get("cache_hit_ratio")
        hits = f"; cache hits {hit:.1%}" if hit is not None else ""
        return f"{r.ok_rps / base.ok_rps:.0%} of {op} (≥ {value:.0%}){hits}", r.ok_rps / base.ok_rps >= value
    if kind == "p50":
        return f"p50 ≤ {value:g} ms", r.p50_ms <= value
    if kind == "rps":
        return f"≥ {value:,} req/s", r.ok_rps >= value
    if kind == "p99":
        return f"p99 < {value:g} ms", r.p99_ms < value
    if kind == "bound":
        if r.bound is None:
            return f"≥ {value:.0%} of bound", None
        return f"≥ {value:.0%} of bound", r.ok_rps / r.bound >= value
    return "", None


def mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


def mib(kib: int | None) -> str:
    return "—" if not kib else f"{kib / MIB:.1f}"


def errors_cell(r: Result) -> str:
    cell = str(r.unexpected)
    if r.expected_503:
        cell += f" (+{r.expected_503:,} × 503 expected)"
    if r.unexpected:
        cell += f" [{describe_errors(r)}]"
    return cell


def report(cfg: Config, runs: list[BackendRun], meta: dict[str, Any]) -> str:
    out = []
    b = cfg.bound
    out.append(f"## latchkey benchmark ({'smoke' if cfg.smoke else 'full'})\n")
    out.append(
        f"{meta['cores']} cores, load average {meta['loadavg']} at start; wrk {cfg.threads} threads, "
        f"{cfg.connections} connections, {cfg.duration} s per scenario (mixed {cfg.mixed_duration} s); "
        f"{cfg.users:,} seeded users; bcrypt cost {cfg.cost}; {THROTTLE_MODES[cfg.throttle]}; RUST_LOG=warn; "
        f"binary {meta['binary']} ({meta['binary_mtime']}); commit {meta['commit']}"
        + "".join(f"; {k}={v}" for k, v in cfg.server_env.items())
        + ".\n"
    )
    if b:
        out.append(
            f"Bound (release build of benches/bound.rs; {b['threads']} threads measured, or "
            f"{b['threads']} x one thread if that is more): bcrypt cost {b['bcrypt_cost']} "
            f"{best_rate(b, 'bcrypt_per_s'):.1f} hashes/s (measured {b['bcrypt_per_s']:.1f}; one hash "
            f"{b['bcrypt_ms']:.0f} ms), ES256 sign {best_rate(b, 'es256_sign_per_s'):,.0f}/s "
            f"({b['es256_sign_us']:.0f} µs), verify {best_rate(b, 'es256_verify_per_s'):,.0f}/s "
            f"({b['es256_verify_us']:.0f} µs).\n"
        )
    out.append("| backend | scenario | conns | req/s | p50 ms | p99 ms | errors | peak RSS MiB | bound /s | of bound | target |")
    out.append("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for run in runs:
        for r in run.results:
            text, ok = target_for(r, run.results)
            fraction = f"{r.ok_rps / r.bound:.0%}" if r.bound else "—"
            rate = f"{r.rps:,.0f}"
            if r.requests and abs(r.ok_rps - r.rps) >= 0.5:
                rate += f" (2xx: {r.ok_rps:,.1f})"
            bound = f"{r.bound:,.0f}" if r.bound else "—"
            out.append(
                f"| {r.backend} | {r.scenario} | {r.connections} | {rate} | {r.p50_ms:.2f} | "
                f"{r.p99_ms:.2f} | {errors_cell(r)} | {mib(r.peak_rss_kib)} | {bound} | {fraction} | "
                f"{text}{mark(ok)} |"
            )
    out.append("")
    out.append(
        "| backend | idle RSS MiB (after warm-up) | RSS just after start MiB | peak RSS MiB | "
        "start-up, fresh DB ms | start-up, existing DB ms: median [runs] |"
    )
    out.append("|---|---:|---:|---:|---:|---:|")
    for run in runs:
        f = run.facts
        idle, peak = f.get("idle_rss_kib"), f.get("peak_rss_kib")
        startup = f.get("startup_existing_median_ms")
        idle_ok = None if idle is None else idle / MIB <= IDLE_RSS_TARGET_MIB
        peak_ok = None if peak is None else peak / MIB <= PEAK_RSS_TARGET_MIB
        start_ok = None if startup is None else startup < STARTUP_TARGET_MS
        runs_text = ", ".join(f"{t:g}" for t in f.get("startup_existing_ms", []))
        out.append(
            f"| {run.db.name} | {mib(idle)} (≤ {IDLE_RSS_TARGET_MIB:g}){mark(idle_ok)} | {mib(f.get('cold_rss_kib'))} | "
            f"{mib(peak)} (≤ {PEAK_RSS_TARGET_MIB:g}){mark(peak_ok)} | {f.get('startup_fresh_ms', '—')} | "
            f"{startup if startup is not None else '—'} (< {STARTUP_TARGET_MS:g}){mark(start_ok)} [{runs_text}] |"
        )
    out.append("")
    out.append(
        "errors = non-2xx responses + socket errors and timeouts (503s with Retry-After are the "
        "expected answer of a full hashing queue in the mixed scenario). bound: bcrypt hashes/s "
        "(register, login), ES256 verifications/s (verify, me), ES256 signatures/s (refresh); "
        "of bound and the req/s targets count 2xx responses only. mixed: login clients honour "
        "Retry-After; mixed-flood: they retry at once."
    )
    return "\n".join(out)


# ---------------------------------------------------------------------------------------


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "") if head else "unknown"
    except OSError:
        return "unknown"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="latchkey benchmark suite (wrk; SQLite and PostgreSQL).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help="CI mode: 1 s per scenario (register, login and mixed 2 s), 1,000 users; exit 1 on any unexpected error")
    p.add_argument("--duration", type=int, help="seconds per scenario (default 10, smoke 1)")
    p.add_argument("--mixed-duration", type=int, help="seconds of the mixed scenario (default: --duration, smoke 2)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--users", type=int, help="seeded users (default 100000, smoke 1000)")
    p.add_argument("--timeout", type=int, help="wrk request timeout in seconds for refresh, verify and /users/me (default 2, smoke 5; hashing and the user list: 15)")
    p.add_argument("--cost", type=int, default=10, help="bcrypt cost (LATCHKEY_PASSWORD__BCRYPT_COST)")
    p.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios: " + ",".join(SCENARIOS))
    # No TLS on loopback: it would measure OpenSSL on both ends rather than latchkey.
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/?sslmode=disable"),
                   help="PostgreSQL server (a database is created and dropped on it); env BENCH_PG_URL")
    p.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "latchkey", help="the latchkey binary")
    p.add_argument("--build", action="store_true", help="run cargo build --release --locked first even if the binary exists")
    p.add_argument("--bound", choices=["release", "debug", "skip"],
                   help="measure the crypto bound with a release build of benches/bound.rs, check that a debug build runs, or skip (default release, smoke debug)")
    p.add_argument("--bound-seconds", type=float, help="seconds per bound measurement (default 3, smoke 0.2)")
    p.add_argument("--count-status", action=argparse.BooleanOptionalAction, default=None,
                   help="count statuses per code in Lua for verify/me/admin too (costs load-generator CPU; default on in smoke)")
    p.add_argument("--startup-runs", type=int, help="restarts on the existing database for the start-up time (default 5, smoke 3)")
    p.add_argument("--throttle", choices=["off", "local", "redis"], default="off",
                   help="off (default): no throttle; local: each scope counted in memory (limits never reached); redis: counted in Redis (--redis-url)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/15", help="with --throttle redis")
    p.add_argument("--few-tokens", type=int, help="distinct users' access tokens in verify and me (default 200, smoke 20)")
    p.add_argument("--many-tokens", type=int, help="in verify-many and me-many (default 10000, smoke 200)")
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting for every server of the run, e.g. LATCHKEY_DATABASE__POOL_SIZE=32 (repeatable; the run's own settings still win)")
    p.add_argument("--keep", action="store_true", help="keep the databases and server logs (for a closer look)")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON results go")
    args = p.parse_args(argv)
    args.duration = args.duration or (1 if args.smoke else 10)
    args.mixed_duration = args.mixed_duration or (2 if args.smoke else args.duration)
    args.users = args.users or (1000 if args.smoke else 100_000)
    args.bound = args.bound or ("debug" if args.smoke else "release")
    args.bound_seconds = args.bound_seconds or (0.2 if args.smoke else 3.0)
    args.count_status = args.smoke if args.count_status is None else args.count_status
    args.startup_runs = args.startup_runs or (3 if args.smoke else 5)
    args.timeout = args.timeout or (5 if args.smoke else 2)
    args.few_tokens = args.few_tokens or (20 if args.smoke else 200)
    args.many_tokens = args.many_tokens or (200 if args.smoke else 10_000)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    for b in args.backends:
        if b not in ("sqlite", "postgres"):
            p.error(f"unknown backend {b}")
    for s in args.only:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s}")
    if any("=" not in kv for kv in args.server_env):
        p.error("--server-env takes KEY=VALUE")
    args.server_env = dict(kv.split("=", 1) for kv in args.server_env)
    if args.users < 20 or args.connections < 2 or args.duration < 1 or args.mixed_duration < 1:
        p.error("need at least 20 users, 2 connections and 1 s")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    failures: list[str] = []
    wrk = ensure_wrk()
    binary = ensure_binary(args.bin.resolve(), args.build)
    cores = os.cpu_count() or 1

    bound = None
    if args.bound != "skip":
        try:
            exe = build_bound(args.bound)
            # A debug build is far too slow for a real bound: it checks the program at cost 4.
            cost = args.cost if args.bound == "release" else 4
            log(f"bound: bcrypt cost {cost}, ES256, {cores} threads, {args.bound_seconds} s each")
            bound = measure_bound(exe, cost, args.bound_seconds, cores)
            bound["profile"] = args.bound
            if args.bound != "release":
                log(f"bound (debug build, not a bound): {json.dumps(bound)}")
                bound = None
        except (BenchError, OSError, subprocess.SubprocessError, ValueError) as e:
            # The HTTP scenarios still run; the failure is reported at the end.
            failures.append(f"bound: {e}")
            log(f"bound: FAILED: {e}")

    cfg = Config(
        smoke=args.smoke, duration=args.duration, mixed_duration=args.mixed_duration,
        hash_duration=max(args.duration, 2) if args.smoke else args.duration,
        connections=args.connections, threads=args.threads, users=args.users, cost=args.cost,
        count_status=args.count_status, timeout=args.timeout, wrk=wrk, binary=binary, pg_url=args.pg_url,
        only=args.only, bound=bound, startup_runs=max(1, args.startup_runs),
        throttle=args.throttle, redis_url=args.redis_url,
        few_tokens=args.few_tokens, many_tokens=args.many_tokens, server_env=args.server_env,
    )
    meta = {
        "cores": cores,
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "binary": os.path.relpath(binary, ROOT) if binary.is_relative_to(ROOT) else str(binary),
        "binary_mtime": dt.datetime.fromtimestamp(binary.stat().st_mtime).strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(),
        "throttle": args.throttle,
        "server_env": args.server_env,
        "wrk": subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.splitlines()[0:1],
    }

    runs: list[BackendRun] = []
    for backend in args.backends:
        with tempfile.TemporaryDirectory(prefix=f"latchkey-bench-{backend}-") as tmp_name:
            tmp = Path(tmp_name)
            if args.keep:
                tmp = Path(tempfile.mkdtemp(prefix=f"latchkey-bench-{backend}-kept-"))
            db = None
            run = None
            try:
                db = sqlite_database(tmp) if backend == "sqlite" else postgres_database(tmp, args.pg_url, binary)
                run = BackendRun(cfg, db, tmp)
                runs.append(run)
                run.run()
            except (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
                failures.append(f"{backend}: {e}")
                log(f"{backend}: FAILED: {e}")
            finally:
                if db is not None and args.keep:
                    log(f"{backend}: kept {tmp} and {db.url}")
                elif db is not None:
                    try:
                        db.drop()
                    except BenchError as e:
                        failures.append(f"{backend}: dropping the database: {e}")
            if run is not None:
                for r in run.results:
                    r.bound = bound_for(r.scenario, bound)
                    failures += [f"{backend} {r.scenario}: {p}" for p in r.problems]
                failures += [f"{backend}: {p}" for p in run.problems]

    text = report(cfg, runs, meta)
    print(text)
    elapsed = time.perf_counter() - started
    print(f"\n({'smoke' if args.smoke else 'full'} run: {elapsed:.0f} s)")

    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    payload = {
        "mode": "smoke" if args.smoke else "full",
        "meta": meta,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
        "bound": bound,
        "backends": [{"facts": r.facts, "results": [vars(x) for x in r.results]} for r in runs],
        "failures": failures,
        "elapsed_s": round(elapsed, 1),
        "table": text,
    }
    path = args.results_dir / f"{stamp}-{payload['mode']}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    log(f"results: {path}")

    if failures:
        print("\nFAILED:", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
