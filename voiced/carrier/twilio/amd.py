"""Twilio's asynchronous answering-machine detection callback (``POST /twilio/amd``).

A call voiced places with ``MachineDetection=DetectMessageEnd``, ``AsyncAmd=true`` and
``AsyncAmdStatusCallback={public_url}/twilio/amd`` is connected at once; Twilio POSTs its
verdict here later: ``CallSid``, ``AccountSid``, ``AnsweredBy`` (human, machine_start,
machine_end_beep, machine_end_silence, machine_end_other, fax, unknown) and
``MachineDetectionDuration`` (ms). It is signed like the voice webhook (X-Twilio-Signature
over the URL Twilio was given, ``--public-url`` plus the path and query, and the form), as
the dial's status callback is checked: a bad signature is a 403. The verdict goes to the
live call whose id is the CallSid (``voiced.call.machine``); a CallSid no live call here
has (the call ended, another worker carries it) is answered 200 and logged, since Twilio
retrying it would change nothing.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import parse_qs

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from voiced.carrier.twilio.signature import request_signature, signature_matches

log = Logger(namespace="voiced.carrier")

AMD_PATH = "twilio/amd"


class TwilioAmdCallback(Resource):
    isLeaf = True

    def __init__(self, auth_token: str, public_url: str, find_call: Callable[[str], Any]) -> None:
        super().__init__()
        self.auth_token = auth_token
        # The base of the AsyncAmdStatusCallback voiced gave Twilio: its scheme and any path prefix are signed too.
        self.public_url = public_url.rstrip("/")
        self.find_call = find_call  # VoicedService.call_by_id

    def render_POST(self, request: Request) -> bytes:
        form = parse_qs(request.content.getvalue().decode("utf-8", "replace"), keep_blank_values=True)
        if self.auth_token:
            url = self.public_url + request.uri.decode("utf-8", "replace")
            if not signature_matches(self.auth_token, url, form, request_signature(request.getHeader)):
                log.warn("AMD_CALLBACK_REJECTED: bad or missing X-Twilio-Signature for {url} from {peer}", url=url,
                         peer=request.getClientAddress())
                request.setResponseCode(403)
                return b"invalid signature\n"
        call_sid = (form.get("CallSid") or [""])[0][:64]
        answered_by = (form.get("AnsweredBy") or [""])[0][:40]
        duration = (form.get("MachineDetectionDuration") or [""])[0][:12]
        if not call_sid or not answered_by:
            request.setResponseCode(400)
            return b"CallSid and AnsweredBy are required\n"
        call = self.find_call(call_sid)
        if call is None:
            log.info("AMD_CALLBACK call={call} answered_by={answered_by}: no such live call here; ignored",
                     call=call_sid, answered_by=answered_by)
            return b""
        log.info("AMD_CALLBACK call={call} answered_by={answered_by} duration_ms={duration}", call=call_sid,
                 answered_by=answered_by, duration=duration or "-")
        if not call.carrier_amd(answered_by):
            log.info("AMD_CALLBACK call={call}: the call has no answering-machine detection; ignored", call=call_sid)
        return b""

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        return b"POST only (Twilio's AsyncAmdStatusCallback)\n"
