"""Who may use the console, and which browser may open a media socket.

Three rules, decided once at start-up (``console_mode``):

* ``open``: voiced listens on loopback only and no Twilio token is set. That is a
  developer's machine: the console needs no credential, like the media port itself.
* ``token``: ``VOICED_CONSOLE_TOKEN`` is set. Every console page and stream needs it,
  as ``Authorization: Bearer <token>`` or as the session cookie the login form sets.
* ``off``: anything else (a public port, or a Twilio token without a console token).
  ``/console`` does not exist (404), so an exposed daemon shows nothing by accident.

The softphone's ``/media`` socket cannot carry a Twilio signature, so the console mints
a short-lived, single-use media token (``MediaTokens``) that the page passes in the
upgrade's query string (Twilio strips query strings, so a real carrier never sends one).
Every comparison is constant-time; nothing here reads the clock itself (times are handed in).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from voiced.config import Settings
from voiced.endpoints import loopback_only

OPEN, TOKEN, OFF = "open", "token", "off"
SESSION_COOKIE = b"voiced_console"
SESSION_TTL_S = 12 * 3600
MEDIA_TOKEN_TTL_S = 60.0
MEDIA_TOKEN_PARAM = "console_token"
# Used nonces are remembered until their token would have expired anyway; this bounds
# the memory a flood of mint requests could take.
MAX_OUTSTANDING_MEDIA_TOKENS = 10_000


def console_mode(settings: Settings) -> str:
    if settings.console_token:
        return TOKEN
    if not settings.signed_carriers and loopback_only(settings.listen):
        return OPEN
    return OFF


def why(mode: str) -> str:
    """The start-up line's explanation of a mode."""
    return {
        OPEN: "no credential needed: voiced listens on loopback only and no carrier secret is set",
        TOKEN: "VOICED_CONSOLE_TOKEN is required (bearer header or the login form's cookie)",
        OFF: "voiced is reachable from other hosts or has a carrier secret: set VOICED_CONSOLE_TOKEN to enable it",
    }[mode]


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


class ConsoleAuth:
    """Checks a request's console credential. ``check`` answers 200, 401 (none given) or
    403 (one given, and wrong or expired); in ``open`` mode everything is 200."""

    def __init__(self, mode: str, token: str) -> None:
        self.mode = mode
        self._token = token.encode()

    def check(self, authorization: str | None, cookie: str | None, now: float) -> int:
        if self.mode == OPEN:
            return 200
        if self.mode != TOKEN or not self._token:
            return 403
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer":
                return 403
            return 200 if self.token_matches(value.strip()) else 403
        if cookie:
            return 200 if self.session_valid(cookie, now) else 403
        return 401

    def token_matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token)

    def new_session(self, now: float) -> str:
        """A cookie value: its expiry and a MAC under the console token, so changing the
        token ends every session and the token itself never sits in the browser."""
        expires = int(now + SESSION_TTL_S)
        return f"{expires}.{_mac(self._token, f'session:{expires}')}"

    def session_valid(self, cookie: str, now: float) -> bool:
        expires, _, mac = cookie.partition(".")
        if not expires.isdigit():
            return False
        if not hmac.compare_digest(mac.encode(), _mac(self._token, f"session:{expires}").encode()):
            return False
        return int(expires) > now


class MediaTokens:
    """Short-lived, single-use tokens for the softphone's /media upgrade. The key is
    random per process: a token never outlives the daemon that minted it."""

    def __init__(self, ttl_s: float = MEDIA_TOKEN_TTL_S, key: bytes | None = None) -> None:
        self.ttl_s = ttl_s
        self._key = key or os.urandom(32)
        self._used: dict[str, float] = {}  # nonce -> expiry

    def mint(self, now: float) -> str:
        expires_ms = int((now + self.ttl_s) * 1000)
        nonce = os.urandom(12).hex()
        return f"{expires_ms}.{nonce}.{_mac(self._key, f'media:{expires_ms}:{nonce}')}"

    def redeem(self, token: str, now: float) -> str | None:
        """None if ``token`` admits one media socket now (it is then spent), else why not."""
        fields = token.split(".")
        if len(fields) != 3 or not fields[0].isdigit():
            return "malformed"
        expires_ms, nonce, mac = fields
        expected = _mac(self._key, f"media:{expires_ms}:{nonce}")
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return "bad signature"
        expires = int(expires_ms) / 1000
        if expires <= now:
            return "expired"
        self._forget_expired(now)
        if nonce in self._used:
            return "already used"
        if len(self._used) >= MAX_OUTSTANDING_MEDIA_TOKENS:
            return "too many tokens in use"
        self._used[nonce] = expires
        return None

    def _forget_expired(self, now: float) -> None:
        for nonce in [n for n, expires in self._used.items() if expires <= now]:
            del self._used[nonce]


def cookie_value(header: str | None, name: bytes = SESSION_COOKIE) -> str | None:
    """The value of one cookie in a Cookie header (twisted's getCookie wants bytes)."""
    if not header:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name.decode():
            return value
    return None


def safe_next(path: str | None, default: str = "/console/phone") -> str:
    """Where the login form may send the browser afterwards: console paths only (no open redirect)."""
    if path and path.startswith("/console/") and "//" not in path and "\\" not in path:
        return path
    return default
