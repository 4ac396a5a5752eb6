"""Telnyx's side of a dial: the Call Control request that places it, and the webhooks that
tell how it goes.

``POST {api_base}/v2/calls``, ``Authorization: Bearer <API key>``, JSON, as telnyx-python's
``client.calls.dial(...)`` sends it: ``connection_id`` (the Call Control application),
``to``, ``from``, and the media stream: ``stream_url`` (voiced's ``/media/telnyx``),
``stream_track: inbound_track``, ``stream_bidirectional_mode: rtp`` with PCMU at 8 kHz,
the mode voiced's TeXML answer asks for. Telnyx answers 200 ``{"data": {"call_control_id",
"call_leg_id", "call_session_id", ...}}``: the call_control_id is the id the stream's
``start`` names and the Call Control commands (hang-up, transfer) take.

Call Control has no TeXML ``<Parameter>`` to hand back, so the dial id and its media token
(made for the dial id, keyed by the media secret, since Telnyx names the call only in its
answer) ride in the stream URL's query: the socket reads them at the upgrade and checks the
token at ``start``. ``webhook_url`` is ``/telnyx/status?dial=d-...``; Telnyx signs each
webhook with Ed25519, and ``client_state`` (base64 of the dial id) comes back in each.
Events: ``call.initiated``, ``call.answered``, ``call.hangup`` (its ``hangup_cause`` says
how it ended). Retries as ``twilio_dial``: only when Telnyx surely created no call; the
``command_id`` would let Telnyx drop a duplicate all the same.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Mapping
from urllib.parse import urlencode

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime

from voiced.carrier import media_token
from voiced.carrier.rest import DEFAULT_BACKOFF, REQUEST_TIMEOUT_S, USER_AGENT, CarrierRestError
from voiced.carrier.telnyx.rest import DEFAULT_API_BASE
from voiced.outbound.placing import CannotReadBack, place_call
from voiced.outbound.request import DialRequest
from voiced.outbound.twilio_dial import DIAL_PARAMETER
from voiced.retry import Backoff

STATUS_PATH = "/telnyx/status"
MEDIA_PATH = "/media/telnyx"
#: call.hangup's hangup_cause -> voiced's final status (anything else: completed once answered, else failed).
_HANGUP = {"normal_clearing": "completed", "user_busy": "busy", "call_rejected": "busy", "timeout": "no-answer",
           "no_answer": "no-answer", "originator_cancel": "canceled"}


class TelnyxDialError(CarrierRestError):
    """Telnyx refused to place the call (or kept failing)."""


def describe_error(answer: dict[str, Any]) -> str:
    errors = [e for e in answer.get("errors") or [] if isinstance(e, dict)]
    return "; ".join(f"code={e.get('code')} {e.get('title', '')}: {e.get('detail', '')}".strip(" :")
                     for e in errors)


def dial_status(event_type: str, payload: Mapping[str, Any]) -> str | None:
    """voiced's status for a Call Control webhook; None for one that is not a call status."""
    if event_type == "call.initiated":
        return "initiated"
    if event_type == "call.answered":
        return "answered"
    if event_type == "call.hangup":
        cause = str(payload.get("hangup_cause") or "").lower()
        return _HANGUP.get(cause, "completed" if payload.get("start_time") else "failed")
    return None


def status_detail(event_type: str, payload: Mapping[str, Any]) -> str:
    if event_type != "call.hangup":
        return ""
    parts = [f"{key}={str(payload[name])[:60]}" for name, key in (("hangup_cause", "cause"),
                                                                  ("hangup_source", "source"),
                                                                  ("sip_hangup_cause", "sip")) if payload.get(name)]
    return " ".join(parts)


def client_state(dial_id: str) -> str:
    return base64.b64encode(dial_id.encode()).decode("ascii")


