#!/usr/bin/env python3
"""The slow-request check: no request body, however hostile, may hold up the server.

    python3 benches/slow_requests.py [BINARY]     # default: target/release/latchkey

Starts BINARY on a free loopback port (a throw-away SQLite file and the `file` email
backend in a temporary directory, throttling off, bcrypt cost 4), creates a staff user with
the longest username and email the API takes, and for every operation of `/openapi.json`
that takes a JSON body sends bodies of about 60 KiB (the limit is 64 KiB) in the worst
shapes this script knows, each COPIES times at once, with the staff user's Bearer token
where the operation needs one, while another thread polls `/healthz` all along:

    over limits     every field far past its maxLength (the body's 60 KiB shared out)
    at limits       every field at its limits with legal but costly content: the longest
                    names of multi-byte letters, the longest list of the longest items,
                    the largest claims object, a new password that is a near-anagram of
                    the 150-character username; padded to 60 KiB with whitespace
    near-anagram    registration, password change and reset (with a real emailed link):
                    a 256-character new password that is a near-anagram of a
                    150-character username and a 254-character email, padded
    review          the review's `{"username": "azbz"×N, "email": "x", "password":
                    "ab"×M, "password_confirm": "x"}`, scaled up to 60 KiB
    many keys       thousands of unknown keys beside the required fields
    duplicate keys  one field given thousands of times
    deep nesting    every field an array nested 30,000 deep
    nested object   object fields nested as deep as the JSON parser allows
    many items      list fields with thousands of items (other fields: a type error)
    escapes         every string made of `\\uXXXX` surrogate-pair escapes
    huge numbers    every field a number of thousands of digits

It prints one row per endpoint and shape (the slowest of the copies) and exits 1 if any
answer takes 100 ms or more or is a 5xx, or if `/healthz` ever fails or takes more than
100 ms. A check, not a test: timings depend on the machine (`.ci/slow-requests` runs it
against the release build).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import email
import email.policy
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BenchError, Server, expect, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BODY_BYTES = 60 * 1024
BUDGET_MS = 100.0
COPIES = 4
HEALTHZ_EVERY_S = 0.005

# The caller: the longest username (150) and email (254) the API takes, so that every
# similarity check against them works on the longest attributes there are.
USERNAME = ("azbz" * 38)[:150]
EMAIL = ("azbzy" * 13)[:64] + "@" + ".".join(["azbzq" * 12 + "abc"] * 2 + [("azbzq" * 12)[:53], "example"])
STAFF_PASSWORD = "slow-requests staff password 7"


def log(message: str) -> None:
    print(f"[slow {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# HTTP


def send(port: int, method: str, path: str, body: bytes, token: str | None) -> tuple[int, float]:
    """One request on a new connection: the status and the milliseconds to the whole answer."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, (time.perf_counter() - started) * 1000.0
    except OSError:
        return 0, (time.perf_counter() - started) * 1000.0
    finally:
        conn.close()


