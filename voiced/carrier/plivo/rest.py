"""Plivo's REST API for what a media stream cannot do by itself: hang up, transfer.

Both act on the live call ``{api_base}/v1/Account/{auth_id}/Call/{call_uuid}/`` with HTTP
basic auth (auth ID, auth token), as the official ``plivo`` package sends them
(``client.calls.hangup`` / ``client.calls.transfer``, a JSON body):
- hang up: ``DELETE``, answered 204; a 404 means the call is already over (the stream's
  end ran the answer's <Hangup/> first), which is what hanging up wanted;
- transfer: ``POST {"legs": "aleg", "aleg_url": ..., "aleg_method": "POST"}``, answered
  202. Plivo fetches ``aleg_url`` for the call's new XML: voiced's own answer URL with
  ``?transfer=<target>``, which answers the <Dial> (signed by Plivo like any request).
  So a transfer needs the public URL Plivo reaches.

429 and 5xx answers and connection errors are retried with backoff (a call that is
saying goodbye can wait a few seconds); any other 4xx is final. Either way the outcome
is logged with the call's UUID and reported as True/False, never raised into the call.
The auth token is never logged.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlsplit

from treq.client import HTTPClient
from twisted.internet import defer, error
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import RequestTransmissionFailed, ResponseFailed, ResponseNeverReceived
from twisted.web.iweb import IResponse

from voiced import __version__
from voiced.agent.httpbody import read_body
from voiced.call.control import check_transfer_target
from voiced.retry import Backoff, retry

log = Logger()

DEFAULT_API_BASE = "https://api.plivo.com"
ANSWER_PATH = "/answer/plivo"
# 0.5, 1, 2, 4 s: about 7.5 s of retries, within what a caller waits after "goodbye".
DEFAULT_BACKOFF = Backoff(0.5, 4.0, attempts=4, jitter=0.2)
REQUEST_TIMEOUT_S = 10.0
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


class PlivoRestError(Exception):
    """Plivo answered with a status that is not the action's success."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}{': ' + detail if detail else ''}")
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


def _cancelled_as_cancelled(failure: Failure) -> Failure:
    # A request cancelled while waiting for its answer fails with
    # ResponseNeverReceived([CancelledError]); addTimeout and retry only know CancelledError.
    if failure.check(ResponseNeverReceived) and any(r.check(CancelledError) for r in failure.value.reasons):
        return Failure(CancelledError())
    return failure


def _is_retryable(failure: Failure) -> bool:
    if failure.check(PlivoRestError):
        return failure.value.retryable
    return failure.check(*_CONNECTION_ERRORS) is not None


def _status(failure: Failure) -> str:
    if failure.check(PlivoRestError):
        return str(failure.value.status)
    return type(failure.value).__name__


