"""A loopback Twilio REST API for outbound calls: a real HTTP server that takes
``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` as Twilio does, then lives the call
as Twilio would.

    fake = FakeTwilio("ACtest", "token", media_url="ws://127.0.0.1:8080/media", lines=[...])
    server = start_server(test, fake)                 # tests.fakes.http_apps
    fake.api_base = server.url("").rstrip("/")        # the daemon's --twilio-api-base
    ...
    call = await fake.call(0)                         # the first call placed, once placed
    report = await call.done                          # the callee's CallReport, after "completed"

Each request takes the next queued failure (``fail_with(503, 429)``, or a Twilio error
document: ``fail_with((400, {"code": 21211, ...}))``); with none queued it is accepted:
201 and the call resource (``sid`` CA..., ``status`` queued). The call then, unless
``connect`` is off: status callbacks ``initiated``, ``ringing``, ``in-progress`` to the
request's ``StatusCallback``, each signed with X-Twilio-Signature by the official
``twilio`` package's ``RequestValidator`` (an independent implementation of Twilio's
scheme); the media stream to the TwiML's ``<Stream url>`` (connected to ``media_url``,
the upgrade signed over the wss:// URL as Twilio signs it) as voiced's simulated caller
(``voiced.caller``) speaking ``lines``, with the TwiML's ``<Parameter>``s as
``customParameters``; once the stream is over, ``completed`` with ``CallDuration``.

A number in ``callees`` is answered by a ``tests.fakes.twilio_callee.Callee`` instead: its
recording streamed as the callee's audio, and, when the request asked for Twilio's
asynchronous AMD (``MachineDetection``, ``AsyncAmd=true``), the callee's ``answered_by``
POSTed, signed, to the request's ``AsyncAmdStatusCallback`` with ``AccountSid``,
``CallSid``, ``AnsweredBy`` and ``MachineDetectionDuration`` as Twilio sends them
(``PlacedCall.amd_callbacks``). ``POST .../Calls/{CallSid}.json`` updates a call as
Twilio's API does (``PlacedCall.updates``): ``Status=completed`` ends its media stream.
For campaigns: ``talk_s`` (no media stream: the call is ``in-progress`` that long, then
``completed``), ``busy`` (a number's first N calls are ``busy`` after ringing), ``posts``
(every Calls POST: its time and To), ``live`` (the calls not yet ended), ``drop_all()``
(Twilio hangs up every live call and tells nobody: the daemon it would tell is dead), and
the reads Twilio answers: ``GET Calls/{Sid}.json`` and ``GET Calls.json`` filtered by ``To``,
``From`` and ``StartTime``/``StartTime>``/``StartTime<`` (dates or ISO 8601, as the official
package sends them), newest first.
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import datetime, timezone
from email.utils import format_datetime
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import treq
from twilio.request_validator import RequestValidator
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.server import Request

from tests.fakes.carrier_rest import CarrierRest
from tests.fakes.twilio_callee import Callee, StreamTimes, stream_callee
from voiced.caller.client import place_call
from voiced.caller.report import CallReport
from voiced.caller.session import CallerLine


@dataclass
class PlacedCall:
    sid: str
    form: dict[str, list[str]]
    stream_url: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    callbacks: list[tuple[str, int]] = field(default_factory=list)  # (CallStatus, the daemon's HTTP status)
    amd_callbacks: list[tuple[str, int]] = field(default_factory=list)  # (AnsweredBy, the daemon's HTTP status)
    updates: list[dict[str, str]] = field(default_factory=list)  # the call's REST updates (Status=completed)
    times: StreamTimes = field(default_factory=StreamTimes)  # a Callee's stream, as the fake's side saw it
    done: Deferred[CallReport | None] = field(default_factory=Deferred)
    created: float = field(default_factory=time.time)
    status: str = "queued"
    started: float | None = None
    busy: bool = False  # this call ends busy (FakeTwilio.busy)

    def resource(self, account_sid: str) -> dict[str, Any]:
        """The call as Twilio's REST API shows it."""
        def rfc2822(at: float | None) -> str | None:
            return None if at is None else format_datetime(datetime.fromtimestamp(int(at), timezone.utc))

        return {"sid": self.sid, "account_sid": account_sid, "status": self.status, "to": self.field("To"),
                "from": self.field("From"), "direction": "outbound-api", "date_created": rfc2822(self.created),
                "start_time": rfc2822(self.started), "uri": f"/2010-04-01/Accounts/{account_sid}/Calls/{self.sid}.json"}

    def field(self, name: str) -> str:
        return self.form[name][0]


def parse_twiml(twiml: str) -> tuple[str, dict[str, str]]:
    """The ``<Connect><Stream url>`` and its ``<Parameter>``s, as Twilio reads them."""
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    if stream is None:
        raise ValueError(f"no <Connect><Stream> in {twiml!r}")
    return stream.get("url", ""), {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}


