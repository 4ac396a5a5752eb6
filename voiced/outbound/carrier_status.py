"""The status callbacks of the calls voiced places through Plivo, Vonage and Telnyx (Twilio's
are ``resources.TwilioStatus``), on the carriers' site. Each is checked as that carrier's
answer route checks its requests (403 when wrong), names its dial in the URL voiced gave
(``?dial=d-...``; Telnyx: the call's ``client_state``), and moves the dial's status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from voiced.carrier.plivo.signature import NONCE_HEADER, SIGNATURE_HEADERS, signature_matches
from voiced.outbound.request import is_dial_id

if TYPE_CHECKING:
    from voiced.service import VoicedService

log = Logger(namespace="voiced.outbound")


def report_status(service: "VoicedService", carrier: str, dial_id: str, status: str, detail: str,
                  call_id: str = "") -> None:
    dialer = service.dialer
    known = dialer is not None and dialer.status(dial_id, status, detail, call_id)
    if not known:
        log.info("STATUS_IGNORED carrier={carrier} dial={dial} status={status}: not a dial this process knows",
                 carrier=carrier, dial=dial_id, status=status)


def answered_by(service: "VoicedService", dial_id: str, who: str) -> None:
    """The carrier's answering-machine verdict on a dial's call."""
    dialer = service.dialer
    if dialer is not None and dialer.known(dial_id):
        dialer.answered_by(dial_id, who)


def _reject(request: Request, carrier: str, what: str) -> bytes:
    log.warn("STATUS_REJECTED carrier={carrier}: {what} from {peer}", carrier=carrier, what=what,
             peer=request.getClientAddress())
    request.setResponseCode(403)
    return b"invalid signature\n"


class _StatusRoute(Resource):
    isLeaf = True
    carrier = ""

    def __init__(self, service: "VoicedService") -> None:
        super().__init__()
        self.service = service

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        return f"POST only ({self.carrier} status callback)\n".encode()

    def dial_id(self, request: Request) -> str:
        return (request.args.get(b"dial") or [b""])[0].decode("utf-8", "replace")

    def public_url(self, request: Request) -> str:
        return self.service.settings.public_url.rstrip("/") + request.uri.decode("utf-8", "replace")


class PlivoStatus(_StatusRoute):
    """``POST /plivo/status?dial=d-...``: Plivo's ring and hang-up callbacks, X-Plivo-Signature-V3."""

    carrier = "plivo"

    def render_POST(self, request: Request) -> bytes:
        from voiced.outbound.plivo_dial import dial_status, status_detail

        token = self.service.settings.plivo_auth_token
        params = parse_qs(request.content.getvalue().decode("utf-8", "replace"), keep_blank_values=True)
        if token:
            url = self.public_url(request)
            signatures = [request.getHeader(name) for name in SIGNATURE_HEADERS]
            if not signature_matches(token, "POST", url, params, request.getHeader(NONCE_HEADER), signatures):
                return _reject(request, self.carrier, f"bad or missing X-Plivo-Signature-V3 for {url[:200]}")
        form = {name: values[0] for name, values in params.items()}
        dial_id = self.dial_id(request)
        if form.get("Event") == "MachineDetection" and is_dial_id(dial_id):
            # Plivo's machine_detection_url (the same route): a machine answered.
            answered_by(self.service, dial_id, "machine" if form.get("Machine") == "true" else "human")
            request.setResponseCode(204)
            return b""
        status = dial_status(form.get("CallStatus", ""))
        if not is_dial_id(dial_id) or status is None:
            request.setResponseCode(400)
            return b"expected ?dial=d-... and a CallStatus\n"
        # The dial's call id is Plivo's request_uuid until the answer names the call: not compared here.
        report_status(self.service, self.carrier, dial_id, status, status_detail(form))
        request.setResponseCode(204)
        return b""


