"""Twilio's REST API for what a media stream cannot do by itself: hang up, transfer.

Both are an update of the live call, ``POST {api_base}/2010-04-01/Accounts/{AccountSid}
/Calls/{CallSid}.json`` with HTTP basic auth (AccountSid, AuthToken) and a form body,
exactly what the official ``twilio`` package sends for ``client.calls(sid).update(...)``:
``Status=completed`` hangs up; ``Twiml=<Response><Dial>...</Dial></Response>`` replaces
the call's instructions, which ends ``<Connect><Stream>`` (and so the media socket)
and dials the target.

429 and 5xx answers and connection errors are retried with backoff (a call that is
saying goodbye can wait a few seconds); any other 4xx is final (the call is already
over, a bad number). Either way the outcome is logged with the CallSid and reported as
True/False, never raised into the call. The auth token is never logged.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from treq.client import HTTPClient
from twisted.internet import defer, error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import RequestTransmissionFailed, ResponseFailed, ResponseNeverReceived
from twisted.web.iweb import IResponse

from voiced import __version__
from voiced.agent.httpbody import read_body
from voiced.call.control import check_transfer_target, is_sip_uri
from voiced.retry import Backoff, retry

log = Logger()

DEFAULT_API_BASE = "https://api.twilio.com"
# 0.5, 1, 2, 4 s: about 7.5 s of retries, within what a caller waits after "goodbye".
DEFAULT_BACKOFF = Backoff(0.5, 4.0, attempts=4, jitter=0.2)
REQUEST_TIMEOUT_S = 10.0
# A call update answers with the call resource (~2 KB); an error with a short JSON.
_MAX_BODY = 64 * 1024
_MAX_DETAIL = 200

_CONNECTION_ERRORS = (
    error.ConnectError,  # refused, no route, connect timeout
    error.DNSLookupError,
    error.ConnectionLost,
    error.TimeoutError,
    defer.TimeoutError,  # our own per-request timeout
    ResponseNeverReceived,
    RequestTransmissionFailed,
    ResponseFailed,
)


class TwilioRestError(Exception):
    """Twilio answered an update with a non-2xx status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}{': ' + detail if detail else ''}")
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


def dial_twiml(to: str) -> str:
    """The TwiML that transfers a call to ``to`` (checked first). A SIP URI needs the
    ``<Sip>`` noun: bare text inside ``<Dial>`` is taken for a phone number."""
    target = escape(check_transfer_target(to))
    noun = f"<Sip>{target}</Sip>" if is_sip_uri(to) else target
    return f"<Response><Dial>{noun}</Dial></Response>"


def _cancelled_as_cancelled(failure: Failure) -> Failure:
    # Cancelling a request still waiting for its answer fails it with
    # ResponseNeverReceived([CancelledError]); addTimeout and retry only know CancelledError.
    if failure.check(ResponseNeverReceived) and any(r.check(CancelledError) for r in failure.value.reasons):
        return Failure(CancelledError())
    return failure


def _is_retryable(failure: Failure) -> bool:
    if failure.check(TwilioRestError):
        return failure.value.retryable
    return failure.check(*_CONNECTION_ERRORS) is not None


def _status(failure: Failure) -> str:
    """What the retry log calls the failed attempt: the HTTP status or the error's name."""
    if failure.check(TwilioRestError):
        return str(failure.value.status)
    return type(failure.value).__name__


def _error_detail(body: bytes) -> str:
    """Twilio's error JSON is ``{"code", "message", "more_info", "status"}``: keep code and message."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body[:_MAX_DETAIL].decode("utf-8", "replace").strip()
    if not isinstance(answer, dict):
        return ""
    detail = f"code={answer.get('code')} {answer.get('message', '')}".strip()
    return detail[:_MAX_DETAIL]


class TwilioCallControl:
    """Hang-up and transfer of live calls through Twilio's REST API (a ``CallControl``)."""

    def __init__(
        self,
        http: HTTPClient,
        clock: IReactorTime,
        account_sid: str,
        auth_token: str,
        api_base: str = DEFAULT_API_BASE,
        backoff: Backoff | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("Twilio REST needs both an account SID and an auth token")
        self._http = http
        self._clock = clock
        self._account_sid = account_sid
        self._auth = (account_sid, auth_token)
        self._api_base = api_base.rstrip("/")
        self._backoff = backoff or DEFAULT_BACKOFF
        self._request_timeout_s = request_timeout_s

    def __repr__(self) -> str:  # the token stays out of any log that prints us
        return f"TwilioCallControl(account_sid={self._account_sid!r}, api_base={self._api_base!r})"

    def call_url(self, call_sid: str) -> str:
        # The CallSid comes from the carrier's start message: quote it rather than trust it in a path.
        return (f"{self._api_base}/2010-04-01/Accounts/{quote(self._account_sid, safe='')}"
                f"/Calls/{quote(call_sid, safe='')}.json")

    def complete(self, call_sid: str) -> Deferred[bool]:
        """Hang the call up. Fires True when Twilio accepted, False (logged) when not."""
        return self._update(call_sid, "complete", {"Status": "completed"})

    def transfer(self, call_sid: str, to: str) -> Deferred[bool]:
        """Dial ``to`` (E.164 or a sip: URI; ``ValueError`` at once otherwise), ending the
        media stream. Fires True when Twilio accepted, False (logged) when not."""
        return self._update(call_sid, "transfer", {"Twiml": dial_twiml(to)})

    def _update(self, call_sid: str, action: str, form: dict[str, str]) -> Deferred[bool]:
        url = self.call_url(call_sid)

        def attempt(_number: int) -> Deferred[None]:
            posted = self._http.post(
                url, data=form, auth=self._auth, unbuffered=True, allow_redirects=False,
                headers={"Accept": "application/json", "User-Agent": f"voiced/{__version__}"},
            )
            posted.addCallbacks(self._check_answer, _cancelled_as_cancelled)
            return posted.addTimeout(self._request_timeout_s, self._clock)

        def on_retry(number: int, delay_s: float, failure: Failure) -> None:
            log.warn("TWILIO_REST_RETRY call={call} status={status} attempt={attempt} action={action} "
                     "delay_ms={delay_ms}", call=call_sid, status=_status(failure), attempt=number,
                     action=action, delay_ms=round(delay_s * 1000))

        def succeeded(_: None) -> bool:
            log.info("TWILIO_REST_OK call={call} action={action}", call=call_sid, action=action)
            return True

        def failed(failure: Failure) -> bool:
            reason = "cancelled" if failure.check(CancelledError) else failure.getErrorMessage()
            log.warn("TWILIO_REST_FAILED call={call} action={action} error={error}", call=call_sid,
                     action=action, error=f"{type(failure.value).__name__}: {reason}")
            return False

        done = retry(self._clock, attempt, self._backoff, _is_retryable, on_retry)
        return done.addCallbacks(succeeded, failed)

    @staticmethod
    def _check_answer(response: IResponse) -> Deferred[Any]:
        # Read the body either way: a fully read response leaves its connection reusable.
        body = read_body(response, _MAX_BODY)
        if 200 <= response.code < 300:
            return body.addCallback(lambda _: None)

        def raise_status(answer: bytes | Failure) -> None:
            detail = _error_detail(answer) if isinstance(answer, bytes) else ""
            raise TwilioRestError(response.code, detail)

        return body.addBoth(raise_status)
