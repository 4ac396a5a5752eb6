"""The HTTP face of outbound calls.

On the operators' site (``--admin-listen``, or the one port): ``POST /calls`` places a
call (``{"to": "+9725...", "variables": {...}, "from": optional}``: 201 ``{"id", "status"}``)
and ``GET /calls/{id}`` answers its status history. Both need ``Authorization: Bearer
<--admin-token>``: 401 without it or with another, 503 while no token is configured
(placing calls costs money; it is never open).

On the carriers' site: ``POST /twilio/status?dial=d-...``, Twilio's status callbacks,
signed with X-Twilio-Signature exactly as ``/twiml`` is (403 when wrong).
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from voiced.carrier.twilio.signature import request_signature, signature_matches
from voiced.outbound.dialer import DialError
from voiced.outbound.request import BadDialRequest, DialRequest, is_dial_id
from voiced.outbound.twilio_dial import dial_status, status_detail

if TYPE_CHECKING:
    from voiced.service import VoicedService

log = Logger(namespace="voiced.outbound")


def _json(request: Request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, sort_keys=True).encode() + b"\n"


def _finish(request: Request, status: int, body: Any) -> None:
    if request.finished or request._disconnected:  # the client went away while the carrier answered
        return
    request.write(_json(request, status, body))
    request.finish()


def refusal(request: Request, admin_token: str) -> bytes | None:
    """The answer to a request without the admin bearer token; None when it has it."""
    if not admin_token:
        return _json(request, 503, {"error": "placing calls needs an admin token: set --admin-token "
                                             "(VOICED_ADMIN_TOKEN) and send it as Authorization: Bearer <token>"})
    given = (request.getHeader("authorization") or "").strip()
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), admin_token.encode()):
        request.setHeader(b"www-authenticate", b'Bearer realm="voiced"')
        return _json(request, 401, {"error": "missing or wrong bearer token (Authorization: Bearer <admin token>)"})
    return None


class Calls(Resource):
    """``POST /calls`` and ``GET /calls/{id}``."""

    def __init__(self, service: "VoicedService") -> None:
        super().__init__()
        self.service = service

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self
        return DialView(self.service, path.decode("utf-8", "replace"))

    def render_POST(self, request: Request) -> bytes | int:
        refused = refusal(request, self.service.settings.admin_token)
        if refused is not None:
            return refused
        if not self.service.ready:
            # The call would be refused when its stream arrives (warming up, or draining).
            return _json(request, 503, {"error": "voiced is not ready to take calls (warming up or stopping)"})
        dialer = self.service.dialer
        if dialer is None:
            return _json(request, 503, {"error": "no carrier to dial with: set --public-url and a carrier's REST "
                                                 "credentials (README: Outbound calls)"})
        try:
            body = json.loads(request.content.getvalue() or b"null")
        except ValueError as e:
            return _json(request, 400, {"error": f"the body is not JSON: {e}"})
        try:
            dial_request = DialRequest.parse(body)
            choose = getattr(dialer.carrier, "dialer_for", None)
            if choose is not None:
                choose(dial_request.carrier)  # a carrier this daemon has no credentials for: 400
            placing = dialer.dial(dial_request)
        except (BadDialRequest, DialError) as e:
            return _json(request, 400, {"error": str(e)})

        def placed(dial_id: str) -> None:
            _finish(request, 201, {"id": dial_id, "status": "queued"})

        def failed(failure: Failure) -> None:
            if not failure.check(DialError):
                log.failure("POST /calls", failure)
            _finish(request, 502, {"error": failure.getErrorMessage()})

        placing.addCallbacks(placed, failed)
        return NOT_DONE_YET

    def render_GET(self, request: Request) -> bytes:
        refused = refusal(request, self.service.settings.admin_token)
        return refused if refused is not None else _json(request, 405, {"error": "GET /calls/{id}; POST /calls"})


class DialView(Resource):
    isLeaf = True

    def __init__(self, service: "VoicedService", dial_id: str) -> None:
        super().__init__()
        self.service = service
        self.dial_id = dial_id

    def render_GET(self, request: Request) -> bytes | int:
        refused = refusal(request, self.service.settings.admin_token)
        if refused is not None:
            return refused
        dialer = self.service.dialer
        if dialer is None or not is_dial_id(self.dial_id) or request.postpath:
            return _json(request, 404, {"error": f"no call {self.dial_id[:40]!r}"})

        def found(dial: dict[str, Any] | None) -> None:
            if dial is None:
                _finish(request, 404, {"error": f"no call {self.dial_id!r}"})
            else:
                _finish(request, 200, dial)

        def failed(failure: Failure) -> None:
            log.failure("GET /calls/{dial}", failure, dial=self.dial_id)
            _finish(request, 500, {"error": "the journal could not be read"})

        dialer.describe(self.dial_id).addCallbacks(found, failed)
        return NOT_DONE_YET


class TwilioStatus(Resource):
    """``POST /twilio/status?dial=d-...``: Twilio's status callbacks for the dials voiced placed."""

    isLeaf = True

    def __init__(self, service: "VoicedService") -> None:
        super().__init__()
        self.service = service

    def render_POST(self, request: Request) -> bytes:
        settings = self.service.settings
        form = {k: v[0] for k, v in parse_qs(request.content.getvalue().decode("utf-8", "replace"),
                                             keep_blank_values=True).items()}
        if settings.twilio_auth_token:
            # Twilio signs the URL it was given: the public base plus path and query, as for /twiml.
            url = settings.public_url.rstrip("/") + request.uri.decode("utf-8", "replace")
            params = parse_qs(request.content.getvalue().decode("utf-8", "replace"), keep_blank_values=True)
            if not signature_matches(settings.twilio_auth_token, url, params, request_signature(request.getHeader)):
                log.warn("STATUS_REJECTED: bad or missing X-Twilio-Signature for {url} from {peer}", url=url,
                         peer=request.getClientAddress())
                request.setResponseCode(403)
                return b"invalid signature\n"
        dial_id = (request.args.get(b"dial") or [b""])[0].decode("utf-8", "replace")
        status = dial_status(form.get("CallStatus", ""))
        if not is_dial_id(dial_id) or status is None:
            request.setResponseCode(400)
            return b"expected ?dial=d-... and a CallStatus\n"
        dialer = self.service.dialer
        known = dialer is not None and dialer.status(dial_id, status, status_detail(form), form.get("CallSid", ""),
                                                     form.get("AnsweredBy", ""))
        if not known:
            log.info("STATUS_IGNORED dial={dial} status={status}: not a dial this process knows", dial=dial_id,
                     status=status)
        request.setResponseCode(204)
        return b""

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        return b"POST only (Twilio status callback)\n"
