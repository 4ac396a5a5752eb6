"""What the HTTP-streaming TTS vendors share (ElevenLabs, Cartesia, OpenAI-compatible servers):
one POST per sentence over the service's treq pool, the response body handed on chunk by chunk
as it arrives, 429/5xx/resets retried within a deadline, a 4xx refusal final.

A vendor module says only what differs: the request (``VendorRequest``) and how its bytes become
8 kHz mu-law (a per-request decoder: mu-law passes through, 24 kHz PCM is resampled with state).
The body is read with a protocol of our own rather than ``treq.collect``: cancelling a request
(a barge-in) must stop its connection at once, and ``collect``'s Deferred cannot be cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol as Protocol_

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectionLost, TimeoutError as ReactorTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss

from voiced.retry import Backoff, retry
from voiced.tts.base import TTSRefused

log = Logger(namespace="voiced.tts")

#: One quick retry, then another: a reply cannot wait for a long backoff, and a fallback chain
#: moves the sentence on after its first-audio timeout anyway.
RETRY = Backoff(0.1, 0.4, attempts=2)
#: The whole request, retries included; past it the sentence is given up (or moved on by a chain).
DEADLINE_S = 10.0
_ERROR_BODY_LIMIT = 300


@dataclass(frozen=True)
class VendorRequest:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


class Decoder(Protocol_):
    def __call__(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes:
        """What the decoder still holds once the body has ended."""


class Passthrough:
    """The vendor sends 8 kHz mu-law, as asked."""

    def __call__(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class TTSServerError(Exception):
    """A 429 or 5xx: the provider may answer the same request a moment later."""


class _BodyStream(Protocol):
    """Hands each piece of a response body to ``deliver``; ``done`` fires at its end."""

    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self._deliver = deliver
        self.done: Deferred[None] = Deferred(self._cancel)
        self._stopped = False

    def dataReceived(self, data: bytes) -> None:
        if self._stopped:
            return
        try:
            self._deliver(data)
        except Exception:
            # Bytes that are not the audio asked for: this response is useless, stop reading it.
            failure = Failure()
            self._cancel(self.done)
            self.done.errback(failure)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self._stopped:
            return
        self._stopped = True
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(reason)

    def _cancel(self, _: Deferred[None]) -> None:
        # Close the connection: the vendor stops synthesizing what nobody will hear.
        self._stopped = True
        if self.transport is not None:
            self.transport.stopProducing()


def is_retryable(failure: Failure) -> bool:
    return bool(failure.check(TTSServerError, ConnectError, ConnectionLost, ResponseFailed, ResponseNeverReceived,
                                ReactorTimeout))


class HTTPStreamingEngine:
    """Base of the HTTP vendors: ``StreamingTTSEngine`` over ``request_for`` and ``decoder``."""

    name = "http"

    def __init__(self, http: Any, clock: IReactorTime, policy: Backoff = RETRY, deadline_s: float = DEADLINE_S) -> None:
        self._http = http
        self._clock = clock
        self._policy = policy
        self._deadline_s = deadline_s

    # -- what a vendor says ------------------------------------------------------------------
    def request_for(self, text: str) -> VendorRequest:
        raise NotImplementedError

    def decoder(self) -> "Decoder":
        """A new decoder for one response: vendor bytes in, 8 kHz mu-law out."""
        return Passthrough()

    # -- the contract ------------------------------------------------------------------------
    def synthesize(self, text: str) -> Deferred[bytes]:
        chunks: list[bytes] = []
        return self.stream(text, chunks.append).addCallback(lambda _: b"".join(chunks))

    def stream(self, text: str, on_audio: Callable[[bytes], None], call_id: str = "-") -> Deferred[None]:
        if not text.strip():
            return Deferred.fromCoroutine(_nothing())
        request = self.request_for(text)
        delivered = [False]

        def attempt(n: int) -> Deferred[None]:
            decode = self.decoder()

            def emit(audio: bytes) -> None:
                if audio:
                    delivered[0] = True
                    on_audio(audio)

            return self._post(request, lambda data: emit(decode(data))).addCallback(lambda _: emit(decode.finish()))

        def retryable(failure: Failure) -> bool:
            # Audio already played cannot be taken back: a retry would repeat it.
            return not delivered[0] and is_retryable(failure)

        def on_retry(n: int, delay_s: float, failure: Failure) -> None:
            log.info("TTS_RETRY call={call} engine={engine} attempt={attempt} delay_ms={delay_ms} error={error}",
                     call=call_id, engine=self.name, attempt=n, delay_ms=round(delay_s * 1000),
                     error=failure.getErrorMessage() or failure.type.__name__)

        d = retry(self._clock, attempt, self._policy, retryable, on_retry)
        d.addTimeout(self._deadline_s, self._clock)
        d.addErrback(self._refused, call_id)
        return d

    # -- internals ---------------------------------------------------------------------------
    def _post(self, request: VendorRequest, deliver: Callable[[bytes], None]) -> Deferred[None]:
        posting = self._http.post(request.url, json=request.body, headers=request.headers)
        return posting.addCallback(self._read, deliver)

    def _read(self, response: Any, deliver: Callable[[bytes], None]) -> Deferred[None]:
        if response.code != 200:
            return Deferred.fromCoroutine(self._error(response))
        body = _BodyStream(deliver)
        response.deliverBody(body)
        return body.done

    async def _error(self, response: Any) -> None:
        try:
            text = (await response.content())[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")
        except Exception:
            text = ""
        detail = f"{self.name} answered HTTP {response.code}: {' '.join(text.split())}".rstrip(": ")
        if response.code == 429 or response.code >= 500:
            raise TTSServerError(detail)
        raise TTSRefused(detail)

    def _refused(self, failure: Failure, call_id: str) -> Failure:
        if failure.check(TTSRefused):
            # A wrong key or voice id fails every sentence alike: say so plainly, once per sentence.
            log.error("TTS_REFUSED call={call} engine={engine}: {error}", call=call_id, engine=self.name,
                      error=failure.getErrorMessage())
        elif failure.check(CancelledError):
            pass
        return failure


async def _nothing() -> None:
    return None
