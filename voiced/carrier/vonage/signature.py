"""Vonage's signed webhooks: a JWT in ``Authorization: Bearer``, checked with the stdlib.

Vonage signs each Voice API webhook (and, when the NCCO asks with ``authorization: {"type":
"vonage"}``, the WebSocket upgrade) with a JWT: HS256 over ``header.claims`` keyed by the
account's signature secret. Its claims include ``iat`` (issued at, Unix seconds), ``jti``,
``iss`` ("Vonage"), ``api_key``, ``application_id`` and ``payload_hash``: the SHA-256 hex
of the request's payload. Vonage's support article on verifying it says the payload is the
request body of a POST, and for a GET the query parameters as a JSON object in their order,
without whitespace; both are checked here, as raw bytes and as that compact JSON.

Only HS256 is accepted (never ``none``, never another algorithm named in the token), the
comparison is constant-time, and a token older than ``MAX_AGE_S`` (or issued in the future
beyond it) is refused, so a captured request cannot be replayed later. Pure: the time is
handed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any, Iterable

#: How far ``iat`` may be from now, either way (clock skew on the way in, replays on the way out).
MAX_AGE_S = 300
MAX_TOKEN_BYTES = 8192
_COMPACT = (",", ":")


class SignatureError(ValueError):
    """Why a request's JWT does not vouch for it (the text is safe to log: no secret in it)."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not text or len(text) % 4 == 1:
        raise SignatureError("malformed JWT")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SignatureError("malformed JWT") from None


def _mac(secret: str, signing_input: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256).digest()


def sign_hs256(claims: dict[str, Any], secret: str) -> str:
    """A JWT as Vonage signs one (the simulated caller and the tests sign with it)."""
    header = b64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=_COMPACT).encode())
    body = b64url_encode(json.dumps(claims, separators=_COMPACT).encode())
    signing_input = f"{header}.{body}"
    return f"{signing_input}.{b64url_encode(_mac(secret, signing_input))}"


def _json_object(part: str, what: str) -> dict:
    try:
        value = json.loads(b64url_decode(part))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SignatureError(f"malformed JWT {what}") from None
    if not isinstance(value, dict):
        raise SignatureError(f"malformed JWT {what}")
    return value


def verify(secret: str, authorization: str | None, now: float, max_age_s: float = MAX_AGE_S) -> dict[str, Any]:
    """The claims of the Bearer JWT in ``authorization`` when ``secret`` signed it and it is
    fresh at ``now``; else SignatureError saying why."""
    if not authorization:
        raise SignatureError("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise SignatureError("Authorization is not a Bearer token")
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise SignatureError("malformed JWT")
    header_part, claims_part, signature_part = token.split(".")
    header = _json_object(header_part, "header")
    if header.get("alg") != "HS256":
        raise SignatureError(f"JWT algorithm {str(header.get('alg'))[:20]!r} is not HS256")
    if not hmac.compare_digest(_mac(secret, f"{header_part}.{claims_part}"), b64url_decode(signature_part)):
        raise SignatureError("JWT signature does not match the signature secret")
    claims = _json_object(claims_part, "claims")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)):
        raise SignatureError("JWT has no iat")
    if abs(now - iat) > max_age_s:
        raise SignatureError(f"JWT issued {int(now - iat)} s from now (stale or replayed)")
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and now > exp:
        raise SignatureError(f"JWT expired {int(now - exp)} s ago")
    return claims


def _digests(body: bytes, query: Iterable[tuple[str, str]] | None) -> set[str]:
    candidates = []
    if query is not None:
        fields = dict(query)  # in the order they came, as Vonage's article asks
        for ascii_only in (False, True):
            candidates.append(json.dumps(fields, separators=_COMPACT, ensure_ascii=ascii_only).encode("utf-8"))
    else:
        candidates.append(body)
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            parsed = None
        if parsed is not None:
            for ascii_only in (False, True):
                candidates.append(json.dumps(parsed, separators=_COMPACT, ensure_ascii=ascii_only).encode("utf-8"))
    return {hashlib.sha256(candidate).hexdigest() for candidate in candidates}


def payload_problem(claims: dict[str, Any], body: bytes, query: Iterable[tuple[str, str]] | None = None) -> str | None:
    """Why the request's payload is not the one Vonage signed; None when it is. ``query`` (the
    query parameters in order) for a GET, ``body`` for a POST. A body must be signed; a GET
    without ``payload_hash`` carries nothing to tamper with beyond what the signature covers."""
    claimed = claims.get("payload_hash")
    if claimed is None:
        return "JWT has no payload_hash for the request body" if query is None and body else None
    if not isinstance(claimed, str):
        return "JWT payload_hash is not text"
    if not any(hmac.compare_digest(claimed.lower(), digest) for digest in _digests(body, query)):
        return "payload_hash does not match the request's payload"
    return None
