"""A loopback Vonage Voice API for outbound calls: a real HTTP server that takes ``POST
/v1/calls`` as Vonage documents it (developer.vonage.com voice/voice-api/api-reference
#createCall: an application JWT, RS256 with the application's private key, in
``Authorization: Bearer``; a JSON body with ``to``, ``from`` and ``ncco`` or
``answer_url``; 201 ``{"uuid", "status": "started", "direction": "outbound",
"conversation_uuid"}``; errors as RFC 7807 ``{"type", "title", "detail"}``), then lives
the call as Vonage would.

The JWT is checked here independently of voiced (``cryptography``'s RSA verification
against the application's public key, then its ``application_id`` and ``exp``). Unless
``connect`` is off the call then: POSTs its ``event_url`` with ``started``, ``ringing``,
``answered`` (JSON, signed with the signed-webhook JWT: HS256 keyed by the signature
secret, with ``payload_hash`` the SHA-256 of the body), connects the NCCO's websocket
endpoint as Vonage does (``websocket:connected`` with the endpoint's content-type and
headers) with voiced's simulated caller speaking ``lines``, and once the stream is over
POSTs ``completed`` with ``duration``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import treq
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.server import Request

from tests.fakes.carrier_rest import CarrierRest
from voiced.caller.client import place_call
from voiced.caller.report import CallReport
from voiced.caller.session import CallerLine


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signed_webhook_jwt(secret: str, body: bytes, now: float | None = None) -> str:
    """The JWT Vonage puts on a signed webhook: HS256 over its claims, ``payload_hash`` of the body."""
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = {"iat": int(time.time() if now is None else now), "jti": str(uuid.uuid4()), "iss": "Vonage",
              "payload_hash": hashlib.sha256(body).hexdigest(), "api_key": "abcd1234",
              "application_id": "app-id"}
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(mac)}"


def jwt_problem(token: str, public_key: rsa.RSAPublicKey, application_id: str) -> str | None:
    """Why ``token`` is not an application JWT Vonage would take; None when it is."""
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header, claims = json.loads(_unb64url(header_b64)), json.loads(_unb64url(claims_b64))
        public_key.verify(_unb64url(signature_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(),
                          hashes.SHA256())
    except (ValueError, InvalidSignature):
        return "invalid token"
    if header.get("alg") != "RS256":
        return "not RS256"
    if claims.get("application_id") != application_id:
        return "another application"
    if not isinstance(claims.get("exp"), int) or claims["exp"] < time.time() or not claims.get("jti"):
        return "expired or incomplete claims"
    return None


@dataclass
class VonageCall:
    uuid: str
    body: dict[str, Any]
    conversation_uuid: str = field(default_factory=lambda: f"CON-{uuid.uuid4()}")
    endpoint: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, int]] = field(default_factory=list)  # (status, the daemon's HTTP status)
    done: Deferred[CallReport | None] = field(default_factory=Deferred)


class FakeVonage(CarrierRest[VonageCall]):
    def __init__(self, application_id: str, public_key: rsa.RSAPublicKey, signature_secret: str,
                 lines: list[CallerLine] | None = None, connect: bool = True, reply_timeout_s: float = 8.0) -> None:
        super().__init__(lines, connect, reply_timeout_s)
        self.application_id = application_id
        self.public_key = public_key
        self.secret = signature_secret

    @staticmethod
    def _error(request: Request, status: int, title: str, detail: str = "") -> bytes:
        request.setResponseCode(status)
        return json.dumps({"type": "https://developer.nexmo.com/api-errors", "title": title, "detail": detail,
                           "instance": str(uuid.uuid4())}).encode()

    def render_POST(self, request: Request) -> bytes:
        received = self.receive(request)
        if received.path != "/v1/calls":
            return self._error(request, 404, "Not Found")
        scheme, _, token = received.headers.get("authorization", "").partition(" ")
        problem = "no bearer token" if scheme != "Bearer" else jwt_problem(token, self.public_key,
                                                                           self.application_id)
        if problem is not None:
            return self._error(request, 401, "Unauthorized", problem)
        if self._failures:
            return self._error(request, self._failures.popleft(), "Please retry")
        try:
            body = received.json()
            to = body["to"][0]
            ncco = body.get("ncco")
            ok = to["type"] == "phone" and to["number"].isdigit() and body["from"]["type"] == "phone" and (
                isinstance(ncco, list) or body.get("answer_url"))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            ok = False
        if not ok:
            return self._error(request, 400, "Bad Request", "to, from and ncco or answer_url are required")
        call = VonageCall(str(uuid.uuid4()), body)
        self.calls.append(call)
        self.calls.notify()
        if self.connect:
            reactor.callLater(0, lambda: Deferred.fromCoroutine(self._live(call)).addErrback(call.done.errback))
        request.setResponseCode(201)
        return json.dumps({"uuid": call.uuid, "status": "started", "direction": "outbound",
                           "conversation_uuid": call.conversation_uuid}).encode()

    # ---- the call, as Vonage lives it --------------------------------------------------------
    async def event(self, call: VonageCall, status: str, secret: str | None = None, **extra: Any) -> int:
        event = {"status": status, "uuid": call.uuid, "conversation_uuid": call.conversation_uuid,
                 "direction": "outbound", "from": call.body["from"]["number"], "to": call.body["to"][0]["number"],
                 "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), **extra}
        body = json.dumps(event).encode()
        token = signed_webhook_jwt(self.secret if secret is None else secret, body)
        response = await treq.post(call.body["event_url"][0], data=body, persistent=False, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        await response.content()
        call.events.append((status, response.code))
        return response.code

    async def _live(self, call: VonageCall) -> None:
        for status in ("started", "ringing", "answered"):
            await self.event(call, status)
        call.endpoint = call.body["ncco"][0]["endpoint"][0]
        parameters = {"content-type": call.endpoint["content-type"], **call.endpoint.get("headers", {})}
        report = await place_call(reactor, call.endpoint["uri"], self.lines, carrier="vonage", call_sid=call.uuid,
                                  custom_parameters=parameters, auth_token=self.secret,
                                  reply_timeout_s=self.reply_timeout_s, hangup_grace_s=1.0)
        await self.event(call, "completed", duration=str(max(1, round(report.duration_s))))
        call.done.callback(report)
