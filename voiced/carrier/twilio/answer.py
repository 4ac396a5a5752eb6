"""Twilio's voice webhook (``/twiml``): answers with TwiML that connects the call to ``/media``."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from voiced.carrier import media_token
from voiced.carrier.answer import form_field, host_from_request
from voiced.carrier.twilio.signature import request_signature, signature_matches
from voiced.carrier.twilio.wire import twiml_connect_stream

log = Logger(namespace="voiced.carrier")

class TwimlAnswer(Resource):
    isLeaf = True

    def __init__(self, auth_token: str, public_host: str, clock: Any, media_token_ttl_s: float) -> None:
        super().__init__()
        self.auth_token = auth_token
        self.public_host = public_host
        self.clock = clock
        self.media_token_ttl_s = media_token_ttl_s

    def render_POST(self, request: Request) -> bytes:
        if self.auth_token:
            form = parse_qs(request.content.getvalue().decode("utf-8", "replace"), keep_blank_values=True)
            url = f"https://{self.public_host}" + request.uri.decode("utf-8", "replace")
            signature = request_signature(request.getHeader)
            if not signature_matches(self.auth_token, url, form, signature):
                log.warn("TWIML_REJECTED: bad or missing X-Twilio-Signature (or X-SignalWire-Signature) for {url} from {peer}", url=url,
                         peer=request.getClientAddress())
                request.setResponseCode(403)
                return b"invalid signature\n"
        stream_url = f"wss://{self.public_host or host_from_request(request)}/media"
        params = {"From": form_field(request, b"From"), "To": form_field(request, b"To"),
                  "CallSid": form_field(request, b"CallSid")}
        if self.auth_token:
            # Handed back in the stream's start message: only this call's stream gets in.
            params[media_token.PARAMETER] = media_token.issue(
                self.auth_token, params["CallSid"], self.clock.seconds(), self.media_token_ttl_s)
        # Field names as in the text, so JSON lines and text lines read the same.
        log.info("TWIML call={call} from={from} to={to} stream={stream}", call=params["CallSid"] or "-",
                 to=params["To"], stream=stream_url, **{"from": params["From"]})
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return twiml_connect_stream(stream_url, params).encode("utf-8")

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        return b"POST only (Twilio voice webhook)\n"
