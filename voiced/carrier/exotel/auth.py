"""Who may open an Exotel media stream: the credentials in the applet's URL.

Exotel does not sign its WebSocket upgrade. Its Voicebot applet authenticates with
HTTP basic credentials written into the URL it opens, ``wss://USER:PASSWORD@host/path``,
which Exotel sends as ``Authorization: Basic base64(USER:PASSWORD)`` (or it relies on
IP allow-listing, arranged with Exotel's support). voiced's ``exotel_secret`` is those
credentials: ``user:password``, or a single token that the URL carries as the user name
with no password (``wss://TOKEN@host/...``). Compared in constant time. Pure.
"""

from __future__ import annotations

import base64
import binascii
import hmac


def expected_credentials(secret: str) -> bytes:
    """What the Basic header decodes to for ``secret`` ("token" is the user "token", no password)."""
    return (secret if ":" in secret else secret + ":").encode("utf-8")


def basic_authorization(secret: str) -> str:
    """The Authorization header value Exotel sends for ``secret`` (voiced-call sends it too)."""
    return "Basic " + base64.b64encode(expected_credentials(secret)).decode("ascii")


def credentials_problem(secret: str, authorization: str | None) -> str | None:
    """Why ``authorization`` (the header, None when absent) does not admit; None when it does."""
    if not authorization:
        return "no Authorization header (the applet's URL needs wss://credentials@host/...)"
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return f"Authorization is {scheme[:20]!r}, not Basic"
    try:
        presented = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "malformed Basic credentials"
    if not hmac.compare_digest(presented, expected_credentials(secret)):
        return "wrong credentials"
    return None
