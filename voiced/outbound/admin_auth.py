"""The admin API's credential: ``Authorization: Bearer $VOICED_ADMIN_TOKEN``.

Placing calls costs money and reaches people, so without a configured token the API is
refused outright (403), not open, even on loopback. The comparison is constant-time.
"""

from __future__ import annotations

import hmac
import json

from twisted.web.server import Request


def _refuse(request: Request, status: int, error: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    if status == 401:
        request.setHeader(b"www-authenticate", b'Bearer realm="voiced admin"')
    return json.dumps({"error": error}).encode() + b"\n"


def check_admin_token(request: Request, token: str) -> bytes | None:
    """None if the request carries the token; else the refusal's body, its status set."""
    if not token:
        return _refuse(request, 403, "the admin API is off: set VOICED_ADMIN_TOKEN to use it")
    raw = request.getHeader(b"authorization")
    header = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if not header:
        return _refuse(request, 401, "an Authorization: Bearer <VOICED_ADMIN_TOKEN> header is required")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        return _refuse(request, 403, "wrong admin token")
    return None
