"""``VOICED_AGENT=webhook``: the user's own application answers each turn.

For every caller turn (or event) voiced POSTs one JSON document to the webhook URL::

    {"call": {"sid": "CA...", "from": "+1...", "to": "+1...", "parameters": {...}, "language": "he-IL",
              "carrier": "twilio", "direction": "inbound" | "outbound", "variables": {...}, "dial_id": ""},
     "turn": 3, "text": "what the caller said", "event": null | {"dtmf": "5"} | {"idle": 1} | {"voicemail": true},
     "history": [{"role": "caller" | "bot", "text": "...", "interrupted": false}, ...]}

with ``Content-Type: application/json`` and, when a secret is configured,
``X-Voiced-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``. The application
answers (HTTP 2xx)::

    {"say": "text" | ["sentence", ...],
     "actions": [{"type": "end_call"} | {"type": "transfer_call", "to": "+1... | sip:..."}]}

Both keys are optional. The answer is checked whole before anything is spoken, so a
malformed one never leaves the caller with half a reply: any problem (HTTP status,
timeout, size, JSON, types) is an ``AgentError`` naming it, and the call plays its
apology. The history's bot entries hold only what the caller heard. ``{"voicemail": true}``:
an outbound call reached an answering machine after its beep; ``say`` is the message it
records, and the call hangs up once it has played.
"""

from __future__ import annotations

import json
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed, ResponseNeverReceived
from twisted.web.iweb import IResponse

from voiced import __version__
from voiced.agent.base import (Action, AgentError, CallInfo, Conversation, EndCall, ReplySink, TransferCall,
                               TurnRequest)
from voiced.httpbody import BodyTooLarge, read_body
from voiced.signing import SIGNATURE_HEADER, sign
from voiced.transfer import check_transfer_target

MAX_ANSWER_BYTES = 64 * 1024


