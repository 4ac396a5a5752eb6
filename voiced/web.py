"""The HTTP resources: /media and /twiml for the carrier; /health, /health/ready,
/health/warmup and /metrics for operators. By default one port serves them all;
with --admin-listen the operators' routes move to a port of their own (loopback,
or a cluster-internal address) and the public port no longer has them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from autobahn.twisted.resource import WebSocketResource
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from voiced.carrier.protocol import MediaStreamFactory
from voiced.carrier import media_token
from voiced.carrier.signature import signature_matches
from voiced.carrier.twilio import twiml_connect_stream

if TYPE_CHECKING:
    from voiced.service import VoicedService

log = Logger(namespace="voiced.web")

# Twilio's webhook form is a few KB; nothing voiced serves takes more.
MAX_BODY_BYTES = 64 * 1024
MAX_LOGGED_FIELD = 64


class BoundedRequest(Request):
    """Keeps at most MAX_BODY_BYTES of a request body; a larger body is answered 413
    without being stored or parsed (it would otherwise be parsed on the reactor thread)."""

    body_too_large = False
    _body_bytes = 0

    def gotLength(self, length: int | None) -> None:
        self.body_too_large = length is not None and length > MAX_BODY_BYTES
        super().gotLength(None if self.body_too_large else length)

    def handleContentChunk(self, data: bytes) -> None:
        self._body_bytes += len(data)
        if self._body_bytes > MAX_BODY_BYTES:
            self.body_too_large = True
        if not self.body_too_large:
            super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.body_too_large:
            self.content.seek(0)
            self.content.truncate()  # nothing of a cut body is parsed
        super().requestReceived(command, path, version)

    def process(self) -> None:
        if not self.body_too_large:
            super().process()
            return
        self.setResponseCode(413)
        self.setHeader(b"content-type", b"text/plain")
        self.write(b"request body too large\n")
        self.finish()


def _json(request: Request, status: int, body: dict) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, sort_keys=True).encode() + b"\n"


class _Leaf(Resource):
    isLeaf = True

    def __init__(self, service: "VoicedService") -> None:
        super().__init__()
        self.service = service


class Liveness(Resource):
    """200 while the process is healthy; 503 once a supervisor should restart it (warm-up
    failed for good, or has not finished within VOICED_WARMUP_TIMEOUT_S)."""

    def __init__(self, service: "VoicedService") -> None:
        super().__init__()
        self.service = service
        self.putChild(b"ready", Readiness(service))
        self.putChild(b"warmup", Warmup(service))

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self
        return super().getChild(path, request)

    def render_GET(self, request: Request) -> bytes:
        body = self.service.liveness()
        return _json(request, 200 if body["status"] == "ok" else 503, body)


class Readiness(_Leaf):
    def render_GET(self, request: Request) -> bytes:
        ready, body = self.service.readiness()
        return _json(request, 200 if ready else 503, body)


class Warmup(_Leaf):
    def render_GET(self, request: Request) -> bytes:
        return _json(request, 200, self.service.warmup_report())


class Metrics(_Leaf):
    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self.service.metrics.registry)


class Twiml(_Leaf):
    """Twilio's voice webhook: answers with TwiML that connects the call to /media."""

    def render_POST(self, request: Request) -> bytes:
        settings = self.service.settings
        if settings.twilio_auth_token:
            form = parse_qs(request.content.getvalue().decode("utf-8", "replace"), keep_blank_values=True)
            url = f"https://{settings.public_host}" + request.uri.decode("utf-8", "replace")
            signature = request.getHeader("x-twilio-signature")
            if not signature_matches(settings.twilio_auth_token, url, form, signature):
                log.warn("TWIML_REJECTED: bad or missing X-Twilio-Signature for {url} from {peer}", url=url,
                         peer=request.getClientAddress())
                request.setResponseCode(403)
                return b"invalid signature\n"

        def field(name: bytes) -> str:
            values = request.args.get(name) or [b""]
            return values[0].decode("utf-8", "replace")[:MAX_LOGGED_FIELD]

        stream_url = f"wss://{settings.public_host or self._host_from_request(request)}/media"
        params = {"From": field(b"From"), "To": field(b"To"), "CallSid": field(b"CallSid")}
        if settings.twilio_auth_token:
            # Handed back in the stream's start message: only this call's stream gets in.
            params[media_token.PARAMETER] = media_token.issue(
                settings.twilio_auth_token, params["CallSid"], self.service.clock.seconds(), settings.media_token_ttl_s)
        # Field names as in the text, so JSON lines and text lines read the same.
        log.info("TWIML call={call} from={from} to={to} stream={stream}", call=params["CallSid"] or "-",
                 to=params["To"], stream=stream_url, **{"from": params["From"]})
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return twiml_connect_stream(stream_url, params).encode("utf-8")

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        return b"POST only (Twilio voice webhook)\n"

    def _host_from_request(self, request: Request) -> str:
        # Without VOICED_PUBLIC_URL the Host header is all we have; fine for a
        # tunnel in development, but a proxy may rewrite it (README says so).
        return (request.getHeader("host") or "localhost").strip()


def _site(root: Resource) -> Site:
    site = Site(root, requestFactory=BoundedRequest)
    site.displayTracebacks = False
    site.noisy = False
    return site


def add_admin_routes(root: Resource, service: "VoicedService") -> Resource:
    root.putChild(b"health", Liveness(service))
    root.putChild(b"metrics", Metrics(service))
    return root


def build_site(service: "VoicedService", with_admin: bool = True) -> Site:
    """The carrier's site (/media, /twiml), with the operators' routes unless they have their own port."""
    root = Resource()
    factory = MediaStreamFactory(service, service.clock)
    root.putChild(b"media", WebSocketResource(factory))
    root.putChild(b"twiml", Twiml(service))
    console = getattr(service, "console", None)
    if console is not None and console.enabled:  # off: /console is a 404 like any unknown path
        root.putChild(b"console", console.resource())
    if with_admin:
        add_admin_routes(root, service)
    return _site(root)


def build_admin_site(service: "VoicedService") -> Site:
    """/health* and /metrics alone, for --admin-listen."""
    return _site(add_admin_routes(Resource(), service))
