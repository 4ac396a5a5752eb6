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
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from voiced.transfer import check_transfer_target, is_sip_uri
from voiced.carrier.rest import DEFAULT_BACKOFF, REQUEST_TIMEOUT_S, USER_AGENT
from voiced.carrier.rest import CarrierCallControl, CarrierRestError, error_detail
from voiced.carrier.vonage.signature import b64url_encode
from voiced.retry import Backoff

__all__ = ["DEFAULT_API_BASE", "DEFAULT_BACKOFF", "JWT_LIFETIME_S", "REQUEST_TIMEOUT_S", "VonageCallControl",
           "VonageRestError", "application_jwt", "load_private_key", "transfer_body"]

DEFAULT_API_BASE = "https://api.nexmo.com"
JWT_LIFETIME_S = 15 * 60  # what Vonage's SDKs give an application JWT


class VonageRestError(CarrierRestError):
    """Vonage answered an update with a non-2xx status."""


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


def _describe_error(answer: dict[str, Any]) -> str:
    """Vonage's errors are RFC 7807 JSON: ``{"type", "title", "detail", "instance"}``."""
    return " ".join(str(answer[k]) for k in ("title", "detail") if answer.get(k))


class VonageCallControl(CarrierCallControl):
    """Hang-up and transfer of live calls through Vonage's Voice API (a ``CallControl``)."""

    log_name = "VONAGE_REST"

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
        super().__init__(http, clock, api_base, backoff, request_timeout_s)
        self._application_id = application_id
        self._key = private_key

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

    def rest_error(self, status: int, body: bytes | None) -> VonageRestError:
        return VonageRestError(status, "" if body is None else error_detail(body, _describe_error))

    def _update(self, uuid: str, action: str, document: dict[str, Any]) -> Deferred[bool]:
        url = self.call_url(uuid)
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")

        def send() -> Deferred[Any]:
            # A fresh token each attempt: a retry must not carry one near its expiry.
            token = application_jwt(self._key, self._application_id, self._clock.seconds())
            return self._http.put(
                url, data=body, unbuffered=True, allow_redirects=False,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                         "Accept": "application/json", "User-Agent": USER_AGENT},
            )

        return self.perform(uuid, action, send)