class Healthz(threading.Thread):
    """Polls `/healthz` until stopped, remembering the slowest answer and every failure."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.worst_ms = 0.0
        self.window_ms = 0.0
        self.polls = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.done.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            started = time.perf_counter()
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                problem = None if response.status == 200 else f"status {response.status}"
            except OSError as e:
                problem = f"{type(e).__name__}: {e}"
            finally:
                conn.close()
            ms = (time.perf_counter() - started) * 1000.0
            with self.lock:
                self.polls += 1
                self.worst_ms = max(self.worst_ms, ms)
                self.window_ms = max(self.window_ms, ms)
                if problem:
                    self.failures.append(problem)
            self.done.wait(HEALTHZ_EVERY_S)

    def take_window(self) -> float:
        """The slowest answer since the last call."""
        with self.lock:
            ms, self.window_ms = self.window_ms, 0.0
            return ms


# ---------------------------------------------------------------------------------------
# Bodies. Built as JSON text, not with json.dumps: duplicate keys, 30,000-deep arrays and
# whitespace padding are the point.


def jstr(text: str) -> str:
    return json.dumps(text)


def obj(pairs: list[tuple[str, str]]) -> str:
    """An object from (name, JSON text) pairs, duplicates and all."""
    return "{" + ",".join(f"{jstr(k)}:{v}" for k, v in pairs) + "}"


def pad(text: str) -> bytes:
    """`text` with whitespace after it up to BODY_BYTES (JSON allows any amount)."""
    raw = text.encode()
    return raw + b" " * max(0, BODY_BYTES - len(raw))


def near_anagram(of: str, length: int, seed: int) -> str:
    """`length` characters drawn from `of`'s, shuffled in short runs: many short common
    blocks, the worst case of a longest-matching-block similarity."""
    rng = random.Random(seed)
    chars = list(of * (length // len(of) + 1))[:length]
    runs = [chars[i:i + 3] for i in range(0, len(chars), 3)]
    rng.shuffle(runs)
    out = [c for run in runs for c in run]
    out[rng.randrange(len(out))] = "Z"  # near: one character no attribute has
    return "".join(out)


@dataclass
class Field:
    name: str
    schema: dict[str, Any]
    required: bool

    @property
    def kind(self) -> str:
        return self.schema.get("type", "any")

    @property
    def max_length(self) -> int:
        return int(self.schema.get("maxLength", 256))

    def legal_text(self) -> str:
        """The costliest text this field accepts: its maximum length, multi-byte letters."""
        name, n = self.name, self.max_length
        if "password" in name:
            return near_anagram(USERNAME, n, 1)
        if name == "email":
            return EMAIL
        if name in ("token", "refresh_token"):
            part = "A" * ((n - 2) // 3)
            return f"{part}.{part}.{part}"
        if "pattern" in self.schema:  # username, group name: letters
            return "é" * n
        return "日" * n


@dataclass
class Operation:
    method: str
    path: str
    label: str
    fields: list[Field]
    bearer: bool


def operations(doc: dict[str, Any]) -> list[Operation]:
    """Every operation of the document that takes a JSON body, with its body's fields."""
    schemas = doc["components"]["schemas"]

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    found = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if not body:
                continue
            schema = resolve(body["schema"])
            for part in schema.get("allOf", []):  # "one of username or email": the object part
                if "properties" in resolve(part):
                    schema = resolve(part)
            required = set(schema.get("required", []))
            fields = [
                Field(name, resolve(prop), name in required)
                for name, prop in schema.get("properties", {}).items()
            ]
            bearer = any("bearer" in s for s in op.get("security", []))
            found.append(Operation(method.upper(), path, f"{method.upper()} {path}", fields, bearer))
    return found


