"""Vonage's side of a dial: the Voice API request that places it, and the events that tell
how it goes.

``POST {api_base}/v1/calls`` with an application JWT (RS256, as ``carrier.vonage.rest``
makes it) and a JSON body, as Vonage's server SDKs send ``voice.createOutboundCall``:
``to`` ``[{"type": "phone", "number"}]`` (digits, no plus), ``from``, an inline ``ncco``
(the ``connect`` to voiced's ``/media/vonage`` the NCCO answer gives an inbound call),
``event_url`` and ``event_method``. Vonage answers 201 ``{"uuid", "status": "started",
"direction": "outbound", "conversation_uuid"}``: ``uuid`` is the call's leg, the id the
Voice API's updates (hang-up, transfer) take.

The NCCO is written before Vonage names the call, so its WebSocket headers carry the dial
id (``voiced_dial``) and a media token made for the dial id (keyed by the signature
secret); the socket checks the token against the dial and takes the dial's call uuid.

Events are JSON POSTs to ``/vonage/status?dial=d-...`` signed with the signed-webhook JWT
(HS256, the signature secret, ``payload_hash`` of the body): ``status`` started, ringing,
answered, then completed, busy, cancelled, unanswered, timeout, rejected or failed.
Retries as ``twilio_dial``: only when Vonage surely created no call.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from cryptography.hazmat.primitives.asymmetric import rsa
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime

from voiced.carrier import media_token
from voiced.carrier.rest import DEFAULT_BACKOFF, REQUEST_TIMEOUT_S, USER_AGENT
from voiced.carrier.vonage import wire
from voiced.carrier.vonage.rest import DEFAULT_API_BASE, VonageRestError, application_jwt, load_private_key
from voiced.outbound.placing import CannotReadBack, place_call
from voiced.outbound.request import DialRequest
from voiced.outbound.twilio_dial import DIAL_PARAMETER
from voiced.retry import Backoff

STATUS_PATH = "/vonage/status"
MEDIA_PATH = "/media/vonage"
#: Vonage's event status -> voiced's dial status (human/machine verdicts and others are not statuses).
_STATUS = {"started": "initiated", "ringing": "ringing", "answered": "answered", "completed": "completed",
           "busy": "busy", "cancelled": "canceled", "unanswered": "no-answer", "timeout": "no-answer",
           "rejected": "busy", "failed": "failed"}


def dial_status(status: str) -> str | None:
    return _STATUS.get(status.strip().lower())


def status_detail(event: Mapping[str, Any]) -> str:
    parts = []
    for name, key in (("duration", "duration_s"), ("detail", "detail"), ("reason", "reason")):
        value = event.get(name)
        if isinstance(value, (str, int)) and str(value):
            parts.append(f"{key}={str(value)[:60]}")
    return " ".join(parts)


def describe_error(answer: dict[str, Any]) -> str:
    return " ".join(str(answer[k]) for k in ("title", "detail") if answer.get(k))


def dial_body(request: DialRequest, dial_id: str, from_number: str, public_url: str, secret: str, now: float,
              media_token_ttl_s: float, sample_rate: int) -> dict[str, Any]:
    base = public_url.rstrip("/")
    scheme, _, host = base.partition("://")
    headers = {DIAL_PARAMETER: dial_id, "from": from_number.lstrip("+"), "to": request.to.lstrip("+")}
    if secret:
        headers[media_token.PARAMETER] = media_token.issue(secret, dial_id, now, media_token_ttl_s)
    uri = f"{'ws' if scheme == 'http' else 'wss'}://{host}{MEDIA_PATH}"
    body: dict[str, Any] = {
        "to": [{"type": "phone", "number": request.to.lstrip("+")}],
        "from": {"type": "phone", "number": from_number.lstrip("+")},
        "ncco": wire.connect_ncco(uri, sample_rate, headers, signed_upgrade=bool(secret)),
        "event_url": [f"{base}{STATUS_PATH}?dial={dial_id}"],
        "event_method": "POST",
    }
    if request.machine_detection:
        body["machine_detection"] = "continue"
    return body


class VonageDialer:
    """Places calls through Vonage's Voice API (a ``CarrierDialer``)."""

    carrier = "vonage"

    def __init__(self, http: HTTPClient, clock: IReactorTime, application_id: str, private_key: rsa.RSAPrivateKey,
                 public_url: str, signature_secret: str, media_token_ttl_s: float, sample_rate: int,
                 api_base: str = DEFAULT_API_BASE, backoff: Backoff | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        if not application_id or private_key is None:
            raise ValueError("dialing through Vonage needs VOICED_VONAGE_APPLICATION_ID and its private key")
        if not public_url:
            raise ValueError("dialing needs --public-url: the https:// base Vonage streams the call to")
        self._http = http
        self._clock = clock
        self._application_id = application_id
        self._key = private_key
        self._url = f"{api_base.rstrip('/')}/v1/calls"
        self._public_url = public_url
        self._secret = signature_secret
        self._ttl_s = media_token_ttl_s
        self._sample_rate = sample_rate
        self._backoff = backoff or DEFAULT_BACKOFF
        self._timeout_s = request_timeout_s

    def __repr__(self) -> str:  # the key stays out of any log that prints us
        return f"VonageDialer(application_id={self._application_id!r}, url={self._url!r})"

    def place(self, dial_id: str, request: DialRequest, from_number: str) -> Deferred[str]:
        """Ask Vonage to place the call; fires with its uuid, or fails with ``VonageRestError``
        or the last connection error once the retries ran out."""
        body = json.dumps(dial_body(request, dial_id, from_number, self._public_url, self._secret,
                                    self._clock.seconds(), self._ttl_s, self._sample_rate),
                          separators=(",", ":")).encode()

        def send() -> Deferred[Any]:
            # A fresh token each attempt: a retry must not carry one near its expiry.
            token = application_jwt(self._key, self._application_id, self._clock.seconds())
            return self._http.post(self._url, data=body, headers={
                b"Authorization": [f"Bearer {token}".encode()], b"Content-Type": [b"application/json"],
                b"User-Agent": [USER_AGENT.encode()], b"Accept": [b"application/json"]})

        return place_call(self._clock, dial_id, send, lambda answer: answer.get("uuid"), VonageRestError,
                          describe_error, self._backoff, self._timeout_s)

    def fetch_status(self, call_sid: str) -> Deferred[str | None]:
        return fail(CannotReadBack("voiced does not read Vonage calls back yet"))

    def find_calls(self, to: str, from_number: str) -> Deferred[list[dict[str, Any]]]:
        return fail(CannotReadBack("voiced does not read Vonage calls back yet"))


def vonage_dialer(settings: Any, http: HTTPClient, clock: IReactorTime) -> VonageDialer:
    s = settings
    with open(s.vonage_private_key_file, "rb") as f:
        key = load_private_key(f.read())
    return VonageDialer(http, clock, s.vonage_application_id, key, s.public_url, s.vonage_signature_secret,
                        s.media_token_ttl_s, s.vonage_sample_rate, s.vonage_api_base)


def dial_call_id(core: Any, dial_id: str) -> str:
    """The call uuid Vonage gave the dial (its stream's headers name only the dial); "" when unknown."""
    dialer = getattr(core, "dialer", None)
    view = dialer.snapshot(dial_id) if dialer is not None else None
    return str(view["call_sid"]) if view else ""
