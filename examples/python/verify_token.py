#!/usr/bin/env python3
"""Verify a latchkey access token in another service, offline, with the keys published at
{public_url}/.well-known/jwks.json.

    pip install -r requirements.txt
    python verify_token.py JWKS_URL ISSUER AUDIENCE TOKEN
    # or with no arguments, from the environment: JWKS_URL, ISSUER, AUDIENCE, TOKEN

Prints {"sub": ..., "username": ...} and exits 0 for a valid access token; prints why and
exits 1 otherwise (2 for bad usage).
"""

import json
import os
import sys

import jwt


def verify(jwks: jwt.PyJWKClient, issuer: str, audience: str, token: str) -> dict:
    # Picks the key by the token's kid; refetches the JWK set once on an unknown kid.
    signing_key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=["ES256"],  # pinned: never let the token's header choose
        issuer=issuer,
        audience=audience,
        leeway=30,  # seconds of clock skew tolerated on exp and nbf
        options={"require": ["exp", "iss", "aud", "sub"]},
    )
    # Access and refresh tokens are signed with the same key: refuse anything but access.
    if claims.get("token_type") != "access":
        raise jwt.InvalidTokenError(f"token_type is {claims.get('token_type')!r}, not 'access'")
    return claims


def main(argv: list[str]) -> int:
    names = ("JWKS_URL", "ISSUER", "AUDIENCE", "TOKEN")
    inputs = argv[1:] or [os.environ.get(name, "") for name in names]
    if len(inputs) != 4 or not all(inputs):
        print("usage: verify_token.py JWKS_URL ISSUER AUDIENCE TOKEN (or set those variables)",
              file=sys.stderr)
        return 2
    jwks_url, issuer, audience, token = inputs

    jwks = jwt.PyJWKClient(jwks_url)  # one per process: it caches the JWK set (5 min)
    try:
        claims = verify(jwks, issuer, audience, token)
    except jwt.PyJWTError as err:
        print(f"token rejected: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"sub": claims["sub"], "username": claims["username"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
