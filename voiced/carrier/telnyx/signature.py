"""telnyx-signature-ed25519: how Telnyx signs its webhooks, and how voiced checks them.

Every webhook (the TeXML answer request included) carries ``telnyx-timestamp`` (Unix
seconds) and ``telnyx-signature-ed25519``: base64 of the Ed25519 signature, by
Telnyx's private key, of ``f"{timestamp}|{raw body}"``. It is checked against the
account's public key (base64 of its 32 raw bytes, from the portal's Keys &
Credentials page), exactly as Telnyx's own SDKs check it (telnyx-python's
``lib/webhook_verification.py``): the raw body as received, never re-encoded, and a
timestamp more than 300 s away from now refused, so a captured request cannot be
replayed later. Pure functions, no I/O; the clock's time is handed in.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
#: Telnyx's SDKs accept a timestamp this far from their clock, either way.
TOLERANCE_S = 300


def _b64(text: str) -> bytes:
    return base64.b64decode(text.strip(), validate=True)


def public_key(text: str) -> Ed25519PublicKey:
    """The account's public key from its base64 text; ``ValueError`` saying what is wrong."""
    try:
        raw = _b64(text)
    except (binascii.Error, ValueError):
        raise ValueError("the Telnyx public key is not base64 (copy it from Keys & Credentials)") from None
    if len(raw) != 32:
        raise ValueError(f"the Telnyx public key is {len(raw)} bytes, not an Ed25519 key's 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def signed_payload(timestamp: str, body: bytes) -> bytes:
    return timestamp.encode("ascii", "replace") + b"|" + body


def sign(private_key: Ed25519PrivateKey, timestamp: str, body: bytes) -> str:
    """What Telnyx puts in telnyx-signature-ed25519 (for tests and the simulated carrier)."""
    return base64.b64encode(private_key.sign(signed_payload(timestamp, body))).decode("ascii")


def problem(key: Ed25519PublicKey, body: bytes, signature: str | None, timestamp: str | None,
            now: float, tolerance_s: float = TOLERANCE_S) -> str | None:
    """Why this request is not Telnyx's; None when the signature holds and the timestamp is fresh."""
    if not signature:
        return f"no {SIGNATURE_HEADER}"
    if not timestamp:
        return f"no {TIMESTAMP_HEADER}"
    stamp = timestamp.strip()
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        return f"malformed {TIMESTAMP_HEADER}"
    try:
        raw = _b64(signature)
    except (binascii.Error, ValueError):
        return f"{SIGNATURE_HEADER} is not base64"
    if len(raw) != 64:
        return f"{SIGNATURE_HEADER} is {len(raw)} bytes, not an Ed25519 signature's 64"
    try:
        # The header's text as sent, not the stripped number: that is what Telnyx signed.
        key.verify(raw, signed_payload(timestamp, body))
    except InvalidSignature:
        return "signature does not match"
    age = now - int(stamp)
    if abs(age) > tolerance_s:
        return f"{TIMESTAMP_HEADER} is {int(age)} s from now (more than {tolerance_s:g} s: stale or replayed)"
    return None
