"""What the small latency scripts share (sessions_list.py, mfa_login.py): a JSON request,
and the release build started on a fresh SQLite database and, with a PostgreSQL URL, on a
throw-away database there (dropped afterwards), with throttling off and email
verification off. Standard library only."""

import contextlib
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE_BIN = ROOT / "target" / "release" / "latchkey"
PASSWORD = "Violet-Harbor-Quill-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(conn, method, path, body=None, token=None):
    """One JSON request: the status and the decoded answer (or None)."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, (json.loads(data) if data else None)


def _start(bin_path: Path, workdir: Path, database_url: str, key: Path | None, cost: int,
           extra_env: dict[str, str]):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_")}
    env.update({
        "LATCHKEY_SERVER__BIND": f"127.0.0.1:{port}",
        "LATCHKEY_DATABASE__URL": database_url,
        "LATCHKEY_PASSWORD__BCRYPT_COST": str(cost),
        "LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION": "false",
        "LATCHKEY_THROTTLE__ENABLED": "false",
        "RUST_LOG": "warn",
    })
    env.update(extra_env)
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


def servers(bin_path: Path, pg_url: str | None, cost: int = 4,
            extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """Yields (backend, port) for SQLite, then PostgreSQL when `pg_url` is given; each
    server is stopped (and its database dropped) before the next starts. `extra_env` adds
    settings (LATCHKEY_... variables)."""
    extra_env = extra_env or {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        yield from _serve(bin_path, work, "sqlite", f"sqlite://{work}/bench.db", None, cost,
                          extra_env)
        if not pg_url:
            return
        name = f"latchkey_bench_{os.getpid()}"
        subprocess.run(["psql", pg_url, "-qc", f"CREATE DATABASE {name}"], check=True)
        try:
            key = work / "signing.pem"
            subprocess.run([str(bin_path), "keys", "generate", "--algorithm", "ES256", "--out", str(key)],
                           check=True, stdout=subprocess.DEVNULL)
            url = urllib.parse.urlsplit(pg_url)._replace(path=f"/{name}").geturl()
            yield from _serve(bin_path, work, "postgres", url, key, cost, extra_env)
        finally:
            subprocess.run(["psql", pg_url, "-qc", f"DROP DATABASE {name}"], check=True)


def _serve(bin_path, work, backend, url, key, cost, extra_env):
    proc, port = _start(bin_path, work, url, key, cost, extra_env)
    with contextlib.ExitStack() as stop:
        stop.callback(proc.wait)
        stop.callback(proc.terminate)
        yield backend, port
