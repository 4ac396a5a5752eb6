"""Signing what voiced sends to the user's applications (agent webhook, tools, call records).

``X-Voiced-Signature: sha256=<hex HMAC-SHA256 of the raw body>``, the form GitHub's
webhooks made familiar, so the receiving application can check a request came from
voiced. Compare with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Voiced-Signature"


def sign(secret: str, body: bytes) -> str:
    """The header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` (constant-time)."""
    return bool(header) and hmac.compare_digest(sign(secret, body), header)  # type: ignore[arg-type]
