#!/usr/bin/env node
// SPDX-License-Identifier: GPL-3.0-or-later
// A tiny static server for the example (node:http, no dependencies), sending the strict
// Content-Security-Policy a real SPA would: scripts from this origin and latchkey only,
// requests to latchkey only, no inline script or style.
//
//   node examples/spa/serve.mjs [--port 8080] [--host 127.0.0.1] [--api http://127.0.0.1:8000]
//
// then open the printed URL. The browser test (tests/browser) uses it too.

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".md": "text/plain; charset=utf-8",
};

/**
 * The policy for a page that talks to the latchkey at `api`.
 * @param {string} api latchkey's URL
 */
export function contentSecurityPolicy(api) {
  const origin = new URL(api).origin;
  return [
    "default-src 'none'",
    `script-src 'self' ${origin}`,
    `connect-src ${origin}`,
    "style-src 'self'",
    "img-src 'self'",
    "form-action 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

/**
 * Serves `root` (this directory by default) on host:port; port 0 picks a free one.
 * @param {{host?: string, port?: number, api?: string, root?: string}} [options]
 * @returns {Promise<import("node:http").Server>} listening
 */
export function serve({ host = "127.0.0.1", port = 0, api = "http://127.0.0.1:8000", root = HERE } = {}) {
  const csp = contentSecurityPolicy(api);
  const server = createServer(async (req, res) => {
    const headers = {
      "Content-Security-Policy": csp,
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
      "Cache-Control": "no-store",
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { ...headers, Allow: "GET, HEAD", "Content-Type": "text/plain" });
      return res.end("method not allowed\n");
    }
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    } catch {
      res.writeHead(400, { ...headers, "Content-Type": "text/plain" });
      return res.end("bad path\n");
    }
    if (path.endsWith("/")) path += "index.html";
    const file = normalize(join(root, path));
    // Only files in root, and not this server's own source.
    if (!file.startsWith(root.endsWith(sep) ? root : root + sep) || !TYPES[extname(file)] || file.endsWith(".mjs")) {
      res.writeHead(404, { ...headers, "Content-Type": "text/plain" });
      return res.end("not found\n");
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { ...headers, "Content-Type": TYPES[extname(file)] });
      res.end(req.method === "HEAD" ? undefined : body);
    } catch {
      res.writeHead(404, { ...headers, "Content-Type": "text/plain" });
      res.end("not found\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === normalize(process.argv[1])) {
  const args = process.argv.slice(2);
  const option = (name, fallback) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
  };
  const host = option("host", "127.0.0.1");
  const api = option("api", "http://127.0.0.1:8000");
  const server = await serve({ host, port: Number(option("port", 8080)), api });
  const { port } = server.address();
  console.log(`SPA example: http://${host}:${port}/?api=${api}`);
  console.log(`latchkey must list http://${host}:${port} in cors.allowed_origins, e.g.`);
  console.log(`  LATCHKEY_CORS__ALLOWED_ORIGINS=http://${host}:${port} LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION=false latchkey`);
}
