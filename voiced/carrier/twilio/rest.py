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

from urllib.parse import quote
from xml.sax.saxutils import escape

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from voiced.transfer import check_transfer_target, is_sip_uri
from voiced.carrier.rest import DEFAULT_BACKOFF, REQUEST_TIMEOUT_S, USER_AGENT
from voiced.carrier.rest import CarrierCallControl, CarrierRestError, error_detail
from voiced.retry import Backoff

__all__ = ["DEFAULT_API_BASE", "DEFAULT_BACKOFF", "REQUEST_TIMEOUT_S", "TwilioCallControl", "TwilioRestError",
           "dial_twiml"]

DEFAULT_API_BASE = "https://api.twilio.com"


class TwilioRestError(CarrierRestError):
    """Twilio answered an update with a non-2xx status."""


def dial_twiml(to: str) -> str:
    """The TwiML that transfers a call to ``to`` (checked first). A SIP URI needs the
    ``<Sip>`` noun: bare text inside ``<Dial>`` is taken for a phone number."""
    target = escape(check_transfer_target(to))
    noun = f"<Sip>{target}</Sip>" if is_sip_uri(to) else target
    return f"<Response><Dial>{noun}</Dial></Response>"


def _error_detail(body: bytes) -> str:
    """Twilio's error JSON is ``{"code", "message", "more_info", "status"}``: keep code and message."""
    return error_detail(body, lambda answer: f"code={answer.get('code')} {answer.get('message', '')}".strip())


class TwilioCallControl(CarrierCallControl):
    """Hang-up and transfer of live calls through Twilio's REST API (a ``CallControl``)."""

    log_name = "TWILIO_REST"

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
        super().__init__(http, clock, api_base, backoff, request_timeout_s)
        self._account_sid = account_sid
        self._auth = (account_sid, auth_token)

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

    def rest_error(self, status: int, body: bytes | None) -> TwilioRestError:
        return TwilioRestError(status, "" if body is None else _error_detail(body))

    def _update(self, call_sid: str, action: str, form: dict[str, str]) -> Deferred[bool]:
        url = self.call_url(call_sid)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        return self.perform(call_sid, action, lambda: self._http.post(
            url, data=form, auth=self._auth, unbuffered=True, allow_redirects=False, headers=headers))