class FakeTwilio(CarrierRest[PlacedCall]):
    def __init__(self, account_sid: str, auth_token: str, media_url: str = "", lines: list[CallerLine] | None = None,
                 connect: bool = True, reply_timeout_s: float = 8.0, callees: dict[str, Callee] | None = None,
                 talk_s: float | None = None, busy: dict[str, int] | None = None) -> None:
        super().__init__(lines, connect, reply_timeout_s)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.media_url = media_url  # where the TwiML's wss:// stream URL really is (a ws:// on loopback)
        self.callees = callees or {}  # To number -> who picks up (else the simulated caller speaks ``lines``)
        self.talk_s = talk_s
        self.busy = dict(busy or {})
        # (time received, To, calls live with it) of every Calls POST
        self.posts: list[tuple[float, str, int]] = []
        self.on_post: Any = None  # on_post(number of calls POSTed so far), before the answer is written
        self._validator = RequestValidator(auth_token)

    def fail_with(self, *failures: int | tuple[int, dict[str, Any]]) -> None:  # type: ignore[override]
        """Each a status, or a (status, error document) pair."""
        for failure in failures:
            status, document = failure if isinstance(failure, tuple) else (failure, {})
            self._failures.append((status, document or {"code": 20500, "message": "Internal Server Error",
                                                         "status": status}))

    @property
    def live(self) -> list[PlacedCall]:
        return [call for call in self.calls if call.status not in _FINAL]

    def drop_all(self) -> None:
        """Every live call ends, and no callback tells of it."""
        for call in self.live:
            call.status = "busy" if call.busy else "completed"

    # ---- reading calls back ------------------------------------------------------------------
    def render_GET(self, request: Request) -> bytes:
        received = self.receive(request)
        if received.basic_auth() != (self.account_sid, self.auth_token):
            return self._error(request, 401, 20003, "Authenticate")
        path = request.path.decode()
        base = f"/2010-04-01/Accounts/{self.account_sid}/Calls"
        if path == base + ".json":
            query = {k.decode(): v[0].decode() for k, v in request.args.items()}
            calls = [c.resource(self.account_sid) for c in reversed(self.calls) if _matches(c, query)]
            size = int(query.get("PageSize", "50"))
            return json.dumps({"calls": calls[:size], "page": 0, "page_size": size, "start": 0,
                               "end": min(size, len(calls)) - 1, "next_page_uri": None,
                               "uri": request.uri.decode()}).encode()
        for call in self.calls:
            if path == f"{base}/{call.sid}.json":
                return json.dumps(call.resource(self.account_sid)).encode()
        return self._error(request, 404, 20404, f"The requested resource {path} was not found")

    # ---- the REST API ---------------------------------------------------------------------
    def render_POST(self, request: Request) -> bytes:
        received = self.receive(request)
        calls_path = f"/2010-04-01/Accounts/{self.account_sid}/Calls"
        if received.path != calls_path + ".json" and not received.path.startswith(calls_path + "/"):
            return self._error(request, 404, 20404, f"The requested resource {received.path} was not found")
        if received.basic_auth() != (self.account_sid, self.auth_token):
            return self._error(request, 401, 20003, "Authenticate")
        if received.path != calls_path + ".json":
            return self._update(request, received.path[len(calls_path) + 1:].removesuffix(".json"), received.form())
        if self._failures:
            status, document = self._failures.popleft()
            request.setResponseCode(status)
            return json.dumps(document).encode()
        form = received.form()
        for required in ("To", "From"):
            if required not in form:
                return self._error(request, 400, 21201, f"Required parameter {required} missing")
        call = PlacedCall("CA" + os.urandom(16).hex(), form)
        to = call.field("To")
        if self.busy.get(to, 0) > 0:
            self.busy[to] -= 1
            call.busy = True
        self.calls.append(call)
        self.posts.append((time.time(), to, len(self.live)))
        if self.on_post is not None:
            self.on_post(len(self.posts))
        self.calls.notify()
        if self.connect:
            life = self._live if self.talk_s is None else self._talk
            reactor.callLater(0, lambda: Deferred.fromCoroutine(life(call)).addErrback(call.done.errback))
        request.setResponseCode(201)
        return json.dumps({"sid": call.sid, "account_sid": self.account_sid, "status": "queued",
                           "to": form["To"][0], "from": form["From"][0], "direction": "outbound-api",
                           "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call.sid}.json"}).encode()

    def _update(self, request: Request, sid: str, form: dict[str, list[str]]) -> bytes:
        call = next((c for c in self.calls if c.sid == sid), None)
        if call is None:
            return self._error(request, 404, 20404, f"The requested resource Calls/{sid}.json was not found")
        call.updates.append({name: values[0] for name, values in form.items()})
        status = form.get("Status", [""])[0]
        if status == "completed" and call.times.link is not None:
            reactor.callLater(0, call.times.link.hang_up)  # Twilio ends the call, and its stream with it
        return json.dumps({"sid": sid, "account_sid": self.account_sid, "status": status or "in-progress"}).encode()

    @staticmethod
    def _error(request: Request, status: int, code: int, message: str) -> bytes:
        request.setResponseCode(status)
        return json.dumps({"code": code, "message": message, "status": status,
                           "more_info": f"https://www.twilio.com/docs/errors/{code}"}).encode()

    # ---- the call, as Twilio lives it --------------------------------------------------------
    async def _live(self, call: PlacedCall) -> None:
        call.stream_url, call.parameters = parse_twiml(call.field("Twiml"))
        for status in ("initiated", "ringing", "in-progress"):
            await self._status(call, status)
        callee = self.callees.get(call.field("To"))
        if callee is not None:
            report = await self._stream(call, callee)
            await self._status(call, "completed", CallDuration=str(max(1, round(report.duration_s))))
            call.done.callback(report)
            return
        lines = self.lines
        report = await place_call(reactor, self.media_url or call.stream_url, lines, carrier="twilio",
                                  call_sid=call.sid, account_sid=self.account_sid, auth_token=self.auth_token,
                                  signed_url=call.stream_url, custom_parameters=dict(call.parameters),
                                  reply_timeout_s=self.reply_timeout_s, hangup_grace_s=1.0)
        await self._status(call, "completed", CallDuration=str(max(1, round(report.duration_s))))
        call.done.callback(report)

    def _stream(self, call: PlacedCall, callee: Callee) -> Deferred[CallReport]:
        asks_amd = "MachineDetection" in call.form and call.form.get("AsyncAmd", [""])[0] == "true"

        def frame_sent(n: int) -> None:
            if asks_amd and callee.answered_by and n == callee.verdict_frame:
                # A verdict the daemon never took is an amd_callbacks entry with status 0.
                Deferred.fromCoroutine(self._amd_verdict(call, callee.answered_by, n * 20)).addErrback(
                    lambda _: call.amd_callbacks.append((callee.answered_by, 0)))

        return stream_callee(self.media_url or call.stream_url, call.stream_url, callee, call.sid, self.account_sid,
                             self.auth_token, dict(call.parameters), call.times, frame_sent)

    async def _amd_verdict(self, call: PlacedCall, answered_by: str, duration_ms: int) -> None:
        url = call.field("AsyncAmdStatusCallback")
        params = {"AccountSid": self.account_sid, "CallSid": call.sid, "AnsweredBy": answered_by,
                  "MachineDetectionDuration": str(duration_ms)}
        signature = self._validator.compute_signature(url, params)
        response = await treq.post(url, data=params, headers={"X-Twilio-Signature": signature}, persistent=False)
        await response.content()
        call.amd_callbacks.append((answered_by, response.code))

    async def _talk(self, call: PlacedCall) -> None:
        """A call without a media stream: busy (a number's first calls, if asked), or answered
        for ``talk_s`` and completed. A call dropped meanwhile (``drop_all``) says nothing more."""
        for status in ("initiated", "ringing"):
            if not await self._status(call, status):
                return
        await _sleep(0.05)
        if call.busy:
            await self._status(call, "busy")
            call.done.callback(None)
            return
        call.started = time.time()
        if not await self._status(call, "in-progress"):
            return
        await _sleep(self.talk_s or 0.0)
        await self._status(call, "completed", CallDuration="1")
        call.done.callback(None)

    async def _status(self, call: PlacedCall, status: str, **extra: str) -> bool:
        """Tell the call's status callback; False (nothing told) once the call was dropped."""
        if call.status in _FINAL:
            return False
        call.status = status
        url = call.field("StatusCallback")
        params = {"AccountSid": self.account_sid, "CallSid": call.sid, "CallStatus": status,
                  "From": call.field("From"), "To": call.field("To"), "Direction": "outbound-api",
                  "ApiVersion": "2010-04-01", "CallbackSource": "call-progress-events",
                  "SequenceNumber": str(len(call.callbacks)), **extra}
        signature = self._validator.compute_signature(url, params)
        try:
            response = await treq.post(url, data=params, headers={"X-Twilio-Signature": signature},
                                       persistent=False)
            await response.content()
        except Exception:  # the daemon is gone (killed): Twilio gives up on the callback
            call.callbacks.append((status, -1))
            if self.talk_s is None:
                raise
            return True
        call.callbacks.append((status, response.code))
        return True


_FINAL = {"busy", "no-answer", "failed", "canceled", "completed"}


def _sleep(seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


def _twilio_time(text: str) -> float:
    """A StartTime filter's value: a date (2026-12-07) or an ISO 8601 time, UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def _matches(call: PlacedCall, query: dict[str, str]) -> bool:
    if "To" in query and call.field("To") != query["To"]:
        return False
    if "From" in query and call.field("From") != query["From"]:
        return False
    started = call.started
    for name, test in (("StartTime", lambda t, v: int(t) // 86400 == int(v) // 86400 if len(query["StartTime"]) == 10
                        else int(t) == int(v)),
                       ("StartTime>", lambda t, v: t >= v), ("StartTime<", lambda t, v: t <= v)):
        if name in query:
            if started is None or not test(started, _twilio_time(query[name])):
                return False
    return True


def basic_auth_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def parse_form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
