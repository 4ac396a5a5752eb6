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
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from voiced.transfer import check_transfer_target
from voiced.carrier.rest import DEFAULT_BACKOFF, REQUEST_TIMEOUT_S, USER_AGENT
from voiced.carrier.rest import CarrierCallControl, CarrierRestError, error_detail
from voiced.retry import Backoff

__all__ = ["ANSWER_PATH", "DEFAULT_API_BASE", "DEFAULT_BACKOFF", "REQUEST_TIMEOUT_S", "PlivoCallControl",
           "PlivoRestError"]

DEFAULT_API_BASE = "https://api.plivo.com"
ANSWER_PATH = "/answer/plivo"
# What each action answers when it did its job: a hang-up's 404 is a call already over.
_DONE_STATUSES = {"complete": (200, 202, 204, 404), "transfer": (200, 201, 202, 204)}


class PlivoRestError(CarrierRestError):
    """Plivo answered with a status that is not the action's success."""


def _describe_error(answer: dict[str, Any]) -> str:
    """Plivo's error JSON is ``{"api_id", "error"}`` (``error`` a string or an object)."""
    detail = answer.get("error", answer.get("message", ""))
    return detail if isinstance(detail, str) else json.dumps(detail)


class PlivoCallControl(CarrierCallControl):
    """Hang-up and transfer of live calls through Plivo's REST API (a ``CallControl``)."""

    log_name = "PLIVO_REST"

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
        super().__init__(http, clock, api_base, backoff, request_timeout_s)
        self._auth_id = auth_id
        self._auth = (auth_id, auth_token)
        self._public_url = public_url.rstrip("/")

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
        return self._request(call_uuid, "complete", "DELETE", None)

    def transfer(self, call_uuid: str, to: str) -> Deferred[bool]:
        """Move the call to ``to`` (E.164 or a sip: URI; ``ValueError`` at once otherwise), ending
        the media stream. Fires True when Plivo accepted, False (logged) when not."""
        check_transfer_target(to)
        if not self._public_url:
            self.log_failure(call_uuid, "transfer",
                             "no public_url: Plivo needs an absolute URL to fetch the <Dial> from")
            return succeed(False)
        body = {"legs": "aleg", "aleg_url": self.transfer_url(to), "aleg_method": "POST"}
        return self._request(call_uuid, "transfer", "POST", body)

    def success_note(self, status: int, action: str) -> str | None:
        if status not in _DONE_STATUSES[action]:
            return None
        return " (the call was already over)" if status == 404 else ""

    def rest_error(self, status: int, body: bytes | None) -> PlivoRestError:
        return PlivoRestError(status, "" if body is None else error_detail(body, _describe_error))

    def _request(self, call_uuid: str, action: str, method: str, body: dict[str, str] | None) -> Deferred[bool]:
        url = self.call_url(call_uuid)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        payload: dict[str, Any] = {} if body is None else {"json": body}  # a DELETE has no body
        return self.perform(call_uuid, action, lambda: self._http.request(
            method, url, auth=self._auth, unbuffered=True, allow_redirects=False, headers=headers, **payload))
