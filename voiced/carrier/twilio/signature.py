"""X-Twilio-Signature: how Twilio signs its requests, and how voiced checks them.

signature = base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value,
sorted by name)). For the voice webhook the URL is the public https:// URL Twilio
called; for the Media Streams upgrade (a GET) it is the public wss:// URL alone.
Behind a proxy the host the daemon sees is not what Twilio signed, so the URL is
always rebuilt from the configured public base URL. SignalWire's compatibility API
signs exactly so, with the project's signing key, in ``X-SignalWire-Signature``.
Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Callable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]] | None = None) -> str:
    data = url
    for name in sorted(params or {}):
        values = (params or {})[name]
        for value in sorted({values} if isinstance(values, str) else set(values)):
            data += name + value
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _port_variants(url: str) -> set[str]:
    """Twilio is not consistent about an explicit default port: accept either form."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port
    default = _DEFAULT_PORTS.get(parts.scheme)
    if port is None or port == default:
        bare = urlunsplit(parts._replace(netloc=host))
        with_port = urlunsplit(parts._replace(netloc=f"{host}:{default}")) if default else bare
        return {bare, with_port}
    return {url}


def signature_matches(
    auth_token: str, url: str, params: Mapping[str, str | Sequence[str]] | None, signature: str | None
) -> bool:
    if not signature:
        return False
    return any(
        hmac.compare_digest(twilio_signature(auth_token, candidate, params).encode(), signature.encode())
        for candidate in _port_variants(url)
    )


def request_signature(headers: Mapping[str, str] | Callable[[str], str | None]) -> str | None:
    """The signature a request carries: Twilio's header, or SignalWire's (its compatibility API
    signs the same way with the project's signing key, under its own name as well)."""
    get = headers.get if isinstance(headers, Mapping) else headers
    return get("x-twilio-signature") or get("x-signalwire-signature")
