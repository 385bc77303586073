#!/usr/bin/env node
// Verify a latchkey access token in another service, offline, with the keys published at
// {public_url}/.well-known/jwks.json.
//
//   npm ci
//   node verify_token.mjs JWKS_URL ISSUER AUDIENCE TOKEN
//   # or with no arguments, from the environment: JWKS_URL, ISSUER, AUDIENCE, TOKEN
//
// Prints {"sub": ..., "username": ...} and exits 0 for a valid access token; prints why and
// exits 1 otherwise (2 for bad usage).

import { createRemoteJWKSet, jwtVerify } from "jose";

async function verify(jwks, issuer, audience, token) {
  const { payload } = await jwtVerify(token, jwks, {
    algorithms: ["ES256"], // pinned: never let the token's header choose
    issuer,
    audience,
    clockTolerance: 30, // seconds of clock skew tolerated on exp and nbf
    requiredClaims: ["exp", "sub"],
  });
  // Access and refresh tokens are signed with the same key: refuse anything but access.
  if (payload.token_type !== "access") {
    throw new Error(`token_type is ${JSON.stringify(payload.token_type)}, not "access"`);
  }
  return payload;
}

const names = ["JWKS_URL", "ISSUER", "AUDIENCE", "TOKEN"];
const args = process.argv.slice(2);
const inputs = args.length > 0 ? args : names.map((name) => process.env[name] ?? "");
if (inputs.length !== 4 || inputs.some((value) => !value)) {
  console.error("usage: verify_token.mjs JWKS_URL ISSUER AUDIENCE TOKEN (or set those variables)");
  process.exit(2);
}
const [jwksUrl, issuer, audience, token] = inputs;

// One per process: it caches the keys by kid and refetches the set on an unknown kid.
const jwks = createRemoteJWKSet(new URL(jwksUrl));
try {
  const claims = await verify(jwks, issuer, audience, token);
  console.log(JSON.stringify({ sub: claims.sub, username: claims.username }));
} catch (err) {
  const reason = err.code ? `${err.code}: ${err.message}` : err.message;
  console.error(`token rejected: ${reason}`);
  process.exitCode = 1;
}
