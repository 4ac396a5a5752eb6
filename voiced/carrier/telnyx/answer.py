"""The TeXML application's voice URL (``/answer/telnyx``): answers with TeXML that connects
the call to ``/media/telnyx`` in bidirectional RTP mode.

Telnyx POSTs the call's parameters as a form (CallSid, which is the call's
call_control_id, From, To, AccountSid, ...) and signs the request with Ed25519
(``signature``). With the public key set, a request whose signature does not hold, or
whose timestamp is stale, is answered 403 before anything else is read; the TeXML
then carries a per-call media token as a ``<Parameter>``, which Telnyx hands back in
the stream's ``start`` message (Telnyx does not sign the WebSocket upgrade itself).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from voiced.carrier import media_token
from voiced.carrier.answer import host_from_request
import voiced.carrier.telnyx.signature as signature
from voiced.carrier.telnyx.wire import texml_connect_stream

log = Logger(namespace="voiced.carrier")

MAX_FIELD = 64


class TexmlAnswer(Resource):
    isLeaf = True

    def __init__(self, public_key: Ed25519PublicKey | None, media_secret: str, public_host: str, clock: Any,
                 media_token_ttl_s: float) -> None:
        super().__init__()
        self.public_key = public_key
        self.media_secret = media_secret
        self.public_host = public_host
        self.clock = clock
        self.media_token_ttl_s = media_token_ttl_s

    def render_POST(self, request: Request) -> bytes:
        body = request.content.getvalue()
        if self.public_key is not None:
            why = signature.problem(self.public_key, body, request.getHeader(signature.SIGNATURE_HEADER),
                                    request.getHeader(signature.TIMESTAMP_HEADER), self.clock.seconds())
            if why is not None:
                log.warn("TEXML_REJECTED: {why} from {peer}", why=why, peer=request.getClientAddress())
                request.setResponseCode(403)
                request.setHeader(b"content-type", b"text/plain")
                return b"invalid signature\n"
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)

        def field(name: str) -> str:
            return (form.get(name) or [""])[0][:MAX_FIELD]

        call_id = field("CallSid")
        stream_url = f"wss://{self.public_host or host_from_request(request)}/media/telnyx"
        params = {"From": field("From"), "To": field("To")}
        if self.media_secret:
            # Handed back in the stream's start message: only this call's stream gets in.
            params[media_token.PARAMETER] = media_token.issue(
                self.media_secret, call_id, self.clock.seconds(), self.media_token_ttl_s)
        log.info("TEXML call={call} from={from} to={to} stream={stream}", call=call_id or "-", to=params["To"],
                 stream=stream_url, **{"from": params["From"]})
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return texml_connect_stream(stream_url, params).encode("utf-8")

    def render_GET(self, request: Request) -> bytes:
        # A GET's parameters are in its URL, which Telnyx's signature does not cover.
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        return b"POST only (set the TeXML application's voice method to POST)\n"
