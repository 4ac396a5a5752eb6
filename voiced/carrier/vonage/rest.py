"""Vonage's Voice API for what the media socket cannot do by itself: transfer (and hang-up).

Both are an update of the live call, ``PUT {api_base}/v1/calls/{uuid}`` with a JSON body,
exactly what Vonage's server SDKs send for ``voice.hangup(uuid)`` and
``voice.transfer_call_ncco(uuid, ncco)``: ``{"action": "hangup"}``, or ``{"action":
"transfer", "destination": {"type": "ncco", "ncco": [connect ...]}}``, which replaces the
call's NCCO (ending the connect to voiced's socket) with a connect to the target: a
``phone`` endpoint (E.164 digits without the plus, as Vonage writes numbers) or a ``sip``
one. ``uuid`` is the caller's leg, from the answer webhook. The request is authorized by an
application JWT: RS256 over ``application_id``, ``iat``, ``jti`` and ``exp``, signed with
the application's private key (``cryptography``, already installed with twisted[tls] and
service-identity: no new dependency).

429 and 5xx answers and connection errors are retried with backoff; any other 4xx is final.
Either way the outcome is logged with the call's uuid and reported as True/False, never
raised into the call. The private key is never logged.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote
from uuid import uuid4

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
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
from voiced.carrier.vonage.signature import b64url_encode
from voiced.retry import Backoff, retry

log = Logger()

DEFAULT_API_BASE = "https://api.nexmo.com"
# 0.5, 1, 2, 4 s: about 7.5 s of retries, within what a caller waits after "goodbye".
DEFAULT_BACKOFF = Backoff(0.5, 4.0, attempts=4, jitter=0.2)
REQUEST_TIMEOUT_S = 10.0
JWT_LIFETIME_S = 15 * 60  # what Vonage's SDKs give an application JWT
_MAX_BODY = 64 * 1024
_MAX_DETAIL = 200

_CONNECTION_ERRORS = (
    error.ConnectError, error.DNSLookupError, error.ConnectionLost, error.TimeoutError,
    defer.TimeoutError,  # our own per-request timeout
    ResponseNeverReceived, RequestTransmissionFailed, ResponseFailed,
)


class VonageRestError(Exception):
    """Vonage answered an update with a non-2xx status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}{': ' + detail if detail else ''}")
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The application's private key from its PEM (ValueError when it is not an RSA key)."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the Vonage private key is not an RSA key")
    return key


def application_jwt(key: rsa.RSAPrivateKey, application_id: str, now: float) -> str:
    """The Bearer token of one Voice API request, as Vonage's SDKs make it."""
    header = b64url_encode(b'{"alg":"RS256","typ":"JWT"}')
    iat = int(now)
    claims = {"application_id": application_id, "iat": iat, "jti": str(uuid4()), "exp": iat + JWT_LIFETIME_S}
    body = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signed = f"{header}.{body}".encode("ascii")
    return f"{header}.{body}.{b64url_encode(key.sign(signed, padding.PKCS1v15(), hashes.SHA256()))}"


def transfer_body(to: str) -> dict[str, Any]:
    """The update that moves a call to ``to`` (checked first: ValueError when it is not a target)."""
    target = check_transfer_target(to)
    endpoint = {"type": "sip", "uri": target} if is_sip_uri(target) else {"type": "phone", "number": target[1:]}
    return {"action": "transfer",
            "destination": {"type": "ncco", "ncco": [{"action": "connect", "endpoint": [endpoint]}]}}


def _cancelled_as_cancelled(failure: Failure) -> Failure:
    # Cancelling a request still waiting for its answer fails it with
    # ResponseNeverReceived([CancelledError]); addTimeout and retry only know CancelledError.
    if failure.check(ResponseNeverReceived) and any(r.check(CancelledError) for r in failure.value.reasons):
        return Failure(CancelledError())
    return failure


def _is_retryable(failure: Failure) -> bool:
    if failure.check(VonageRestError):
        return failure.value.retryable
    return failure.check(*_CONNECTION_ERRORS) is not None


def _status(failure: Failure) -> str:
    return str(failure.value.status) if failure.check(VonageRestError) else type(failure.value).__name__


def _error_detail(body: bytes) -> str:
    """Vonage's errors are RFC 7807 JSON: ``{"type", "title", "detail", "instance"}``."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body[:_MAX_DETAIL].decode("utf-8", "replace").strip()
    if not isinstance(answer, dict):
        return ""
    return " ".join(str(answer[k]) for k in ("title", "detail") if answer.get(k))[:_MAX_DETAIL]


class VonageCallControl:
    """Hang-up and transfer of live calls through Vonage's Voice API (a ``CallControl``)."""

    def __init__(
        self,
        http: HTTPClient,
        clock: IReactorTime,
        application_id: str,
        private_key: rsa.RSAPrivateKey,
        api_base: str = DEFAULT_API_BASE,
        backoff: Backoff | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        if not application_id or private_key is None:
            raise ValueError("Vonage's Voice API needs an application id and its private key")
        self._http = http
        self._clock = clock
        self._application_id = application_id
        self._key = private_key
        self._api_base = api_base.rstrip("/")
        self._backoff = backoff or DEFAULT_BACKOFF
        self._request_timeout_s = request_timeout_s

    def __repr__(self) -> str:  # the key stays out of any log that prints us
        return f"VonageCallControl(application_id={self._application_id!r}, api_base={self._api_base!r})"

    def call_url(self, uuid: str) -> str:
        # The uuid comes from the carrier's connected message: quote it rather than trust it in a path.
        return f"{self._api_base}/v1/calls/{quote(uuid, safe='')}"

    def complete(self, uuid: str) -> Deferred[bool]:
        """Hang the call up. Fires True when Vonage accepted, False (logged) when not."""
        return self._update(uuid, "complete", {"action": "hangup"})

    def transfer(self, uuid: str, to: str) -> Deferred[bool]:
        """Connect the call to ``to`` (E.164 or a sip: URI; ``ValueError`` at once otherwise),
        ending its connect to voiced. Fires True when Vonage accepted, False (logged) when not."""
        return self._update(uuid, "transfer", transfer_body(to))

    def _update(self, uuid: str, action: str, document: dict[str, Any]) -> Deferred[bool]:
        url = self.call_url(uuid)
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")

        def attempt(_number: int) -> Deferred[None]:
            token = application_jwt(self._key, self._application_id, self._clock.seconds())
            sent = self._http.put(
                url, data=body, unbuffered=True, allow_redirects=False,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                         "Accept": "application/json", "User-Agent": f"voiced/{__version__}"},
            )
            sent.addCallbacks(self._check_answer, _cancelled_as_cancelled)
            return sent.addTimeout(self._request_timeout_s, self._clock)

        def on_retry(number: int, delay_s: float, failure: Failure) -> None:
            log.warn("VONAGE_REST_RETRY call={call} status={status} attempt={attempt} action={action} "
                     "delay_ms={delay_ms}", call=uuid, status=_status(failure), attempt=number,
                     action=action, delay_ms=round(delay_s * 1000))

        def succeeded(_: None) -> bool:
            log.info("VONAGE_REST_OK call={call} action={action}", call=uuid, action=action)
            return True

        def failed(failure: Failure) -> bool:
            reason = "cancelled" if failure.check(CancelledError) else failure.getErrorMessage()
            log.warn("VONAGE_REST_FAILED call={call} action={action} error={error}", call=uuid,
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
            raise VonageRestError(response.code, detail)

        return body.addBoth(raise_status)
