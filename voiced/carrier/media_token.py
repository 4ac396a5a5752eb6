"""A short-lived per-call token for the media socket: defence in depth behind the
upgrade's X-Twilio-Signature.

The TwiML voiced returns to Twilio carries ``<Parameter name="voicedToken">``: an
expiry and an HMAC over the CallSid and that expiry. Twilio hands the parameter back
in the stream's ``start`` message, and voiced refuses (1008) a ``start`` whose token
is missing, expired, or made for another call, before any speech stream opens. So a
replayed or guessed upgrade gets no further than the first message, even if the
signature check were bypassed (a proxy rewriting the URL, a leaked signed URL).

The key is derived from the Twilio auth token (never sent) with a fixed label, so
the token cannot be mistaken for any other HMAC voiced makes with it.
"""

from __future__ import annotations

import hashlib
import hmac

PARAMETER = "voicedToken"
_LABEL = b"voiced media token v1"


def _key(auth_token: str) -> bytes:
    return hmac.new(auth_token.encode("utf-8"), _LABEL, hashlib.sha256).digest()


def _mac(auth_token: str, call_sid: str, expires: int) -> str:
    return hmac.new(_key(auth_token), f"{call_sid}.{expires}".encode("utf-8"), hashlib.sha256).hexdigest()


def issue(auth_token: str, call_sid: str, now: float, ttl_s: float) -> str:
    """``<expiry unix seconds>.<hex HMAC>`` for ``call_sid``."""
    expires = int(now + ttl_s)
    return f"{expires}.{_mac(auth_token, call_sid, expires)}"


def problem(auth_token: str, call_sid: str, token: str | None, now: float) -> str | None:
    """Why ``token`` does not admit ``call_sid`` at ``now``; None when it does (constant-time)."""
    if not token:
        return "no media token"
    expires_text, _, mac = token.partition(".")
    if not expires_text.isdigit() or len(expires_text) > 12 or not mac:
        return "malformed media token"
    expires = int(expires_text)
    if not hmac.compare_digest(_mac(auth_token, call_sid, expires), mac):
        return "media token not valid for this call"
    if now > expires:
        return f"media token expired {int(now - expires)} s ago"
    return None
