"""Telnyx's Call Control API for what a media stream cannot do by itself: hang up, transfer.

``POST {api_base}/v2/calls/{call_control_id}/actions/hangup`` and ``.../actions/transfer``
(body ``{"to": "+E.164" or "sip:..."}``), JSON, ``Authorization: Bearer <API key>``,
as Telnyx's API reference and its SDKs send them (``client.calls.actions.hangup`` /
``.transfer``). A TeXML call's CallSid is its call_control_id, so both work for calls
started by voiced's TeXML as well as by a Call Control app. Each operation carries one
``command_id`` for all its attempts: Telnyx ignores a repeated command with the same
id for the same call, so a retry after a lost answer cannot act twice.

429 and 5xx answers and connection errors are retried with backoff (``twilio.rest``'s
schedule); any other 4xx is final. A hang-up answered 422 with Telnyx's error 90018
("Call has already ended") has done its job: the caller hung up first. The outcome is
logged with the call id and reported as True/False, never raised into the call. The
API key is never logged.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

from voiced import __version__
from voiced.agent.httpbody import read_body
from voiced.call.control import check_transfer_target
from voiced.carrier.twilio.rest import _CONNECTION_ERRORS, DEFAULT_BACKOFF, REQUEST_TIMEOUT_S, _cancelled_as_cancelled
from voiced.retry import Backoff, retry

log = Logger()

DEFAULT_API_BASE = "https://api.telnyx.com"
#: Telnyx's error code for a command to a call that is over.
CALL_ALREADY_ENDED = "90018"
_MAX_BODY = 64 * 1024
_MAX_DETAIL = 200


class TelnyxRestError(Exception):
    """Telnyx answered a command with a non-2xx status."""

    def __init__(self, status: int, codes: tuple[str, ...], detail: str) -> None:
        super().__init__(f"HTTP {status}{': ' + detail if detail else ''}")
        self.status = status
        self.codes = codes

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


def error_detail(body: bytes) -> tuple[tuple[str, ...], str]:
    """Telnyx's error codes and a short text from its ``{"errors": [{code, title, detail}]}``."""
    try:
        answer = json.loads(body)
    except ValueError:
        return (), body[:_MAX_DETAIL].decode("utf-8", "replace").strip()
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if not isinstance(errors, list):
        return (), ""
    errors = [e for e in errors if isinstance(e, dict)]
    codes = tuple(str(e.get("code", "")) for e in errors)
    text = "; ".join(f"code={e.get('code')} {e.get('title', '')}: {e.get('detail', '')}".strip(" :") for e in errors)
    return codes, text[:_MAX_DETAIL]


def _is_retryable(failure: Failure) -> bool:
    if failure.check(TelnyxRestError):
        return failure.value.retryable
    return failure.check(*_CONNECTION_ERRORS) is not None


def _status(failure: Failure) -> str:
    if failure.check(TelnyxRestError):
        return str(failure.value.status)
    return type(failure.value).__name__


class TelnyxCallControl:
    """Hang-up and transfer of live calls through Telnyx Call Control (a ``CallControl``)."""

    def __init__(
        self,
        http: HTTPClient,
        clock: IReactorTime,
        api_key: str,
        api_base: str = DEFAULT_API_BASE,
        backoff: Backoff | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        if not api_key:
            raise ValueError("Telnyx Call Control needs an API key")
        self._http = http
        self._clock = clock
        self._api_key = api_key
        self._api_base = api_base.rstrip("/")
        self._backoff = backoff or DEFAULT_BACKOFF
        self._request_timeout_s = request_timeout_s

    def __repr__(self) -> str:  # the key stays out of any log that prints us
        return f"TelnyxCallControl(api_base={self._api_base!r})"

    def action_url(self, call_control_id: str, action: str) -> str:
        # The id comes from the carrier's start message: quoted rather than trusted in a path
        # (its "v3:" prefix stays as it is: a colon is allowed in a path segment).
        return f"{self._api_base}/v2/calls/{quote(call_control_id, safe=':')}/actions/{action}"

    def complete(self, call_sid: str) -> Deferred[bool]:
        """Hang the call up. Fires True when Telnyx accepted (or the call had already ended)."""
        return self._command(call_sid, "hangup", {})

    def transfer(self, call_sid: str, to: str) -> Deferred[bool]:
        """Dial ``to`` (E.164 or a sip: URI; ``ValueError`` at once otherwise) and bridge the
        call there. Fires True when Telnyx accepted, False (logged) when not."""
        return self._command(call_sid, "transfer", {"to": check_transfer_target(to)})

    def _command(self, call_id: str, action: str, body: dict[str, Any]) -> Deferred[bool]:
        url = self.action_url(call_id, action)
        document = json.dumps({**body, "command_id": str(uuid.uuid4())}).encode("utf-8")
        headers = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json",
                   "Accept": "application/json", "User-Agent": f"voiced/{__version__}"}

        def attempt(_number: int) -> Deferred[None]:
            posted = self._http.post(url, data=document, headers=headers, unbuffered=True, allow_redirects=False)
            posted.addCallbacks(self._check_answer, _cancelled_as_cancelled)
            return posted.addTimeout(self._request_timeout_s, self._clock)

        def on_retry(number: int, delay_s: float, failure: Failure) -> None:
            log.warn("TELNYX_REST_RETRY call={call} status={status} attempt={attempt} action={action} "
                     "delay_ms={delay_ms}", call=call_id, status=_status(failure), attempt=number, action=action,
                     delay_ms=round(delay_s * 1000))

        def succeeded(_: None) -> bool:
            log.info("TELNYX_REST_OK call={call} action={action}", call=call_id, action=action)
            return True

        def failed(failure: Failure) -> bool:
            if action == "hangup" and failure.check(TelnyxRestError) and CALL_ALREADY_ENDED in failure.value.codes:
                log.info("TELNYX_REST_OK call={call} action={action}: the call had already ended", call=call_id,
                         action=action)
                return True
            reason = "cancelled" if failure.check(CancelledError) else failure.getErrorMessage()
            log.warn("TELNYX_REST_FAILED call={call} action={action} error={error}", call=call_id, action=action,
                     error=f"{type(failure.value).__name__}: {reason}")
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
            codes, detail = error_detail(answer) if isinstance(answer, bytes) else ((), "")
            raise TelnyxRestError(response.code, codes, detail)

        return body.addBoth(raise_status)
