"""One carrier request that places a call, as every ``CarrierDialer`` sends it: each attempt
has its own timeout; the request is sent again only when the carrier surely created no
call (never reached, or 429/503: ``twilio_dial.surely_not_placed``), since after a lost
answer or a 500 the call may exist and a second request would ring the callee twice.
The carrier's JSON answer names the call (``call_id_of``); any other answer fails with the
carrier's ``CarrierRestError``, whose message never holds a credential."""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

from voiced.carrier.rest import MAX_BODY, CarrierRestError, attempt_status, cancelled_as_cancelled, error_detail
from voiced.httpbody import read_body
from voiced.outbound.twilio_dial import surely_not_placed
from voiced.retry import Backoff, retry

log = Logger(namespace="voiced.outbound")


def place_call(clock: IReactorTime, dial_id: str, send: Callable[[], Deferred[IResponse]],
               call_id_of: Callable[[dict[str, Any]], Any], rest_error: type[CarrierRestError],
               describe_error: Callable[[dict[str, Any]], str], backoff: Backoff,
               timeout_s: float) -> Deferred[str]:
    """Send ``send()`` until the carrier answers for good; fires with the call id its 2xx JSON
    answer names (``call_id_of``), fails with ``rest_error`` or the last connection error."""

    def answered(response: IResponse) -> Deferred[str]:
        def check(body: bytes | Failure) -> str:
            if not isinstance(body, bytes):
                raise rest_error(response.code, "unreadable answer")
            if not 200 <= response.code < 300:
                raise rest_error(response.code, error_detail(body, describe_error))
            try:
                document = json.loads(body)
            except ValueError:
                raise rest_error(response.code, "the answer is not JSON") from None
            call_id = call_id_of(document) if isinstance(document, dict) else None
            if not isinstance(call_id, str) or not call_id:
                raise rest_error(response.code, "the answer names no call")
            return call_id

        return read_body(response, MAX_BODY).addBoth(check)

    def attempt(_number: int) -> Deferred[str]:
        sent = send()
        sent.addCallbacks(answered, cancelled_as_cancelled)
        return sent.addTimeout(timeout_s, clock)

    def on_retry(number: int, delay_s: float, failure: Failure) -> None:
        log.warn("DIAL_RETRY dial={dial} status={status} attempt={attempt} delay_ms={delay_ms}", dial=dial_id,
                 status=attempt_status(failure), attempt=number, delay_ms=round(delay_s * 1000))

    return retry(clock, attempt, backoff, surely_not_placed, on_retry)


class CannotReadBack(Exception):
    """This carrier's calls are not read back (campaign recovery): the row is not redialled."""