class VonageStatus(_StatusRoute):
    """``POST /vonage/status?dial=d-...``: Vonage's call events (JSON), signed-webhook JWT."""

    carrier = "vonage"

    def render_POST(self, request: Request) -> bytes:
        import json

        import voiced.carrier.vonage.signature as signature
        from voiced.outbound.vonage_dial import dial_status, status_detail

        body = request.content.getvalue()
        secret = self.service.settings.vonage_signature_secret
        if secret:
            try:
                claims = signature.verify(secret, request.getHeader("authorization"), self.service.clock.seconds())
                problem = signature.payload_problem(claims, body)
            except signature.SignatureError as e:
                problem = str(e)
            if problem is not None:
                return _reject(request, self.carrier, problem)
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            event = None
        dial_id = self.dial_id(request)
        if not is_dial_id(dial_id) or not isinstance(event, dict) or not isinstance(event.get("status"), str):
            request.setResponseCode(400)
            return b"expected ?dial=d-... and a JSON event with a status\n"
        status = dial_status(event["status"])
        if event["status"] in ("human", "machine"):  # machine_detection's verdict
            answered_by(self.service, dial_id, event["status"])
        if status is not None:  # human/machine verdicts, disconnected...: not a call status
            report_status(self.service, self.carrier, dial_id, status, status_detail(event),
                          str(event.get("uuid") or ""))
        request.setResponseCode(204)
        return b""


class TelnyxStatus(_StatusRoute):
    """``POST /telnyx/status?dial=d-...``: Call Control webhooks (JSON), Ed25519-signed."""

    carrier = "telnyx"

    _key: tuple[Any, str] | None = None

    def _public_key(self) -> tuple[Any, str]:
        """The account's Ed25519 key (None: unsigned) and, when it cannot be read, why; read once."""
        if self._key is None:
            from voiced.carrier.telnyx.signature import public_key

            text = self.service.settings.telnyx_public_key
            try:
                self._key = (public_key(text) if text else None, "")
            except ValueError as e:  # start-up says so for the carrier; every webhook is refused meanwhile
                self._key = (None, str(e))
        return self._key

    def render_POST(self, request: Request) -> bytes:
        import json

        import voiced.carrier.telnyx.signature as signature
        from voiced.outbound.telnyx_dial import dial_of_client_state, dial_status, status_detail

        body = request.content.getvalue()
        key, key_problem = self._public_key()
        if key_problem:
            return _reject(request, self.carrier, key_problem)
        if key is not None:
            problem = signature.problem(key, body, request.getHeader(signature.SIGNATURE_HEADER),
                                        request.getHeader(signature.TIMESTAMP_HEADER), self.service.clock.seconds())
            if problem is not None:
                return _reject(request, self.carrier, problem)
        try:
            data = json.loads(body).get("data")
        except (ValueError, UnicodeDecodeError, RecursionError, AttributeError):
            data = None
        payload = data.get("payload") if isinstance(data, dict) else None
        if not isinstance(payload, dict) or not isinstance(data.get("event_type"), str):
            request.setResponseCode(400)
            return b"expected a Call Control webhook: {\"data\": {\"event_type\", \"payload\"}}\n"
        # The signature covers the body, not the URL: the signed client_state names the dial.
        dial_id = dial_of_client_state(payload.get("client_state")) if payload.get("client_state") else \
            self.dial_id(request)
        if not is_dial_id(dial_id):
            request.setResponseCode(400)
            return b"expected the dial's client_state (or ?dial=d-...)\n"
        status = dial_status(data["event_type"], payload)
        if status is not None:  # streaming.*, call.machine.*...: not a call status
            report_status(self.service, self.carrier, dial_id, status, status_detail(data["event_type"], payload),
                          str(payload.get("call_control_id") or ""))
        request.setResponseCode(204)
        return b""


def status_routes() -> dict[str, Callable[[Any], Resource]]:
    """Where each carrier's status callbacks are mounted on the carriers' site."""
    routes: dict[str, Callable[[Any], Resource]] = {"plivo/status": PlivoStatus,
                                                      "vonage/status": VonageStatus,
                                                      "telnyx/status": TelnyxStatus}
    return routes
