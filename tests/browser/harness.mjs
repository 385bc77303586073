// SPDX-License-Identifier: GPL-3.0-or-later
// What every browser test shares: where things are, a live latchkey started on a free port
// with a clean environment (and never outliving the test), Debian's Chromium with the
// flags this machine needs, and steps that stop the walk at the first failure.

import { test } from "node:test";
import { spawn } from "node:child_process";
import { openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
// LATCHKEY_BIN as the caller wrote it (relative to where they are), else the release build.
export const LATCHKEY_BIN = process.env.LATCHKEY_BIN ? resolve(process.env.LATCHKEY_BIN) : join(ROOT, "target", "release", "latchkey");
export const SHOTS = join(ROOT, "target", "browser");
export const STEP_TIMEOUT_MS = 10_000;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// Without the background-networking flags Chromium keeps calling hosts this closed network
// refuses; playwright-core adds a fresh --user-data-dir.
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/** Debian's Chromium, or an error that says how to get it. */
export async function launchChromium() {
  try {
    return await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
  } catch (err) {
    throw new Error(`Chromium could not start from ${CHROMIUM} (apt-get install -y chromium): ${err.message}`);
  }
}

/** A loopback port nobody listens on (yet). */
export function freePort() {
  return new Promise((done, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {import("node:net").AddressInfo} */ (probe.address());
      probe.close(() => done(port));
    });
  });
}

/** The environment latchkey sees: `settings` and none of the caller's LATCHKEY_* or DATABASE_URL. */
export function latchkeyEnv(settings) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("LATCHKEY_") && key !== "DATABASE_URL"));
  return Object.assign(env, settings);
}

/** A latchkey process of the test, logging to `work`/latchkey.log. */
export class Server {
  constructor(work, origin, env) {
    this.work = work;
    this.origin = origin;
    this.env = env;
    this.child = /** @type {import("node:child_process").ChildProcess | null} */ (null);
    this.exit = Promise.resolve("");
    // Whatever happens (a failed assertion, an exception, Ctrl-C), latchkey does not outlive us.
    process.on("exit", () => this.stop());
    for (const signal of ["SIGINT", "SIGTERM"]) {
      process.on(signal, () => {
        this.stop();
        process.exit(130);
      });
    }
  }

  /** Starts `latchkey serve` and waits for GET /readyz 200 (30 s at most). */
  async start() {
    const log = openSync(join(this.work, "latchkey.log"), "a");
    const child = spawn(LATCHKEY_BIN, ["serve"], { cwd: this.work, env: this.env, stdio: ["ignore", log, log] });
    this.child = child;
    this.exit = new Promise((done) => {
      child.once("error", (err) => done(`could not run ${LATCHKEY_BIN}: ${err.message} (build it with cargo build --release, or set LATCHKEY_BIN)`));
      child.once("exit", (code, signal) => done(`latchkey exited (${signal || `code ${code}`})`));
    });
    let exited = "";
    this.exit.then((why) => (exited = why));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (exited) throw new Error(`${exited} before it was ready:\n${this.logTail()}`);
      try {
        const res = await fetch(`${this.origin}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`latchkey at ${this.origin} did not answer GET /readyz 200 within 30 s:\n${this.logTail()}`);
  }

  stop() {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }

  /** Stops it and waits (5 s at most) for it to be gone. */
  async stopped() {
    this.stop();
    await Promise.race([this.exit, new Promise((r) => setTimeout(r, 5000).unref())]);
  }

  logTail(lines = 40) {
    try {
      return readFileSync(join(this.work, "latchkey.log"), "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }
}

/**
 * Steps of one walk: each a node:test test, skipped once an earlier one failed (it would
 * only fail again, noisily); `onFailure(name)` runs first, to take a screenshot, say.
 */
export function walk(timeout, onFailure) {
  const state = { broken: "" };
  const step = (name, fn) =>
    test(name, { timeout }, async (t) => {
      if (state.broken) return t.skip(`skipped: "${state.broken}" failed`);
      try {
        await fn(t);
      } catch (err) {
        state.broken = name;
        await onFailure(name.replace(/[^a-z0-9]+/gi, "-").slice(0, 40)).catch(() => {});
        throw err;
      }
    });
  return { step, state };
}
