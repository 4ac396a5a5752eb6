"""Who may open ``/media/asterisk``: the Asterisk that knows the shared secret.

Asterisk signs nothing. Its WebSocket client (res_websocket_client, the
``websocket_client.conf`` connection a ``Dial(WebSocket/...)`` names) presents a secret
two ways, both checked here, in constant time:

- ``username`` and ``password`` in the connection: it sends ``Authorization: Basic
  base64(username:password)`` with the upgrade (res_http_websocket.c); the password
  is the secret, the username is not checked;
- the secret in the connection's ``uri`` query, ``wss://host/media/asterisk?secret=...``
  (Asterisk keeps the query, and appends a ``v(...)`` dial option's parameters with ``&``).

The header is the better of the two: a URI is what proxies and Asterisk's debug log write down.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

QUERY_PARAMETER = "secret"


def basic_auth_password(authorization: str | None) -> str | None:
    """The password of an ``Authorization: Basic`` header; None when there is none or it is malformed."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    return password if colon else None


def _same(secret: str, presented: str) -> bool:
    # Digests first: compare_digest is constant-time only between equal lengths.
    return hmac.compare_digest(hashlib.sha256(secret.encode("utf-8")).digest(),
                               hashlib.sha256(presented.encode("utf-8")).digest())


def secret_matches(secret: str, query_secret: str | None, authorization: str | None) -> bool:
    """True when the upgrade presents ``secret`` in either place (both are checked, always)."""
    if not secret:
        return False
    in_header = basic_auth_password(authorization)
    header_ok = in_header is not None and _same(secret, in_header)
    query_ok = query_secret is not None and _same(secret, query_secret)
    return header_ok or query_ok


def authorization_header(secret: str, username: str = "asterisk") -> str:
    """What Asterisk sends for ``username``/``password = secret`` (the simulated caller uses it)."""
    return "Basic " + base64.b64encode(f"{username}:{secret}".encode("utf-8")).decode("ascii")
