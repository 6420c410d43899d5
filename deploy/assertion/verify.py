#!/usr/bin/env python3
"""Verify a portcullis identity assertion (headers.assertion) as an upstream should.

usage: verify.py PUBLIC_URL AUDIENCE [ASSERTION]   (ASSERTION defaults to stdin)

PUBLIC_URL is the gateway's server.public_url (the assertion's iss), AUDIENCE this
upstream's own origin, scheme://host[:port] (its aud). Prints the claims as JSON, or
exits 1. Needs PyJWT with cryptography: pip install "pyjwt[crypto]".
"""
import json
import sys

import jwt

_clients = {}  # one JWKS client per gateway: keys are cached, refetched on an unknown kid


def verify(assertion, public_url, audience, auth_prefix="/oauth2"):
    issuer = public_url.rstrip("/")
    client = _clients.setdefault(issuer, jwt.PyJWKClient(issuer + auth_prefix + "/jwks"))
    key = client.get_signing_key_from_jwt(assertion).key
    return jwt.decode(assertion, key, algorithms=["ES256"], audience=audience, issuer=issuer,
                      options={"require": ["exp", "iat", "iss", "aud", "sub"]})


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    token = sys.argv[3] if len(sys.argv) > 3 else sys.stdin.read().strip()
    try:
        print(json.dumps(verify(token, sys.argv[1], sys.argv[2])))
    except jwt.PyJWTError as e:
        sys.exit(f"not verified: {e!r}")