def dial_of_client_state(value: Any) -> str:
    try:
        return base64.b64decode(str(value), validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return ""


def stream_url(public_url: str, dial_id: str, media_secret: str, now: float, ttl_s: float) -> str:
    scheme, _, host = public_url.rstrip("/").partition("://")
    query = {DIAL_PARAMETER: dial_id}
    if media_secret:
        query[media_token.PARAMETER] = media_token.issue(media_secret, dial_id, now, ttl_s)
    return f"{'ws' if scheme == 'http' else 'wss'}://{host}{MEDIA_PATH}?{urlencode(query)}"


def dial_body(request: DialRequest, dial_id: str, from_number: str, connection_id: str, public_url: str,
              media_secret: str, now: float, ttl_s: float) -> dict[str, Any]:
    body: dict[str, Any] = {
        "connection_id": connection_id, "to": request.to, "from": from_number,
        "stream_url": stream_url(public_url, dial_id, media_secret, now, ttl_s),
        "stream_track": "inbound_track", "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "PCMU", "stream_bidirectional_sampling_rate": 8000,
        "webhook_url": f"{public_url.rstrip('/')}{STATUS_PATH}?dial={dial_id}", "webhook_url_method": "POST",
        "client_state": client_state(dial_id), "command_id": dial_id,
    }
    if request.machine_detection:
        body["answering_machine_detection"] = "detect_beep"
    return body


class TelnyxDialer:
    """Places calls through Telnyx Call Control (a ``CarrierDialer``)."""

    carrier = "telnyx"

    def __init__(self, http: HTTPClient, clock: IReactorTime, api_key: str, connection_id: str, public_url: str,
                 media_secret: str, media_token_ttl_s: float, api_base: str = DEFAULT_API_BASE,
                 backoff: Backoff | None = None, request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        if not api_key or not connection_id:
            raise ValueError("dialing through Telnyx needs VOICED_TELNYX_API_KEY and VOICED_TELNYX_CONNECTION_ID")
        if not public_url:
            raise ValueError("dialing needs --public-url: the https:// base Telnyx streams the call to")
        self._http = http
        self._clock = clock
        self._api_key = api_key
        self._connection_id = connection_id
        self._url = f"{api_base.rstrip('/')}/v2/calls"
        self._public_url = public_url
        self._media_secret = media_secret
        self._ttl_s = media_token_ttl_s
        self._backoff = backoff or DEFAULT_BACKOFF
        self._timeout_s = request_timeout_s

    def __repr__(self) -> str:  # the key stays out of any log that prints us
        return f"TelnyxDialer(connection_id={self._connection_id!r}, url={self._url!r})"

    def place(self, dial_id: str, request: DialRequest, from_number: str) -> Deferred[str]:
        """Ask Telnyx to place the call; fires with its call_control_id, or fails with
        ``TelnyxDialError`` or the last connection error once the retries ran out."""
        body = json.dumps(dial_body(request, dial_id, from_number, self._connection_id, self._public_url,
                                    self._media_secret, self._clock.seconds(), self._ttl_s)).encode()

        def send() -> Deferred[Any]:
            return self._http.post(self._url, data=body, headers={
                b"Authorization": [f"Bearer {self._api_key}".encode()], b"Content-Type": [b"application/json"],
                b"User-Agent": [USER_AGENT.encode()], b"Accept": [b"application/json"]})

        def call_control_id(answer: dict[str, Any]) -> Any:
            data = answer.get("data")
            return data.get("call_control_id") if isinstance(data, dict) else None

        return place_call(self._clock, dial_id, send, call_control_id, TelnyxDialError, describe_error,
                          self._backoff, self._timeout_s)

    def fetch_status(self, call_sid: str) -> Deferred[str | None]:
        return fail(CannotReadBack("voiced does not read Telnyx calls back yet"))

    def find_calls(self, to: str, from_number: str) -> Deferred[list[dict[str, Any]]]:
        return fail(CannotReadBack("voiced does not read Telnyx calls back yet"))


def telnyx_dialer(settings: Any, http: HTTPClient, clock: IReactorTime) -> TelnyxDialer:
    s = settings
    # The socket asks for a token only when webhooks are signed (the public key set): as the TeXML answer.
    secret = (s.telnyx_media_secret or s.telnyx_api_key) if s.telnyx_public_key else ""
    return TelnyxDialer(http, clock, s.telnyx_api_key, s.telnyx_connection_id, s.public_url, secret,
                        s.media_token_ttl_s, s.telnyx_api_base)