def shapes(op: Operation) -> list[tuple[str, bytes]]:
    """The generic worst shapes of `op`'s body."""
    fields = op.fields
    share = BODY_BYTES // max(1, len(fields)) - 16
    nest = 30_000

    def over(f: Field) -> str:
        if f.kind == "array":
            return "[" + ",".join([jstr("azbz" * 40)] * (share // 164)) + "]"
        if f.kind == "object":
            return obj([("k", jstr("azbz" * (share // 4)))])
        return jstr(("azbz" * (share // 4 + 1))[: share])

    def at_limits(f: Field) -> str:
        if f.kind == "array":
            item = Field(f.name, f.schema.get("items", {}), True)
            return "[" + ",".join(jstr(f"{i:03}" + item.legal_text()[3:]) for i in range(f.schema.get("maxItems", 32))) + "]"
        if f.kind == "object":
            # 4 KiB of claims, as deep as that allows.
            value = "0"
            for i in range(100):
                value = obj([(f"c{i}", value)])
            return obj([("wide", jstr("x" * 3000)), ("deep", value)])
        if f.kind == "boolean":
            return "false"
        return jstr(f.legal_text())

    def deep_object(f: Field) -> str:
        value = "0"
        for i in range(120):
            value = obj([("a", value)])
        return value

    def escapes(f: Field) -> str:
        return '"' + "\\ud83d\\ude00" * (share // 12) + '"'

    def huge_number(f: Field) -> str:
        return "9" * share

    def every(make: Callable[[Field], str]) -> str:
        return obj([(f.name, make(f)) for f in fields])

    required = [(f.name, at_limits(f)) for f in fields if f.required]
    room = BODY_BYTES - len(obj(required))
    unknown = [(f"unknown_{i:05}", "0") for i in range(room // len('"unknown_00000":0,'))]
    first = fields[0].name if fields else "x"
    lists = [f for f in fields if f.kind == "array"]
    objects = [f for f in fields if f.kind == "object"]
    result = [
        ("over limits", every(over).encode()),
        ("at limits", pad(every(at_limits))),
        ("many keys", obj(required + unknown).encode()),
        ("duplicate keys", obj([(first, '"a"')] * (BODY_BYTES // (len(first) + 7))).encode()),
        ("deep nesting", obj([(first, "[" * nest + "]" * nest)]).encode()),
        ("escapes", every(escapes).encode()),
        ("huge numbers", every(huge_number).encode()),
    ]
    if objects:
        result.append(("nested object", pad(obj([(f.name, deep_object(f)) for f in objects]))))
    if lists:
        items = BODY_BYTES // len(lists) // 4 - 8
        result.append(("many items", obj([(f.name, "[" + ",".join(['"a"'] * items) + "]") for f in lists]).encode()))
    return result


def password_shapes(op: Operation, link: tuple[str, str] | None) -> list[tuple[str, bytes]]:
    """The similarity attacks on the operations that take a new password."""
    new = near_anagram(USERNAME + EMAIL, 256, 2)
    if op.label == "POST /auth/register":
        review = {"username": "azbz" * 7_600, "email": "x", "password": "ab" * 15_200,
                  "password_confirm": "x"}
        attack = {"username": USERNAME[:-1] + "q", "email": "q" + EMAIL[1:],
                  "password": new, "password_confirm": new}
        return [("review", json.dumps(review).encode()), ("near-anagram", pad(json.dumps(attack)))]
    if op.label == "POST /users/me/password":
        attack = {"current_password": "wrong", "new_password": new, "new_password_confirm": new}
        return [("near-anagram", pad(json.dumps(attack)))]
    if op.label == "POST /auth/password/reset/confirm" and link:
        uid, token = link
        attack = {"uid": uid, "token": token, "new_password": new, "new_password_confirm": new}
        return [("near-anagram", pad(json.dumps(attack)))]
    return []


# ---------------------------------------------------------------------------------------
# The run


def emailed_reset_link(mail_dir: Path, timeout: float = 10.0) -> tuple[str, str] | None:
    """uid and token of the first reset link the file backend wrote."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(mail_dir.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for part in message.walk():
                if part.get_content_maintype() == "text":
                    found = re.search(r"/password/reset/([A-Za-z0-9_-]+)/([^\s\"<>]+)", part.get_content())
                    if found:
                        return found.group(1), found.group(2)
        time.sleep(0.05)
    return None


@dataclass
class Row:
    endpoint: str
    shape: str
    status: int
    ms: float
    healthz_ms: float
    size: int


def measure(port: int, healthz: Healthz, op: Operation, path: str, shape: str, body: bytes,
            token: str | None) -> Row:
    healthz.take_window()
    with concurrent.futures.ThreadPoolExecutor(COPIES) as pool:
        answers = list(pool.map(lambda _: send(port, op.method, path, body, token), range(COPIES)))
    status, ms = max(answers, key=lambda a: (a[0] >= 500 or a[0] == 0, a[1]))
    return Row(op.label, shape, status, ms, healthz.take_window(), len(body))


def run(binary: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="latchkey-slow-") as tmp:
        work = Path(tmp)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_")}
        env.pop("DATABASE_URL", None)
        env.update(
            RUST_LOG="warn",
            LATCHKEY_DATABASE__URL=f"sqlite://{work}/latchkey.db",
            LATCHKEY_SERVER__BIND=f"127.0.0.1:{port}",
            LATCHKEY_SERVER__PUBLIC_URL=f"http://127.0.0.1:{port}",
            LATCHKEY_THROTTLE__ENABLED="false",
            LATCHKEY_PASSWORD__BCRYPT_COST="4",
            LATCHKEY_EMAIL__BACKEND="file",
            LATCHKEY_EMAIL__FILE_DIR=str(work / "mail"),
        )
        server = Server(binary, env, work, work / "server.log")
        log(f"starting {binary} on port {port}")
        server.start()
        try:
            return check(server, env, work)
        finally:
            server.stop()


def check(server: Server, env: dict[str, str], work: Path) -> int:
    port = server.port
    created = subprocess.run(
        [str(server.binary), "createsuperuser", "--username", USERNAME, "--email", EMAIL,
         "--password-stdin"],
        input=STAFF_PASSWORD + "\n", env=env, cwd=work, capture_output=True, text=True, timeout=60,
    )
    if created.returncode != 0:
        raise BenchError(f"createsuperuser failed: {created.stderr}")
    pair = expect(port, "POST", "/auth/login", 200, body={"username": USERNAME, "password": STAFF_PASSWORD})
    token = pair["access_token"]
    # Another user, for the operations on /users/{id} (so the caller's own guards do not
    # stop them early).
    victim = {"username": "victim", "email": "victim@example.com",
              "password": "victim password 9", "password_confirm": "victim password 9"}
    victim_id = expect(port, "POST", "/auth/register", 201, body=victim)["user"]["id"]
    expect(port, "POST", "/auth/password/reset", 202, body={"email": EMAIL})
    link = emailed_reset_link(work / "mail")
    if link is None:
        raise BenchError("no password reset email arrived")
    doc = expect(port, "GET", "/openapi.json", 200)

    healthz = Healthz(port)
    healthz.start()
    rows: list[Row] = []
    try:
        for op in operations(doc):
            path = op.path.replace("{id}", victim_id)
            bearer = token if op.bearer else None
            for shape, body in password_shapes(op, link) + shapes(op):
                if len(body) > 64 * 1024:
                    raise BenchError(f"{op.label} [{shape}]: {len(body)} bytes, past the body limit")
                rows.append(measure(port, healthz, op, path, shape, body, bearer))
    finally:
        healthz.done.set()
        healthz.join()
    return report(rows, healthz, server)


def report(rows: list[Row], healthz: Healthz, server: Server) -> int:
    print("| endpoint | shape | KiB | status | latency ms | /healthz max ms |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.endpoint} | {r.shape} | {r.size / 1024:.0f} | {r.status} | {r.ms:.1f} | {r.healthz_ms:.1f} |")
    print(f"\n/healthz: {healthz.polls} polls, slowest {healthz.worst_ms:.1f} ms, "
          f"{len(healthz.failures)} failed")
    problems = [f"{r.endpoint} [{r.shape}]: {r.ms:.0f} ms" for r in rows if r.ms >= BUDGET_MS]
    problems += [f"{r.endpoint} [{r.shape}]: status {r.status}" for r in rows
                 if r.status >= 500 or r.status == 0]
    if healthz.worst_ms > BUDGET_MS:
        problems.append(f"/healthz took {healthz.worst_ms:.0f} ms")
    problems += [f"/healthz failed: {f}" for f in sorted(set(healthz.failures))]
    if not server.alive():
        problems.append("the server died:\n" + server.log_tail())
    if problems:
        print(f"\nFAILED ({BUDGET_MS:.0f} ms budget, {COPIES} copies of each at once):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"\nevery answer under {BUDGET_MS:.0f} ms ({len(rows)} shapes, {COPIES} copies each)")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", nargs="?", type=Path, default=ROOT / "target/release/latchkey")
    args = parser.parse_args(argv)
    try:
        if not args.binary.exists():
            raise BenchError(f"{args.binary} does not exist (cargo build --release --locked)")
        return run(args.binary.resolve())
    except BenchError as e:
        print(f"slow-requests: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
