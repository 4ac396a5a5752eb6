"""What every carrier's REST call control shares: one request about one live call.

A carrier's control (``twilio.rest``, ``telnyx.rest``, ``plivo.rest``, ``vonage.rest``)
knows its API: URLs, auth, bodies, error bodies, which answers mean the call is already
over. ``CarrierCallControl.perform`` runs one such request: each attempt has its own
timeout; 429 and 5xx answers and connection errors are retried with backoff (a call that
is saying goodbye can wait a few seconds); any other answer that is not a success is
final. Either way the outcome is logged under the carrier's name (``<NAME>_OK``,
``<NAME>_RETRY``, ``<NAME>_FAILED``, in the carrier module's log namespace) and reported
as True/False, never raised into the call.
"""

from __future__ import annotations

import json
from typing import Any, Callable, ClassVar

from treq.client import HTTPClient
from twisted.internet import defer, error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import RequestTransmissionFailed, ResponseFailed, ResponseNeverReceived
from twisted.web.iweb import IResponse

from voiced import __version__
from voiced.httpbody import read_body
from voiced.retry import Backoff, retry

# 0.5, 1, 2, 4 s: about 7.5 s of retries, within what a caller waits after "goodbye".
DEFAULT_BACKOFF = Backoff(0.5, 4.0, attempts=4, jitter=0.2)
REQUEST_TIMEOUT_S = 10.0
USER_AGENT = f"voiced/{__version__}"
# A call update answers with the call resource (~2 KB); an error with a short JSON.
MAX_BODY = 64 * 1024
MAX_DETAIL = 200

CONNECTION_ERRORS = (
    error.ConnectError,  # refused, no route, connect timeout
    error.DNSLookupError,
    error.ConnectionLost,
    error.TimeoutError,
    defer.TimeoutError,  # our own per-request timeout
    ResponseNeverReceived,
    RequestTransmissionFailed,
    ResponseFailed,
)


class CarrierRestError(Exception):
    """The carrier answered with a status that is not the request's success. Each carrier
    subclasses it: its name is what the failure's log line shows."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}{': ' + detail if detail else ''}")
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


def cancelled_as_cancelled(failure: Failure) -> Failure:
    # Cancelling a request still waiting for its answer fails it with
    # ResponseNeverReceived([CancelledError]); addTimeout and retry only know CancelledError.
    if failure.check(ResponseNeverReceived) and any(r.check(CancelledError) for r in failure.value.reasons):
        return Failure(CancelledError())
    return failure


def is_retryable(failure: Failure) -> bool:
    if failure.check(CarrierRestError):
        return failure.value.retryable
    return failure.check(*CONNECTION_ERRORS) is not None


def attempt_status(failure: Failure) -> str:
    """What the retry log calls the failed attempt: the HTTP status or the error's name."""
    if failure.check(CarrierRestError):
        return str(failure.value.status)
    return type(failure.value).__name__


def error_detail(body: bytes, describe: Callable[[dict[str, Any]], str]) -> str:
    """A short text for an error answer: ``describe`` of its JSON object, the start of its
    text when it is not JSON, nothing for JSON that is not an object."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body[:MAX_DETAIL].decode("utf-8", "replace").strip()
    return describe(answer)[:MAX_DETAIL] if isinstance(answer, dict) else ""


class CarrierCallControl:
    """The base of a carrier's ``CallControl``: the HTTP client, clock, backoff and timeout,
    and ``perform``. Subclasses set ``log_name`` and build their error in ``rest_error``."""

    #: The outcome lines are ``{log_name}_OK``, ``{log_name}_RETRY`` and ``{log_name}_FAILED``.
    log_name: ClassVar[str]

    def __init__(self, http: HTTPClient, clock: IReactorTime, api_base: str, backoff: Backoff | None,
                 request_timeout_s: float) -> None:
        self._http = http
        self._clock = clock
        self._api_base = api_base.rstrip("/")
        self._backoff = backoff or DEFAULT_BACKOFF
        self._request_timeout_s = request_timeout_s
        # The carrier module's namespace: its lines read (and are filtered) as before the split.
        self._log = Logger(namespace=type(self).__module__)

    def rest_error(self, status: int, body: bytes | None) -> CarrierRestError:
        """The carrier's error for an answer that is not a success (``body`` None: unreadable)."""
        raise NotImplementedError

    def success_note(self, status: int, action: str) -> str | None:
        """None when ``status`` is not the action's success; else what the OK line adds to it."""
        return "" if 200 <= status < 300 else None

    def already_over_note(self, failure: Failure, action: str) -> str | None:
        """What the OK line adds when a final failure means the call was already over (the
        action's job done: the caller hung up first); None for a real failure."""
        return None

    def log_failure(self, call: str, action: str, error: str) -> None:
        self._log.warn(f"{self.log_name}_FAILED call={{call}} action={{action}} error={{error}}", call=call,
                       action=action, error=error)

    def perform(self, call: str, action: str, send: Callable[[], Deferred[IResponse]]) -> Deferred[bool]:
        """Run ``send`` (one attempt of the request) until it succeeds, fails for good or runs
        out of retries. Fires True when the carrier did it, False (logged) when not."""
        name = self.log_name

        def attempt(_number: int) -> Deferred[str]:
            sent = send()
            sent.addCallbacks(lambda response: self._check_answer(response, action), cancelled_as_cancelled)
            return sent.addTimeout(self._request_timeout_s, self._clock)

        def on_retry(number: int, delay_s: float, failure: Failure) -> None:
            self._log.warn(f"{name}_RETRY call={{call}} status={{status}} attempt={{attempt}} action={{action}} "
                           "delay_ms={delay_ms}", call=call, status=attempt_status(failure), attempt=number,
                           action=action, delay_ms=round(delay_s * 1000))

        def succeeded(note: str) -> bool:
            self._log.info(f"{name}_OK call={{call}} action={{action}}{{note}}", call=call, action=action, note=note)
            return True

        def failed(failure: Failure) -> bool:
            note = self.already_over_note(failure, action)
            if note is not None:
                return succeeded(note)
            reason = "cancelled" if failure.check(CancelledError) else failure.getErrorMessage()
            self.log_failure(call, action, f"{type(failure.value).__name__}: {reason}")
            return False

        done = retry(self._clock, attempt, self._backoff, is_retryable, on_retry)
        return done.addCallbacks(succeeded, failed)

    def _check_answer(self, response: IResponse, action: str) -> Deferred[str]:
        # Read the body either way: a fully read response leaves its connection reusable.
        body = read_body(response, MAX_BODY)
        note = self.success_note(response.code, action)
        if note is not None:
            return body.addCallback(lambda _: note)

        def raise_status(answer: bytes | Failure) -> str:
            raise self.rest_error(response.code, answer if isinstance(answer, bytes) else None)

        return body.addBoth(raise_status)
