"""The HTTP sites: each carrier's media socket and answer (``voiced.carrier``), the
console, and /health, /health/ready, /health/warmup and /metrics for operators. By
default one port serves them all; with --admin-listen the operators' routes move to
a port of their own (loopback, or a cluster-internal address) and the public port no
longer has them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

if TYPE_CHECKING:
    from voiced.carrier.base import Carrier
    from voiced.console import Console
    from voiced.service import VoicedService

log = Logger(namespace="voiced.web")

# A carrier's webhook form is a few KB; nothing voiced serves takes more.
MAX_BODY_BYTES = 64 * 1024


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


class Branch(Resource):
    """A path that is both a route of its own and the parent of others: ``/media`` is
    Twilio's media socket, ``/media/<carrier>`` each other carrier's."""

    def __init__(self) -> None:
        super().__init__()
        self.default: Resource | None = None

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"" and self.default is not None:
            return self.default
        return super().getChild(path, request)

    def render(self, request: Request) -> bytes:
        if self.default is None:
            return super().render(request)
        return self.default.render(request)


def mount(root: Resource, path: str, resource: Resource) -> None:
    """Put ``resource`` at ``path`` ("media/telnyx") under ``root``, beside whatever is there."""
    *parents, leaf = path.encode().split(b"/")
    node = root
    for name in parents:
        child = node.children.get(name)
        if not isinstance(child, Branch):
            branch = Branch()
            branch.default = child
            node.putChild(name, branch)
            child = branch
        node = child
    existing = node.children.get(leaf)
    if isinstance(existing, Branch):
        existing.default = resource
    else:
        node.putChild(leaf, resource)


def _site(root: Resource) -> Site:
    site = Site(root, requestFactory=BoundedRequest)
    site.displayTracebacks = False
    site.noisy = False
    return site


def add_admin_routes(root: Resource, service: "VoicedService") -> Resource:
    root.putChild(b"health", Liveness(service))
    root.putChild(b"metrics", Metrics(service))
    from voiced.outbound.resources import Calls

    root.putChild(b"calls", Calls(service))  # POST /calls, GET /calls/{id}: bearer token (--admin-token)
    from voiced.outbound.campaign_resource import CampaignsResource

    root.putChild(b"campaigns", CampaignsResource(  # POST /campaigns, GET /campaigns/{id}: the same token
        lambda: service.campaigns or "campaigns need VOICED_JOURNAL, outbound dialling and --workers 1",
        service.settings.admin_token))
    return root


def build_site(service: "VoicedService", carriers: "list[Carrier]", console: "Console | None" = None,
               with_admin: bool = True) -> Site:
    """The carriers' site (each carrier's media socket and answer, where it says: Twilio's
    /media and /twiml, /media/<carrier> and /answer/<carrier> for the others), the console
    when it is on, and the operators' routes unless they have their own port."""
    root = Resource()
    for carrier in carriers:
        if carrier.media is not None:
            mount(root, carrier.media_path, carrier.media)
        if carrier.answer is not None:
            mount(root, carrier.answer_path, carrier.answer)
    from voiced.outbound.resources import TwilioStatus

    mount(root, "twilio/status", TwilioStatus(service))  # the status callbacks of the calls voiced places
    from voiced.outbound.carrier_status import status_routes

    for path, route in status_routes().items():  # /plivo/status, /vonage/status, /telnyx/status
        mount(root, path, route(service))
    if console is not None and console.enabled:  # off: /console is a 404 like any unknown path
        root.putChild(b"console", console.resource())
    if with_admin:
        add_admin_routes(root, service)
    return _site(root)


def build_admin_site(service: "VoicedService") -> Site:
    """/health* and /metrics alone, for --admin-listen."""
    return _site(add_admin_routes(Resource(), service))
