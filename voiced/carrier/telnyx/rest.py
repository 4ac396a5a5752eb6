"""Telnyx's Call Control API for what a media stream cannot do by itself: hang up, transfer.

``POST {api_base}/v2/calls/{call_control_id}/actions/hangup`` and ``.../actions/transfer``
(body ``{"to": "+E.164" or "sip:..."}``), JSON, ``Authorization: Bearer <API key>``,
as Telnyx's API reference and its SDKs send them (``client.calls.actions.hangup`` /
``.transfer``). A TeXML call's CallSid is its call_control_id, so both work for calls
started by voiced's TeXML as well as by a Call Control app. Each operation carries one
``command_id`` for all its attempts: Telnyx ignores a repeated command with the same
id for the same call, so a retry after a lost answer cannot act twice.

429 and 5xx answers and connection errors are retried with backoff (``voiced.carrier.rest``'s
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
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from voiced.transfer import check_transfer_target
from voiced.carrier.rest import DEFAULT_BACKOFF, MAX_DETAIL, REQUEST_TIMEOUT_S
from voiced.carrier.rest import USER_AGENT, CarrierCallControl, CarrierRestError
from voiced.retry import Backoff

__all__ = ["CALL_ALREADY_ENDED", "DEFAULT_API_BASE", "DEFAULT_BACKOFF", "REQUEST_TIMEOUT_S", "TelnyxCallControl",
           "TelnyxRestError", "error_detail"]

DEFAULT_API_BASE = "https://api.telnyx.com"
#: Telnyx's error code for a command to a call that is over.
CALL_ALREADY_ENDED = "90018"


class TelnyxRestError(CarrierRestError):
    """Telnyx answered a command with a non-2xx status."""

    def __init__(self, status: int, codes: tuple[str, ...], detail: str) -> None:
        super().__init__(status, detail)
        self.codes = codes


def error_detail(body: bytes) -> tuple[tuple[str, ...], str]:
    """Telnyx's error codes and a short text from its ``{"errors": [{code, title, detail}]}``."""
    try:
        answer = json.loads(body)
    except ValueError:
        return (), body[:MAX_DETAIL].decode("utf-8", "replace").strip()
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if not isinstance(errors, list):
        return (), ""
    errors = [e for e in errors if isinstance(e, dict)]
    codes = tuple(str(e.get("code", "")) for e in errors)
    text = "; ".join(f"code={e.get('code')} {e.get('title', '')}: {e.get('detail', '')}".strip(" :") for e in errors)
    return codes, text[:MAX_DETAIL]


class TelnyxCallControl(CarrierCallControl):
    """Hang-up and transfer of live calls through Telnyx Call Control (a ``CallControl``)."""

    log_name = "TELNYX_REST"

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
        super().__init__(http, clock, api_base, backoff, request_timeout_s)
        self._api_key = api_key

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

    def rest_error(self, status: int, body: bytes | None) -> TelnyxRestError:
        codes, detail = ((), "") if body is None else error_detail(body)
        return TelnyxRestError(status, codes, detail)

    def already_over_note(self, failure: Failure, action: str) -> str | None:
        if action == "hangup" and failure.check(TelnyxRestError) and CALL_ALREADY_ENDED in failure.value.codes:
            return ": the call had already ended"
        return None

    def _command(self, call_id: str, action: str, body: dict[str, Any]) -> Deferred[bool]:
        url = self.action_url(call_id, action)
        document = json.dumps({**body, "command_id": str(uuid.uuid4())}).encode("utf-8")
        headers = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json",
                   "Accept": "application/json", "User-Agent": USER_AGENT}
        return self.perform(call_id, action, lambda: self._http.post(
            url, data=document, headers=headers, unbuffered=True, allow_redirects=False))