def request_body(call: CallInfo, request: TurnRequest) -> bytes:
    """The exact bytes POSTed for ``request`` (and signed)."""
    document = {
        "call": call.as_json(),
        "turn": request.number,
        "text": request.text,
        "event": request.event.as_json() if request.event is not None else None,
        "history": [said.as_json() for said in request.history],
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_answer(body: bytes) -> tuple[str | list[str], list[Action]]:
    """The answer's ``say`` (a string or a list of sentences) and its actions, or an
    ``AgentError`` saying what is wrong with it."""
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise AgentError(f"webhook answer is not JSON: {e}") from None
    if not isinstance(answer, dict):
        raise AgentError(f"webhook answer must be a JSON object, got {type(answer).__name__}")
    say = answer.get("say")
    if say is None:
        say = ""
    elif isinstance(say, list):
        if not all(isinstance(sentence, str) for sentence in say):
            raise AgentError('webhook answer: "say" must be a string or a list of strings')
    elif not isinstance(say, str):
        raise AgentError('webhook answer: "say" must be a string or a list of strings')
    raw_actions = answer.get("actions")
    if raw_actions is None:
        raw_actions = []
    if not isinstance(raw_actions, list):
        raise AgentError('webhook answer: "actions" must be a list')
    return say, [_action(raw) for raw in raw_actions]


def _action(raw: Any) -> Action:
    if not isinstance(raw, dict):
        raise AgentError(f"webhook answer: an action must be an object, got {type(raw).__name__}")
    kind = raw.get("type")
    if kind == "end_call":
        return EndCall()
    if kind == "transfer_call":
        to = raw.get("to")
        if not isinstance(to, str) or not to:
            raise AgentError('webhook answer: transfer_call needs "to" (a +E.164 number or a sip: URI)')
        try:
            return TransferCall(check_transfer_target(to))
        except ValueError as e:
            raise AgentError(f"webhook answer: {e}") from None
    raise AgentError(f"webhook answer: unknown action type {kind!r} (expected end_call or transfer_call)")


def _cancelled_as_cancelled(failure: Failure) -> Failure:
    # Cancelling a request still waiting for its answer fails it with
    # ResponseNeverReceived([CancelledError]); addTimeout and retry only know CancelledError.
    if failure.check(ResponseNeverReceived) and any(r.check(CancelledError) for r in failure.value.reasons):
        return Failure(CancelledError())
    return failure


def _describe(failure: Failure) -> str:
    if failure.check(ResponseFailed):  # a list of Failures: name what went wrong in each
        reasons = ", ".join(f"{type(r.value).__name__}: {r.getErrorMessage()}".rstrip(": ")
                            for r in failure.value.reasons)
        return f"{type(failure.value).__name__} ({reasons})"
    return f"{type(failure.value).__name__}: {failure.getErrorMessage()}"


class WebhookAgent:
    """One per process: the HTTP client (the service's pool) and the webhook's settings."""

    name = "webhook"

    def __init__(self, http: HTTPClient, clock: IReactorTime, url: str, secret: str, timeout_s: float,
                 greeting: list[str]) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http:// or https://, got {url!r}")
        if timeout_s <= 0:
            raise ValueError("webhook timeout must be positive")
        self.http = http
        self.clock = clock
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.greeting = list(greeting)

    def __repr__(self) -> str:  # the secret stays out of any log that prints us
        return f"WebhookAgent(url={self.url!r}, timeout_s={self.timeout_s})"

    def start_conversation(self, call: CallInfo) -> Conversation:
        return WebhookConversation(self, call)

    def fixed_phrases(self) -> list[str]:
        return list(self.greeting)

    def headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": f"voiced/{__version__}"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        return headers


class WebhookConversation:
    """One per call. Stateless beyond the call's identity: each request carries the history."""

    def __init__(self, agent: WebhookAgent, call: CallInfo) -> None:
        self.agent = agent
        self.call = call

    def greeting(self) -> list[str]:
        return list(self.agent.greeting)

    def respond(self, request: TurnRequest, sink: ReplySink) -> Deferred[None]:
        """POST the turn, then speak the answer into ``sink``. Fails with ``AgentError``;
        cancelling it (barge-in, hang-up) closes the request's connection."""
        agent = self.agent
        body = request_body(self.call, request)
        # One coroutine for headers and body, so the timeout and a cancel cover both:
        # cancelling it cancels whichever of the two is pending, which closes the connection.
        exchange = Deferred.fromCoroutine(self._exchange(body))
        exchange.addTimeout(agent.timeout_s, agent.clock)
        exchange.addErrback(self._as_agent_error)
        return exchange.addCallback(self._speak, sink)

    async def _exchange(self, body: bytes) -> bytes:
        posted = self.agent.http.post(self.agent.url, data=body, headers=self.agent.headers(body),
                                      unbuffered=True, allow_redirects=False)
        response: IResponse = await posted.addErrback(_cancelled_as_cancelled)
        if not 200 <= response.code < 300:
            try:  # drained so the connection can be reused; what it says does not matter
                await read_body(response, MAX_ANSWER_BYTES)
            except CancelledError:
                raise
            except Exception:
                pass
            raise AgentError(f"webhook answered HTTP {response.code}")
        return await read_body(response, MAX_ANSWER_BYTES)

    def _as_agent_error(self, failure: Failure) -> Failure:
        if failure.check(AgentError, CancelledError):  # a cancel is the caller's, not a failure
            return failure
        if failure.check(defer.TimeoutError):
            raise AgentError(f"webhook did not answer within {self.agent.timeout_s:g} s")
        if failure.check(BodyTooLarge):
            raise AgentError(f"webhook answer is larger than {MAX_ANSWER_BYTES} bytes")
        raise AgentError(f"webhook request failed: {_describe(failure)}")

    @staticmethod
    def _speak(body: bytes, sink: ReplySink) -> None:
        say, actions = parse_answer(body)
        if isinstance(say, str):
            if say:
                sink.text(say)
        else:
            for sentence in say:
                if sentence.strip():
                    sink.sentence(sentence)
        for action in actions:
            sink.action(action)
