"""What the carriers' answer webhooks (``/twiml``, ``/answer/<carrier>``) share."""

from __future__ import annotations

from twisted.web.server import Request

# A phone number, a SIP URI's user part, a call id: enough for a log line, no more.
MAX_LOGGED_FIELD = 64


def host_from_request(request: Request) -> str:
    # Without VOICED_PUBLIC_URL the Host header is all we have; fine for a tunnel in
    # development, but a proxy may rewrite it (README says so).
    return (request.getHeader("host") or "localhost").strip()


def form_field(request: Request, name: bytes) -> str:
    """The first value of a form (or query) field, cut to ``MAX_LOGGED_FIELD``; "" when absent."""
    values = request.args.get(name) or [b""]
    return values[0].decode("utf-8", "replace")[:MAX_LOGGED_FIELD]
