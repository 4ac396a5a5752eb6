"""Plivo's answer URL (``/answer/plivo``): Plivo XML that streams the call to ``/media/plivo``.

Plivo fetches the answer URL when a call comes in (POST by default; GET if the
application says so), signed with X-Plivo-Signature-V3. The XML's <Stream> URL carries
the call's id and numbers and, with an auth token, a short-lived media token over them
(``voiced.carrier.media_token``): Plivo does not sign its WebSocket upgrade, so the token
is what admits the stream. The same resource answers a transfer: Plivo fetches
``/answer/plivo?transfer=<target>`` (voiced's REST control asked it to, signed the same
way) and gets the <Dial> that moves the call. A call voiced placed is answered at
``/answer/plivo?voiced_dial=d-...`` (voiced.outbound.plivo_dial): the dial id goes into the
stream URL under the media token, and ``dial_answered(dial_id, call_uuid)`` tells the dialer.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from voiced.carrier import media_token
from voiced.carrier.answer import MAX_LOGGED_FIELD, form_field, host_from_request
import voiced.carrier.plivo.wire as wire
from voiced.carrier.plivo.signature import NONCE_HEADER, SIGNATURE_HEADERS, signature_matches

log = Logger(namespace="voiced.carrier")

MEDIA_PATH = "/media/plivo"
TRANSFER_PARAMETER = "transfer"


class PlivoAnswer(Resource):
    isLeaf = True

    def __init__(self, auth_token: str, public_url: str, clock: Any, media_token_ttl_s: float,
                 content_type: str = wire.DEFAULT_CONTENT_TYPE,
                 dial_answered: Callable[[str, str], None] | None = None) -> None:
        super().__init__()
        self.dial_answered = dial_answered
        self.auth_token = auth_token
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        self.media_token_ttl_s = media_token_ttl_s
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:
        return self._answer(request)

    def render_POST(self, request: Request) -> bytes:
        return self._answer(request)

    def _public_base(self, request: Request) -> str:
        # Without VOICED_PUBLIC_URL the Host header is all there is: fine for a tunnel, wrong
        # behind a proxy that rewrites it (start-up warns).
        return self.public_url or "https://" + host_from_request(request)

    def _signed(self, request: Request) -> bool:
        url = self._public_base(request) + request.uri.decode("utf-8", "replace")
        method = request.method.decode("ascii", "replace")
        params = None
        if method == "POST":
            params = parse_qs(request.content.getvalue().decode("utf-8", "replace"), keep_blank_values=True)
        signatures = [request.getHeader(name) for name in SIGNATURE_HEADERS]
        if signature_matches(self.auth_token, method, url, params, request.getHeader(NONCE_HEADER), signatures):
            return True
        log.warn("ANSWER_REJECTED carrier=plivo: bad or missing X-Plivo-Signature-V3 for {method} {url} from {peer}",
                 method=method, url=url[:200], peer=request.getClientAddress())
        return False

    def _answer(self, request: Request) -> bytes:
        if self.auth_token and not self._signed(request):
            request.setResponseCode(403)
            return b"invalid signature\n"
        request.setHeader(b"content-type", b"application/xml; charset=utf-8")
        query = parse_qs(urlsplit(request.uri.decode("utf-8", "replace")).query, keep_blank_values=True)
        if TRANSFER_PARAMETER in query:
            return self._transfer(request, query[TRANSFER_PARAMETER][0])
        call, from_number, to_number = (form_field(request, b"CallUUID"), form_field(request, b"From"),
                                        form_field(request, b"To"))
        dial_id = query.get(wire.DIAL_PARAMETER, [""])[0][:MAX_LOGGED_FIELD]
        if dial_id and self.dial_answered is not None:
            self.dial_answered(dial_id, call)
        base = self._public_base(request)
        scheme = "ws" if base.startswith("http://") else "wss"
        stream_base = f"{scheme}://{urlsplit(base).netloc}{MEDIA_PATH}"
        token = ""
        if self.auth_token:
            token = media_token.issue(self.auth_token, wire.token_subject(call, from_number, to_number, dial_id),
                                      self.clock.seconds(), self.media_token_ttl_s)
        url = wire.stream_url(stream_base, call, from_number, to_number, token, media_token.PARAMETER, dial_id)
        log.info("ANSWER carrier=plivo call={call} from={from} to={to} stream={stream}", call=call or "-",
                 to=to_number, stream=stream_base, **{"from": from_number})
        return wire.stream_xml(url, self.content_type).encode("utf-8")

    def _transfer(self, request: Request, target: str) -> bytes:
        try:
            xml = wire.dial_xml(target)
        except ValueError as e:
            log.warn("TRANSFER_REJECTED carrier=plivo: {error}", error=str(e)[:200])
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"text/plain")
            return b"invalid transfer target\n"
        log.info("TRANSFER_XML carrier=plivo call={call} to={to}", call=form_field(request, b"CallUUID") or "-",
                 to=target[:MAX_LOGGED_FIELD])
        return xml.encode("utf-8")
