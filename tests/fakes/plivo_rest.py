"""A loopback Plivo Call API for outbound calls: a real HTTP server that takes ``POST
/v1/Account/{auth_id}/Call/`` as Plivo documents it (plivo.com docs/voice/api/call: HTTP
basic auth with the auth ID and token, a JSON body with ``from``, ``to``, ``answer_url``;
201 ``{"api_id", "message": "call fired", "request_uuid"}``; errors as ``{"api_id",
"error"}``), then lives the call as Plivo would.

    fake = FakePlivo("MA...", "token", lines=[...])
    server = start_server(test, fake)              # tests.fakes.http_apps
    call = await fake.call(0)                      # the first call placed
    report = await call.done                       # the callee's CallReport, after the hang-up callback

Each request takes the next queued failure (``fail_with(503)``); with none it is accepted.
Unless ``connect`` is off the call then: POSTs ``ring_url`` (``CallStatus=ringing``), POSTs
``answer_url`` (``CallStatus=in-progress``) for its Plivo XML, opens the XML's <Stream> URL as
Plivo's Audio Stream (voiced's simulated caller speaking ``lines``), and once the stream is
over POSTs ``hangup_url`` (``CallStatus=completed``, ``Duration``, ``HangupCause``). Every
callback is a form POST carrying ``CallUUID``, ``RequestUUID``, ``From``, ``To``,
``Direction=outbound``, signed with X-Plivo-Signature-V3 over the URL the request gave.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.server import Request

from tests.fakes.carrier_rest import CarrierRest
from voiced.caller.client import place_call
from voiced.caller.report import CallReport
from voiced.caller.session import CallerLine
from voiced.carrier.plivo.signature import plivo_signature


@dataclass
class PlivoCall:
    request_uuid: str
    body: dict[str, Any]
    call_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    answer_status: int = 0
    xml: str = ""
    stream_url: str = ""
    callbacks: list[tuple[str, int]] = field(default_factory=list)  # (CallStatus, the daemon's HTTP status)
    done: Deferred[CallReport | None] = field(default_factory=Deferred)


def stream_url_of(xml: str) -> str:
    match = re.search(r"<Stream [^>]*>([^<]+)</Stream>", xml)
    if match is None:
        raise ValueError(f"no <Stream> in the answer: {xml[:200]!r}")
    return match.group(1).replace("&amp;", "&")


class FakePlivo(CarrierRest[PlivoCall]):
    def __init__(self, auth_id: str, auth_token: str, lines: list[CallerLine] | None = None, connect: bool = True,
                 reply_timeout_s: float = 8.0) -> None:
        super().__init__(lines, connect, reply_timeout_s)
        self.auth_id = auth_id
        self.auth_token = auth_token

    def _error(self, request: Request, status: int, message: str) -> bytes:
        request.setResponseCode(status)
        return json.dumps({"api_id": str(uuid.uuid4()), "error": message}).encode()

    def render_POST(self, request: Request) -> bytes:
        received = self.receive(request)
        if received.path != f"/v1/Account/{self.auth_id}/Call/":
            return self._error(request, 404, "not found")
        if received.basic_auth() != (self.auth_id, self.auth_token):
            return self._error(request, 401, "Authentication credentials invalid")
        if self._failures:
            return self._error(request, self._failures.popleft(), "please retry")
        try:
            body = received.json()
        except ValueError:
            return self._error(request, 400, "invalid JSON")
        for required in ("from", "to", "answer_url"):
            if not isinstance(body.get(required), str) or not body[required]:
                return self._error(request, 400, f"{required} parameter is required")
        call = PlivoCall(str(uuid.uuid4()), body)
        self.calls.append(call)
        self.calls.notify()
        if self.connect:
            reactor.callLater(0, lambda: Deferred.fromCoroutine(self._live(call)).addErrback(call.done.errback))
        request.setResponseCode(201)
        return json.dumps({"api_id": str(uuid.uuid4()), "message": "call fired",
                           "request_uuid": call.request_uuid}).encode()

    # ---- the call, as Plivo lives it ---------------------------------------------------------
    def sign(self, url: str, params: dict[str, str], nonce: str = "") -> dict[str, str]:
        nonce = nonce or os.urandom(10).hex()
        signature = plivo_signature(self.auth_token, "POST", url, nonce, {k: [v] for k, v in params.items()})
        return {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce,
                "Content-Type": "application/x-www-form-urlencoded"}

    async def _post(self, call: PlivoCall, url: str, status: str, **extra: str) -> tuple[int, str]:
        params = {"CallUUID": call.call_uuid, "RequestUUID": call.request_uuid, "From": call.body["from"],
                  "To": call.body["to"], "Direction": "outbound", "CallStatus": status, **extra}
        response = await treq.post(url, data=urlencode(params).encode(), headers=self.sign(url, params),
                                   persistent=False)
        text = (await response.content()).decode("utf-8", "replace")
        return response.code, text

    async def _callback(self, call: PlivoCall, name: str, status: str, **extra: str) -> None:
        url = call.body.get(name)
        if url:
            code, _ = await self._post(call, url, status, **extra)
            call.callbacks.append((status, code))

    async def _live(self, call: PlivoCall) -> None:
        await self._callback(call, "ring_url", "ringing")
        call.answer_status, call.xml = await self._post(call, call.body["answer_url"], "in-progress",
                                                        Event="StartApp")
        if call.answer_status != 200:
            await self._callback(call, "hangup_url", "failed", HangupCause="ANSWER_URL_FAILED")
            call.done.callback(None)
            return
        call.stream_url = stream_url_of(call.xml)
        report = await place_call(reactor, call.stream_url, self.lines, carrier="plivo", call_sid=call.call_uuid,
                                  reply_timeout_s=self.reply_timeout_s, hangup_grace_s=1.0)
        await self._callback(call, "hangup_url", "completed", Duration=str(max(1, round(report.duration_s))),
                             HangupCause="NORMAL_CLEARING")
        call.done.callback(report)
