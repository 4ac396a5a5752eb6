"""A loopback Telnyx Call Control API for outbound calls: a real HTTP server that takes
``POST /v2/calls`` as Telnyx documents it (developers.telnyx.com api/call-control/dial-call:
``Authorization: Bearer <API key>``; JSON with ``connection_id``, ``to``, ``from`` required,
``stream_url`` and the stream options, ``webhook_url``, ``client_state``; 200 ``{"data":
{"call_control_id", "call_leg_id", "call_session_id", "is_alive", "record_type": "call"}}``;
errors as ``{"errors": [{"code", "title", "detail"}]}``), then lives the call as Telnyx would.

Unless ``connect`` is off the call then: POSTs ``call.initiated`` and ``call.answered`` to the
request's ``webhook_url`` (JSON ``{"data": {"event_type", "id", "occurred_at", "payload":
{"call_control_id", "client_state", ...}, "record_type": "event"}, "meta": {...}}``, signed
with Ed25519 over ``timestamp|body`` in ``telnyx-signature-ed25519`` and ``telnyx-timestamp``,
by the fake's own private key), opens ``stream_url`` as Telnyx's media stream (voiced's
simulated caller speaking ``lines``; Call Control's ``start`` has no custom parameters), and
once the stream is over POSTs ``call.hangup`` (``hangup_cause: normal_clearing``).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import treq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.server import Request

from tests.fakes.carrier_rest import CarrierRest
from voiced.caller.client import place_call
from voiced.caller.report import CallReport
from voiced.caller.session import CallerLine


def webhook_headers(key: Ed25519PrivateKey, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    """Telnyx's signature headers for a webhook ``body``."""
    timestamp = timestamp or str(int(time.time()))
    signature = base64.b64encode(key.sign(timestamp.encode() + b"|" + body)).decode()
    return {"telnyx-signature-ed25519": signature, "telnyx-timestamp": timestamp,
            "Content-Type": "application/json"}


def webhook(event_type: str, payload: dict[str, Any]) -> bytes:
    return json.dumps({"data": {"event_type": event_type, "id": str(uuid.uuid4()),
                                "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
                                "payload": payload, "record_type": "event"},
                       "meta": {"attempt": 1, "delivered_to": payload.get("webhook_url", "")}}).encode()


@dataclass
class TelnyxCall:
    call_control_id: str
    body: dict[str, Any]
    call_session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    webhooks: list[tuple[str, int]] = field(default_factory=list)  # (event_type, the daemon's HTTP status)
    done: Deferred[CallReport | None] = field(default_factory=Deferred)


class FakeTelnyx(CarrierRest[TelnyxCall]):
    def __init__(self, api_key: str, connection_id: str, signing_key: Ed25519PrivateKey,
                 lines: list[CallerLine] | None = None, connect: bool = True, reply_timeout_s: float = 8.0) -> None:
        super().__init__(lines, connect, reply_timeout_s)
        self.api_key = api_key
        self.connection_id = connection_id
        self.signing_key = signing_key

    @staticmethod
    def _error(request: Request, status: int, code: str, title: str, detail: str = "") -> bytes:
        request.setResponseCode(status)
        return json.dumps({"errors": [{"code": code, "title": title, "detail": detail}]}).encode()

    def render_POST(self, request: Request) -> bytes:
        received = self.receive(request)
        if received.path != "/v2/calls":
            return self._error(request, 404, "10005", "Resource not found")
        if received.headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error(request, 401, "10009", "Authentication failed")
        if self._failures:
            return self._error(request, self._failures.popleft(), "10011", "Please retry")
        try:
            body = received.json()
        except ValueError:
            return self._error(request, 400, "10015", "Invalid JSON")
        for required in ("connection_id", "to", "from"):
            if not isinstance(body.get(required), str) or not body[required]:
                return self._error(request, 422, "10032", "Missing required parameter", f"{required} is required")
        if body["connection_id"] != self.connection_id:
            return self._error(request, 422, "90018", "Invalid connection_id")
        call = TelnyxCall("v3:" + uuid.uuid4().hex, body)
        self.calls.append(call)
        self.calls.notify()
        if self.connect:
            reactor.callLater(0, lambda: Deferred.fromCoroutine(self._live(call)).addErrback(call.done.errback))
        return json.dumps({"data": {"call_control_id": call.call_control_id, "call_leg_id": str(uuid.uuid4()),
                                    "call_session_id": call.call_session_id, "is_alive": False,
                                    "record_type": "call"}}).encode()

    # ---- the call, as Telnyx lives it --------------------------------------------------------
    async def send_webhook(self, call: TelnyxCall, event_type: str, key: Ed25519PrivateKey | None = None,
                           **extra: Any) -> int:
        payload = {"call_control_id": call.call_control_id, "call_session_id": call.call_session_id,
                   "connection_id": self.connection_id, "from": call.body["from"], "to": call.body["to"],
                   "direction": "outgoing", "state": event_type.split(".")[-1], **extra}
        if call.body.get("client_state"):
            payload["client_state"] = call.body["client_state"]
        body = webhook(event_type, payload)
        response = await treq.post(call.body["webhook_url"], data=body, persistent=False,
                                   headers=webhook_headers(key or self.signing_key, body))
        await response.content()
        call.webhooks.append((event_type, response.code))
        return response.code

    async def _live(self, call: TelnyxCall) -> None:
        await self.send_webhook(call, "call.initiated")
        started = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        await self.send_webhook(call, "call.answered", start_time=started)
        report = await place_call(reactor, call.body["stream_url"], self.lines, carrier="telnyx",
                                  call_sid=call.call_control_id, reply_timeout_s=self.reply_timeout_s,
                                  hangup_grace_s=1.0)
        await self.send_webhook(call, "call.hangup", start_time=started, hangup_cause="normal_clearing",
                                hangup_source="callee", sip_hangup_cause="200")
        call.done.callback(report)
