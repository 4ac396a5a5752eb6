"""X-Plivo-Signature-V3: how Plivo signs its requests to voiced, and how voiced checks them.

Plivo's docs (voice/concepts/signature-validation) say what is signed: the full URL
(scheme, host, port, path, query), for a POST followed by its parameters sorted by name,
then the X-Plivo-Signature-V3-Nonce; HMAC-SHA256 with the auth token, base64. The exact
bytes are those of Plivo's own validators (plivo-python ``utils/signature_v3.py``,
plivo-node ``utils/v3Security.js``, which agree), followed here:

  GET   scheme://host/path?k=v&k=v       the query's parameters sorted by name (and value)
  POST  scheme://host/path?[k=v&k=v.]kvkv  "?" always; the URL's own query and a "." if it
        has one; then each POST parameter's name and value, sorted, run together
  then  "." + nonce, HMAC-SHA256(auth token), base64

The header may hold several signatures separated by commas; one matching is enough.
X-Plivo-Signature-Ma-V3 is made the same way with the main account's token, so either
header is checked against the one token configured. There is no timestamp: a replayed
request cannot be told by its age (the media token's expiry bounds what a replay gets).
Behind a proxy the URL the daemon sees is not what Plivo signed, so it is rebuilt from
the configured public base URL. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Mapping, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

SIGNATURE_HEADERS = ("x-plivo-signature-v3", "x-plivo-signature-ma-v3")
NONCE_HEADER = "x-plivo-signature-v3-nonce"
_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}

Params = Mapping[str, "str | Sequence[str]"]


def _values(value: str | Sequence[str]) -> list[str]:
    return sorted([value] if isinstance(value, str) else list(value))


def _sorted_query(params: Params) -> str:
    return "&".join(f"{name}={value}" for name in sorted(params) for value in _values(params[name]))


def signed_string(method: str, url: str, params: Params | None = None) -> str:
    """What Plivo signs, before the nonce: ``url`` and the POST ``params``, as its SDKs build it."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    url_query = parse_qs(parts.query, keep_blank_values=True)
    params = params or {}
    if method.upper() == "GET":
        # Plivo's GET parameters are in the URL already; any given apart join them (the URL's win).
        query = _sorted_query({**params, **url_query})
        return base + "?" + query if query else base
    query = _sorted_query(url_query)
    if not params:
        return base + "?" + query if query else base
    posted = "".join(f"{name}{value}" for name in sorted(params) for value in _values(params[name]))
    return base + "?" + (query + "." if query else "") + posted


def plivo_signature(auth_token: str, method: str, url: str, nonce: str, params: Params | None = None) -> str:
    message = f"{signed_string(method, url, params)}.{nonce}".encode("utf-8")
    return base64.b64encode(hmac.new(auth_token.encode("utf-8"), message, hashlib.sha256).digest()).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """The URL as configured may or may not spell out a default port: accept either form."""
    parts = urlsplit(url)
    host, port, default = parts.hostname or "", parts.port, _DEFAULT_PORTS.get(parts.scheme)
    if default is None or (port is not None and port != default):
        return [url]
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    return [urlunsplit(parts._replace(netloc=host)), urlunsplit(parts._replace(netloc=f"{host}:{default}"))]


def signature_matches(auth_token: str, method: str, url: str, params: Params | None, nonce: str | None,
                      signatures: Sequence[str | None]) -> bool:
    """Whether any of the comma-separated ``signatures`` (the V3 and Ma-V3 headers) is Plivo's
    for this request; constant-time per comparison."""
    offered = [s.strip().encode() for header in signatures if header for s in header.split(",") if s.strip()]
    if not auth_token or not nonce or not offered:
        return False
    for candidate in _port_variants(url):
        expected = plivo_signature(auth_token, method, candidate, nonce, params).encode()
        if any(hmac.compare_digest(expected, s) for s in offered):
            return True
    return False
