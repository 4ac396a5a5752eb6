"""Twilio's side of a dial: the Calls resource request that places it, and the status
callbacks that tell how it goes.

``POST {api_base}/2010-04-01/Accounts/{AccountSid}/Calls.json``, HTTP basic auth
(AccountSid, AuthToken), a form body: exactly what the official ``twilio`` package sends
for ``client.calls.create(to=, from_=, twiml=, status_callback=, ...)``. The TwiML is the
``<Connect><Stream>`` voiced's own ``/twiml`` answer gives an inbound call, with the dial's
id as the stream's ``voiced_dial`` parameter: Twilio hands it back in the stream's
``start``, which is how voiced knows the stream is this dial's. Twilio assigns the
CallSid only when it accepts the request, after the TwiML is written, so the stream's
media token is issued for the dial id instead of the CallSid (the media socket accepts
either). Twilio answers 201 with the call resource, whose ``sid`` is the CallSid.

Status callbacks are form POSTs (``CallSid``, ``CallStatus``, ``SequenceNumber``,
``CallDuration``, ``ErrorCode``...); Twilio's ``in-progress`` is voiced's ``answered``.

A request is sent again only when Twilio surely created no call (the connection refused,
429, 503): after a lost answer or a 500 the call may exist, and a second request would ring
the callee twice. Campaigns read calls back (``GET Calls/{Sid}.json``, ``GET Calls.json``
by To and From) to learn what a restart left unknown.
"""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from typing import Any, Mapping
from urllib.parse import quote, urlencode

from treq.client import HTTPClient
from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

from voiced.httpbody import read_body
from voiced.carrier import media_token
from voiced.carrier.rest import (DEFAULT_BACKOFF, MAX_BODY, REQUEST_TIMEOUT_S, USER_AGENT, CarrierRestError,
                                 attempt_status, cancelled_as_cancelled, error_detail)
from voiced.carrier.twilio.wire import twiml_connect_stream
from voiced.outbound.request import DIAL_STATUSES, DialRequest
from voiced.retry import Backoff, retry

log = Logger(namespace="voiced.outbound")

DIAL_PARAMETER = "voiced_dial"
STATUS_EVENTS = "initiated ringing answered completed"
#: Twilio's CallStatus -> voiced's dial status.
_STATUS = {"in-progress": "answered", **{s: s for s in DIAL_STATUSES}}


class TwilioDialError(CarrierRestError):
    """Twilio refused to place the call (or kept failing)."""


def _error_detail(body: bytes) -> str:
    return error_detail(body, lambda answer: f"code={answer.get('code')} {answer.get('message', '')}".strip())


def calls_url(api_base: str, account_sid: str) -> str:
    return f"{api_base.rstrip('/')}/2010-04-01/Accounts/{quote(account_sid, safe='')}/Calls.json"


def surely_not_placed(failure: Failure) -> bool:
    """Whether Twilio surely created no call: it was never reached, or it said so (429, 503).
    Only then may the request be sent again."""
    if failure.check(CarrierRestError):
        return failure.value.status in (429, 503)
    return failure.check(error.ConnectError, error.DNSLookupError) is not None


def created_at(call: Mapping[str, Any]) -> float | None:
    """A call resource's ``date_created`` (RFC 2822, whole seconds) as epoch seconds."""
    try:
        return parsedate_to_datetime(str(call.get("date_created") or "")).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def dial_form(request: DialRequest, dial_id: str, from_number: str, public_url: str, auth_token: str,
              now: float, media_token_ttl_s: float) -> dict[str, str]:
    """The Calls resource's form body for ``request``. ``auth_token`` (the webhook token
    that signs Twilio's requests; empty: unsigned) keys the stream's media token."""
    base = public_url.rstrip("/")
    host = base.split("://", 1)[-1]
    parameters = {"From": from_number, "To": request.to, DIAL_PARAMETER: dial_id}
    if auth_token:
        parameters[media_token.PARAMETER] = media_token.issue(auth_token, dial_id, now, media_token_ttl_s)
    form = {
        "To": request.to,
        "From": from_number,
        "Twiml": twiml_connect_stream(f"wss://{host}/media", parameters),
        "StatusCallback": f"{base}/twilio/status?dial={dial_id}",
        "StatusCallbackEvent": STATUS_EVENTS,
        "StatusCallbackMethod": "POST",
    }
    if request.machine_detection:
        form.update({
            "MachineDetection": "DetectMessageEnd",
            "AsyncAmd": "true",
            "AsyncAmdStatusCallback": f"{base}/twilio/amd?dial={dial_id}",
            "AsyncAmdStatusCallbackMethod": "POST",
        })
    return form


def encode_form(form: Mapping[str, str]) -> bytes:
    # StatusCallbackEvent is one field per event, as the twilio package sends a list.
    pairs: list[tuple[str, str]] = []
    for name, value in form.items():
        if name == "StatusCallbackEvent":
            pairs.extend((name, event) for event in value.split())
        else:
            pairs.append((name, value))
    return urlencode(pairs).encode("ascii")


def dial_status(call_status: str) -> str | None:
    """voiced's status for Twilio's ``CallStatus`` (None: not one Twilio sends)."""
    return _STATUS.get(call_status.strip().lower())


