"""Plivo's side of a dial: the Call API request that places it, and the callbacks that
tell how it goes.

``POST {api_base}/v1/Account/{auth_id}/Call/``, HTTP basic auth (auth ID, auth token), a
JSON body, as the official ``plivo`` package sends ``client.calls.create(from_, to_,
answer_url, ...)``. Plivo answers 201 ``{"message": "call fired", "request_uuid"}``: the
request's id, not yet the call's. When the callee picks up Plivo fetches ``answer_url``:
voiced's own ``/answer/plivo`` with ``?voiced_dial=d-...``, signed with
X-Plivo-Signature-V3 like any answer. That answer names the call (``CallUUID``), which the
dial takes as its call id (``dial_answered``), and puts the dial id beside the call in the
stream URL, under its media token, so the stream is matched to the dial.

``ring_url`` and ``hangup_url`` are ``/plivo/status?dial=d-...``, signed the same way:
``CallStatus`` ringing, then completed, busy, failed, timeout (no answer), no-answer or
cancel. Retries as ``twilio_dial``: only when Plivo surely created no call.
"""

from __future__ import annotations

import json
from typing import Any, Mapping
from urllib.parse import quote

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime

from voiced.carrier.plivo.rest import DEFAULT_API_BASE, PlivoRestError
from voiced.carrier.rest import DEFAULT_BACKOFF, REQUEST_TIMEOUT_S, USER_AGENT
from voiced.outbound.placing import CannotReadBack, place_call
from voiced.outbound.request import DialRequest
from voiced.outbound.twilio_dial import DIAL_PARAMETER
from voiced.retry import Backoff

STATUS_PATH = "/plivo/status"
ANSWER_PATH = "/answer/plivo"
#: Plivo's CallStatus -> voiced's dial status.
_STATUS = {"ringing": "ringing", "in-progress": "answered", "completed": "completed", "busy": "busy",
           "failed": "failed", "timeout": "no-answer", "no-answer": "no-answer", "cancel": "canceled"}


def dial_status(call_status: str) -> str | None:
    return _STATUS.get(call_status.strip().lower())


def status_detail(form: Mapping[str, str]) -> str:
    parts = []
    for name, key in (("Duration", "duration_s"), ("HangupCause", "cause"), ("HangupCauseCode", "cause_code")):
        value = form.get(name, "")
        if value:
            parts.append(f"{key}={value[:60]}")
    return " ".join(parts)


def describe_error(answer: dict[str, Any]) -> str:
    detail = answer.get("error", answer.get("message", ""))
    return detail if isinstance(detail, str) else json.dumps(detail)


def dial_body(request: DialRequest, dial_id: str, from_number: str, public_url: str) -> dict[str, str]:
    base = public_url.rstrip("/")
    status_url = f"{base}{STATUS_PATH}?dial={dial_id}"
    body = {"from": from_number.lstrip("+"), "to": request.to.lstrip("+"),
            "answer_url": f"{base}{ANSWER_PATH}?{DIAL_PARAMETER}={dial_id}", "answer_method": "POST",
            "ring_url": status_url, "ring_method": "POST", "hangup_url": status_url, "hangup_method": "POST"}
    if request.machine_detection:
        body.update({"machine_detection": "true", "machine_detection_url": status_url,
                     "machine_detection_method": "POST"})
    return body


class PlivoDialer:
    """Places calls through Plivo's Call API (a ``CarrierDialer``)."""

    carrier = "plivo"

    def __init__(self, http: HTTPClient, clock: IReactorTime, auth_id: str, auth_token: str, public_url: str,
                 api_base: str = DEFAULT_API_BASE, backoff: Backoff | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        if not auth_id or not auth_token:
            raise ValueError("dialing through Plivo needs VOICED_PLIVO_AUTH_ID and VOICED_PLIVO_AUTH_TOKEN")
        if not public_url:
            raise ValueError("dialing needs --public-url: the https:// base Plivo fetches the answer from")
        self._http = http
        self._clock = clock
        self._auth = (auth_id, auth_token)
        self._url = f"{api_base.rstrip('/')}/v1/Account/{quote(auth_id, safe='')}/Call/"
        self._public_url = public_url
        self._backoff = backoff or DEFAULT_BACKOFF
        self._timeout_s = request_timeout_s

    def __repr__(self) -> str:
        return f"PlivoDialer(auth_id={self._auth[0]!r}, url={self._url!r})"

    def place(self, dial_id: str, request: DialRequest, from_number: str) -> Deferred[str]:
        """Ask Plivo to place the call; fires with its request_uuid (the call's own UUID comes
        with the answer), or fails with ``PlivoRestError`` or the last connection error."""
        body = json.dumps(dial_body(request, dial_id, from_number, self._public_url)).encode()

        def send() -> Deferred[Any]:
            return self._http.post(self._url, data=body, auth=self._auth, headers={
                b"Content-Type": [b"application/json"], b"User-Agent": [USER_AGENT.encode()],
                b"Accept": [b"application/json"]})

        return place_call(self._clock, dial_id, send, lambda answer: answer.get("request_uuid"), PlivoRestError,
                          describe_error, self._backoff, self._timeout_s)

    def fetch_status(self, call_sid: str) -> Deferred[str | None]:
        return fail(CannotReadBack("voiced does not read Plivo calls back yet"))

    def find_calls(self, to: str, from_number: str) -> Deferred[list[dict[str, Any]]]:
        return fail(CannotReadBack("voiced does not read Plivo calls back yet"))


def plivo_dialer(settings: Any, http: HTTPClient, clock: IReactorTime) -> PlivoDialer:
    s = settings
    return PlivoDialer(http, clock, s.plivo_auth_id, s.plivo_auth_token, s.public_url, s.plivo_api_base)


def dial_answered(core: Any, dial_id: str, call_id: str) -> None:
    """Plivo fetched a dial's answer (signed): the callee picked up call ``call_id``."""
    dialer = getattr(core, "dialer", None)
    if dialer is None or not dialer.known(dial_id):
        return
    dialer.call_named(dial_id, call_id)
    dialer.status(dial_id, "answered", "", call_id)
