#!/usr/bin/env node
// Receive latchkey's webhooks: verify each delivery with the official Standard Webhooks
// library, drop duplicates by webhook-id, and print each new event as one JSON line.
// The Node twin of receiver.py, with the same behaviour.
//
//   npm ci
//   node receiver.mjs --port 8002 --secret-file /path/to/whsec
//   # or WEBHOOK_SECRET=whsec_... node receiver.mjs --port 8002
//
// Answers 204 to a verified delivery (also to a duplicate, so that latchkey stops retrying
// it), 400 to a missing, bad or expired signature, 413 to a body over 1 MiB. Prints
// {"webhook_id": ..., "type": ..., "timestamp": ..., "data": {...}} on stdout for each new
// event; rejections and duplicates are logged on stderr.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Webhook } from "standardwebhooks";

const MAX_BODY = 1 << 20; // latchkey's bodies are a few hundred bytes

// The webhook-ids already handled, the most recent SEEN_MAX of them. Delivery is at least
// once: in a real service, record the id in the same database transaction as the work the
// event causes; this in-memory set is the example's stand-in.
const SEEN_MAX = 100_000;
const seen = new Set();
function firstTime(webhookId) {
  if (seen.has(webhookId)) return false;
  seen.add(webhookId);
  if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
  return true;
}

// The receiver's work. Keep it quick (latchkey waits webhooks.timeout, 10 s by default,
// then retries), or queue it and answer at once. Events of one user may arrive out of
// order: order them by the body's `timestamp`.
function handle(event, webhookId) {
  const { type, timestamp, data } = event;
  process.stdout.write(`${JSON.stringify({ webhook_id: webhookId, type, timestamp, data })}\n`);
}

function answer(res, status, message = "") {
  if (status === 204) {
    res.writeHead(204).end();
  } else {
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8" }).end(message);
  }
}

function serve(webhook, host, port) {
  const server = createServer((req, res) => {
    if (req.method !== "POST") {
      res.setHeader("allow", "POST");
      return answer(res, 405, "POST only");
    }
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        answer(res, 413, "body too large");
        req.destroy();
      } else {
        chunks.push(chunk);
      }
    });
    req.on("end", () => {
      const body = Buffer.concat(chunks); // the exact bytes: the signature covers them
      const webhookId = req.headers["webhook-id"];
      let event;
      try {
        // Checks webhook-id, webhook-timestamp (within 5 minutes of now) and
        // webhook-signature against the raw body, then parses it.
        event = webhook.verify(body, req.headers);
      } catch (err) {
        console.error(`receiver: rejected ${webhookId}: ${err.message}`);
        return answer(res, 400, "invalid signature");
      }
      if (!firstTime(webhookId)) {
        console.error(`receiver: duplicate ${webhookId} ignored`);
        return answer(res, 204);
      }
      try {
        handle(event, webhookId);
      } catch (err) {
        // Not done: forget the id and answer 500, so that latchkey's retry is handled.
        seen.delete(webhookId);
        console.error(`receiver: failed ${webhookId}: ${err}`);
        return answer(res, 500, "failed");
      }
      answer(res, 204);
    });
  });
  server.listen(port, host, () => {
    console.error(`receiver: listening on http://${host}:${server.address().port}/`);
  });
}

function readSecret(secretFile) {
  if (secretFile) return readFileSync(secretFile, "utf8").trim();
  const secret = (process.env.WEBHOOK_SECRET ?? "").trim();
  if (!secret) {
    console.error("receiver: give --secret-file PATH or set WEBHOOK_SECRET");
    process.exit(2);
  }
  return secret;
}

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "8002" },
    "secret-file": { type: "string", default: process.env.WEBHOOK_SECRET_FILE },
  },
});
let webhook;
try {
  webhook = new Webhook(readSecret(values["secret-file"]));
} catch (err) {
  console.error(`receiver: the secret is not whsec_<base64>: ${err.message}`);
  process.exit(2);
}
serve(webhook, values.host, Number(values.port));