def status_detail(form: Mapping[str, str]) -> str:
    """What a status callback adds to its status, for the history: a duration, an error."""
    parts = []
    for name, key in (("CallDuration", "duration_s"), ("SipResponseCode", "sip"), ("ErrorCode", "error"),
                      ("AnsweredBy", "answered_by"), ("SequenceNumber", "seq")):
        value = form.get(name, "")
        if value:
            parts.append(f"{key}={value[:60]}")
    return " ".join(parts)


class TwilioDialer:
    """Places calls through Twilio's Calls resource (a ``CarrierDialer``)."""

    carrier = "twilio"

    def __init__(self, http: HTTPClient, clock: IReactorTime, account_sid: str, rest_token: str, api_base: str,
                 public_url: str, webhook_token: str, media_token_ttl_s: float, backoff: Backoff | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        if not account_sid or not rest_token:
            raise ValueError("dialing through Twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        if not public_url:
            raise ValueError("dialing needs --public-url: the https:// base Twilio streams the call to")
        self._http = http
        self._clock = clock
        self._auth = (account_sid, rest_token)
        self._url = calls_url(api_base, account_sid)
        self._public_url = public_url
        self._webhook_token = webhook_token
        self._ttl_s = media_token_ttl_s
        self._backoff = backoff or DEFAULT_BACKOFF
        self._timeout_s = request_timeout_s

    def __repr__(self) -> str:  # the token stays out of any log that prints us
        return f"TwilioDialer(account_sid={self._auth[0]!r}, url={self._url!r})"

    def place(self, dial_id: str, request: DialRequest, from_number: str) -> Deferred[str]:
        """Ask Twilio to place the call; fires with its CallSid, or fails with ``TwilioDialError``
        (Twilio's final answer) or the last connection error once the retries ran out."""
        form = dial_form(request, dial_id, from_number, self._public_url, self._webhook_token,
                         self._clock.seconds(), self._ttl_s)
        body = encode_form(form)

        def attempt(_number: int) -> Deferred[str]:
            sent = self._http.post(self._url, data=body, auth=self._auth, headers={
                b"Content-Type": [b"application/x-www-form-urlencoded"], b"User-Agent": [USER_AGENT.encode()],
                b"Accept": [b"application/json"]})
            sent.addCallbacks(self._call_sid, cancelled_as_cancelled)
            return sent.addTimeout(self._timeout_s, self._clock)

        def on_retry(number: int, delay_s: float, failure: Failure) -> None:
            log.warn("DIAL_RETRY dial={dial} status={status} attempt={attempt} delay_ms={delay_ms}", dial=dial_id,
                     status=attempt_status(failure), attempt=number, delay_ms=round(delay_s * 1000))

        return retry(self._clock, attempt, self._backoff, surely_not_placed, on_retry)

    # ---- reading calls back ----------------------------------------------------------------
    def fetch_status(self, call_sid: str) -> Deferred[str | None]:
        """The call's status now (voiced's name for it), None when Twilio has no such call."""
        url = self._url[:-len(".json")] + f"/{quote(call_sid, safe='')}.json"
        return self._get(url, {}).addCallback(lambda call: None if call is None else dial_status(
            str(call.get("status", ""))))

    def find_calls(self, to: str, from_number: str) -> Deferred[list[dict[str, Any]]]:
        """The latest calls from ``from_number`` to ``to``, newest first (Twilio's order)."""
        query = {"To": to, "From": from_number, "PageSize": "50"}
        return self._get(self._url, query).addCallback(lambda page: list((page or {}).get("calls") or []))

    def _get(self, url: str, query: dict[str, str]) -> Deferred[dict[str, Any] | None]:
        def answer(response: IResponse) -> Deferred[dict[str, Any] | None]:
            def check(body: bytes) -> dict[str, Any] | None:
                if response.code == 404:
                    return None
                if not 200 <= response.code < 300:
                    raise TwilioDialError(response.code, _error_detail(body))
                try:
                    document = json.loads(body)
                except ValueError:
                    raise TwilioDialError(response.code, "the answer is not JSON") from None
                if not isinstance(document, dict):
                    raise TwilioDialError(response.code, "the answer is not a JSON object")
                return document

            return read_body(response, MAX_BODY).addCallback(check)

        sent = self._http.get(url, params=query, auth=self._auth, headers={
            b"User-Agent": [USER_AGENT.encode()], b"Accept": [b"application/json"]})
        sent.addCallbacks(answer, cancelled_as_cancelled)
        return sent.addTimeout(self._timeout_s, self._clock)

    def _call_sid(self, response: IResponse) -> Deferred[str]:
        def check(body: bytes | Failure) -> str:
            if not isinstance(body, bytes):
                raise TwilioDialError(response.code, "unreadable answer")
            if not 200 <= response.code < 300:
                raise TwilioDialError(response.code, _error_detail(body))
            try:
                sid = json.loads(body).get("sid")
            except (ValueError, AttributeError):
                sid = None
            if not isinstance(sid, str) or not sid:
                raise TwilioDialError(response.code, "the answer names no call sid")
            return sid

        return read_body(response, MAX_BODY).addBoth(check)


def twilio_dialer(settings: Any, http: HTTPClient, clock: IReactorTime) -> TwilioDialer:
    s = settings
    return TwilioDialer(http, clock, s.twilio_account_sid, s.twilio_rest_token, s.twilio_api_base, s.public_url,
                        s.twilio_auth_token, s.media_token_ttl_s)
