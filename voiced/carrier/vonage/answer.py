"""Vonage's answer webhook (``/answer/vonage``): answers with the NCCO that connects the call
to ``/media/vonage``.

Vonage asks a Voice application's answer_url with GET (its default; the call's fields in
the query) or POST (a JSON body): ``to``, ``from``, ``uuid`` (the caller's leg, the id the
Voice API's REST calls take), ``conversation_uuid``. With the signature secret set, the
request must carry Vonage's signed-webhook JWT (``voiced.carrier.vonage.signature``): a
missing, forged or stale one, or a payload other than the one signed, is answered 403
before anything else happens. The NCCO hands the call's fields back in the WebSocket
endpoint's headers, with the per-call media token when signed.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from voiced.carrier import media_token
from voiced.carrier.answer import host_from_request
import voiced.carrier.vonage.signature as signature
import voiced.carrier.vonage.wire as wire

log = Logger(namespace="voiced.carrier")

MAX_FIELD = 64  # a phone number, a SIP URI's user part, a UUID: well within Vonage's 512-byte headers
FIELDS = ("uuid", "conversation_uuid", "from", "to")


class NccoAnswer(Resource):
    isLeaf = True

    def __init__(self, secret: str, public_host: str, clock: Any, media_token_ttl_s: float,
                 sample_rate: int = 16000) -> None:
        super().__init__()
        self.secret = secret
        self.public_host = public_host
        self.clock = clock
        self.media_token_ttl_s = media_token_ttl_s
        self.sample_rate = sample_rate

    def render_GET(self, request: Request) -> bytes:
        query = request.uri.partition(b"?")[2].decode("utf-8", "replace")
        pairs = parse_qsl(query, keep_blank_values=True)
        return self._answer(request, dict(pairs), b"", pairs)

    def render_POST(self, request: Request) -> bytes:
        request.content.seek(0)
        body = request.content.read()
        try:
            document = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError, RecursionError):
            document = None
        if not isinstance(document, dict):
            # Vonage posts JSON; a form body (a hand-made test, another proxy) is read too.
            document = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return self._answer(request, document, body, None)

    def render(self, request: Request) -> bytes:
        if request.method in (b"GET", b"POST"):
            return super().render(request)
        request.setResponseCode(405)
        request.setHeader(b"allow", b"GET, POST")
        return b"GET or POST only (Vonage answer webhook)\n"

    def _answer(self, request: Request, fields: dict, body: bytes, query: list[tuple[str, str]] | None) -> bytes:
        if self.secret:
            problem = self._signature_problem(request, body, query)
            if problem is not None:
                log.warn("ANSWER_REJECTED carrier=vonage: {problem} from {peer}", problem=problem,
                         peer=request.getClientAddress())
                request.setResponseCode(403)
                request.setHeader(b"content-type", b"text/plain")
                return b"invalid signature\n"
        call = {name: str(fields.get(name) or "")[:MAX_FIELD] for name in FIELDS}
        headers = {name: value for name, value in call.items() if value}
        if self.secret:
            headers[media_token.PARAMETER] = media_token.issue(self.secret, call["uuid"], self.clock.seconds(),
                                                               self.media_token_ttl_s)
        uri = f"wss://{self.public_host or host_from_request(request)}/media/vonage"
        ncco = wire.connect_ncco(uri, self.sample_rate, headers, signed_upgrade=bool(self.secret))
        # Field names as in the text, so JSON lines and text lines read the same.
        log.info("NCCO carrier=vonage call={call} from={from} to={to} stream={stream} audio={audio}",
                 call=call["uuid"] or "-", to=call["to"], stream=uri, audio=wire.content_type(self.sample_rate),
                 **{"from": call["from"]})
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(ncco, separators=(",", ":")).encode("utf-8")

    def _signature_problem(self, request: Request, body: bytes, query: list[tuple[str, str]] | None) -> str | None:
        try:
            claims = signature.verify(self.secret, request.getHeader("authorization"), self.clock.seconds())
        except signature.SignatureError as e:
            return str(e)
        return signature.payload_problem(claims, body, query)