def _error_detail(body: bytes) -> str:
    """Plivo's error JSON is ``{"api_id", "error"}`` (``error`` a string or an object)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body[:_MAX_DETAIL].decode("utf-8", "replace").strip()
    if not isinstance(answer, dict):
        return ""
    detail = answer.get("error", answer.get("message", ""))
    return (detail if isinstance(detail, str) else json.dumps(detail))[:_MAX_DETAIL]


class PlivoCallControl:
    """Hang-up and transfer of live calls through Plivo's REST API (a ``CallControl``)."""

    def __init__(
        self,
        http: HTTPClient,
        clock: IReactorTime,
        auth_id: str,
        auth_token: str,
        public_url: str = "",
        api_base: str = DEFAULT_API_BASE,
        backoff: Backoff | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        if not auth_id or not auth_token:
            raise ValueError("Plivo REST needs both an auth ID and an auth token")
        if urlsplit(api_base).scheme not in ("http", "https"):
            raise ValueError(f"plivo_api_base must be an http:// or https:// URL, not {api_base!r}")
        self._http = http
        self._clock = clock
        self._auth_id = auth_id
        self._auth = (auth_id, auth_token)
        self._public_url = public_url.rstrip("/")
        self._api_base = api_base.rstrip("/")
        self._backoff = backoff or DEFAULT_BACKOFF
        self._request_timeout_s = request_timeout_s

    def __repr__(self) -> str:  # the token stays out of any log that prints us
        return f"PlivoCallControl(auth_id={self._auth_id!r}, api_base={self._api_base!r})"

    def call_url(self, call_uuid: str) -> str:
        # The call UUID comes from the carrier's start message: quoted rather than trusted in a path.
        return f"{self._api_base}/v1/Account/{quote(self._auth_id, safe='')}/Call/{quote(call_uuid, safe='')}/"

    def transfer_url(self, to: str) -> str:
        """Where Plivo fetches the transferred call's XML: voiced's answer URL with the target."""
        return f"{self._public_url}{ANSWER_PATH}?transfer={quote(to, safe='')}"

    def complete(self, call_uuid: str) -> Deferred[bool]:
        """Hang the call up. Fires True when Plivo hung it up (or it was over), False (logged) when not."""
        return self._request(call_uuid, "complete", "DELETE", None, (200, 202, 204, 404))

    def transfer(self, call_uuid: str, to: str) -> Deferred[bool]:
        """Move the call to ``to`` (E.164 or a sip: URI; ``ValueError`` at once otherwise), ending
        the media stream. Fires True when Plivo accepted, False (logged) when not."""
        check_transfer_target(to)
        if not self._public_url:
            log.warn("PLIVO_REST_FAILED call={call} action=transfer error={error}", call=call_uuid,
                     error="no public_url: Plivo needs an absolute URL to fetch the <Dial> from")
            return succeed(False)
        body = {"legs": "aleg", "aleg_url": self.transfer_url(to), "aleg_method": "POST"}
        return self._request(call_uuid, "transfer", "POST", body, (200, 201, 202, 204))

    def _request(self, call_uuid: str, action: str, method: str, body: dict[str, str] | None,
                 done: tuple[int, ...]) -> Deferred[bool]:
        url = self.call_url(call_uuid)
        headers = {"Accept": "application/json", "User-Agent": f"voiced/{__version__}"}

        payload: dict[str, Any] = {} if body is None else {"json": body}  # a DELETE has no body

        def attempt(_number: int) -> Deferred[int]:
            sent = self._http.request(method, url, auth=self._auth, unbuffered=True, allow_redirects=False,
                                      headers=headers, **payload)
            sent.addCallbacks(lambda response: self._check_answer(response, done), _cancelled_as_cancelled)
            return sent.addTimeout(self._request_timeout_s, self._clock)

        def on_retry(number: int, delay_s: float, failure: Failure) -> None:
            log.warn("PLIVO_REST_RETRY call={call} status={status} attempt={attempt} action={action} "
                     "delay_ms={delay_ms}", call=call_uuid, status=_status(failure), attempt=number,
                     action=action, delay_ms=round(delay_s * 1000))

        def succeeded(status: int) -> bool:
            already = " (the call was already over)" if status == 404 else ""
            log.info("PLIVO_REST_OK call={call} action={action}{already}", call=call_uuid, action=action,
                     already=already)
            return True

        def failed(failure: Failure) -> bool:
            reason = "cancelled" if failure.check(CancelledError) else failure.getErrorMessage()
            log.warn("PLIVO_REST_FAILED call={call} action={action} error={error}", call=call_uuid,
                     action=action, error=f"{type(failure.value).__name__}: {reason}")
            return False

        finished = retry(self._clock, attempt, self._backoff, _is_retryable, on_retry)
        return finished.addCallbacks(succeeded, failed)

    @staticmethod
    def _check_answer(response: IResponse, done: tuple[int, ...]) -> Deferred[int]:
        # Read the body either way: a fully read response leaves its connection reusable.
        body = read_body(response, _MAX_BODY)
        if response.code in done:
            return body.addCallback(lambda _: response.code)

        def raise_status(answer: bytes | Failure) -> int:
            detail = _error_detail(answer) if isinstance(answer, bytes) else ""
            raise PlivoRestError(response.code, detail)

        return body.addBoth(raise_status)
