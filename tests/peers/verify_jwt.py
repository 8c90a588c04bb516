#!/usr/bin/env python3
"""Independent JWT verifier for Legate's integration tests (PyJWT, not Rust).

    verify_jwt.py --issuer URL --audience AUD [--cafile CA.pem] < token

1. GET URL/.well-known/openid-configuration; its "issuer" must equal URL
   exactly (byte for byte, no trailing-slash normalisation).
2. GET its "jwks_uri"; select the one key whose "kid" equals the token
   header's "kid" (a token without kid, or zero or several matches, fail).
3. Verify with PyJWT, algorithms restricted to ES256 and RS256 (and to the
   key's own algorithm), issuer == URL, audience == AUD, with exp, iat, iss,
   aud, sub and jti required; exp/nbf/iat are checked with no leeway.

On success: the verified claims as one JSON object on stdout, exit 0.
On any failure to verify: a message on stderr, nothing on stdout, exit 1.
A broken harness is not a verdict and exits otherwise: usage error or an
unreadable --cafile 2, PyJWT or cryptography not importable 3.

http:// is accepted only for loopback hosts (Legate listens on 127.0.0.1 in
the tests); https:// is verified against the system roots or --cafile.
Only the standard library, PyJWT and cryptography are used.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

try:
    import jwt
    from jwt.algorithms import has_crypto
    from jwt.exceptions import PyJWTError
except ImportError as _e:  # a broken harness, not a verdict on the token
    print(f"verify_jwt: cannot import PyJWT: {_e}", file=sys.stderr)
    sys.exit(3)
if not has_crypto:
    print("verify_jwt: PyJWT has no 'cryptography' backend (ES256/RS256)", file=sys.stderr)
    sys.exit(3)

ALGORITHMS = ["ES256", "RS256"]
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]
TIMEOUT_SECONDS = 10
MAX_DOCUMENT_BYTES = 1 << 20


class VerifyError(Exception):
    pass


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch_json(url: str, ctx: ssl.SSLContext | None) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        handler_ctx = ctx
    elif parts.scheme == "http" and is_loopback(parts.hostname):
        handler_ctx = None
    else:
        raise VerifyError(f"refusing to fetch {url!r}: only https, or http on loopback")
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS, context=handler_ctx) as resp:
            if resp.status != 200:
                raise VerifyError(f"GET {url}: HTTP {resp.status}")
            body = resp.read(MAX_DOCUMENT_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise VerifyError(f"GET {url}: HTTP {e.code}") from e
    except (urllib.error.URLError, OSError) as e:
        raise VerifyError(f"GET {url}: {e}") from e
    if len(body) > MAX_DOCUMENT_BYTES:
        raise VerifyError(f"GET {url}: document larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise VerifyError(f"GET {url}: not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise VerifyError(f"GET {url}: not a JSON object")
    return doc


def verify(issuer: str, audience: str, token: str, ctx: ssl.SSLContext | None) -> dict[str, Any]:
    # OpenID Connect Discovery 1.0 section 4: strip one trailing "/" before
    # appending the well-known path; the issuer comparison stays exact.
    discovery_url = issuer.removesuffix("/") + "/.well-known/openid-configuration"
    discovery = fetch_json(discovery_url, ctx)
    if discovery.get("issuer") != issuer:
        raise VerifyError(
            f"discovery issuer {discovery.get('issuer')!r} != expected issuer {issuer!r}"
        )
    jwks_uri = discovery.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not jwks_uri:
        raise VerifyError("discovery document has no jwks_uri string")

    jwks = fetch_json(jwks_uri, ctx)
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise VerifyError(f"{jwks_uri}: no 'keys' array")

    try:
        header = jwt.get_unverified_header(token)
    except PyJWTError as e:
        raise VerifyError(f"malformed token header: {e}") from e
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise VerifyError("token header has no 'kid' string")
    matches = [k for k in keys if isinstance(k, dict) and k.get("kid") == kid]
    if len(matches) != 1:
        raise VerifyError(f"{len(matches)} keys in {jwks_uri} have kid {kid!r} (need exactly 1)")
    try:
        key = jwt.PyJWK(matches[0])
    except PyJWTError as e:
        raise VerifyError(f"unusable JWK {kid!r}: {e}") from e
    if key.algorithm_name not in ALGORITHMS:
        raise VerifyError(f"JWK {kid!r} has algorithm {key.algorithm_name!r}, not one of {ALGORITHMS}")

    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            options={
                "require": REQUIRED_CLAIMS,
                "verify_signature": True,
                "verify_exp": True,
                "verify_nbf": True,
                "verify_iat": True,
                "verify_iss": True,
                "verify_aud": True,
            },
            leeway=0,
        )
    except PyJWTError as e:
        raise VerifyError(f"PyJWT rejected the token: {type(e).__name__}: {e}") from e
    if not isinstance(claims, dict):
        raise VerifyError("payload is not a JSON object")
    return claims


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--cafile", help="PEM CA bundle trusted for https issuers (default: system roots)")
    args = parser.parse_args()

    try:
        ctx = ssl.create_default_context(cafile=args.cafile)
    except (OSError, ssl.SSLError) as e:
        print(f"verify_jwt: cannot load --cafile {args.cafile!r}: {e}", file=sys.stderr)
        return 2

    token = sys.stdin.read().strip()
    if not token:
        print("verify_jwt: no token on stdin", file=sys.stderr)
        return 1

    try:
        claims = verify(args.issuer, args.audience, token, ctx)
    except VerifyError as e:
        print(f"verify_jwt: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # any other failure is a failure too, never a pass
        print(f"verify_jwt: unexpected {type(e).__name__}: {e}", file=sys.stderr)
        return 1

    json.dump(claims, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
