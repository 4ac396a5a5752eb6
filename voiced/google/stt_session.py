"""One Google streaming_recognize RPC (``Session``).

``voiced.google.stt_stream`` decides when a stream is opened, replaced or given up on; this
module is the stream itself: a ``grpc.aio`` call on the speech event loop
(``voiced.google.aio_loop``), its requests (queued by the reactor, written by the
loop), its responses (handed back to the reactor), and a retire() that ends it at
once, even before the server has answered anything.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable

import grpc
from google.api_core import exceptions as gexc
from google.cloud import speech_v1
from google.cloud.speech_v1.services.speech.transports.base import DEFAULT_CLIENT_INFO

from voiced.audio import MULAW_8K, AudioFormat
from voiced.google.aio_loop import AioLoop
from voiced.google.channels import Lease

#: Replays go in bigger requests (Google takes up to 25 KB each: 16 KB of 16 kHz PCM).
REPLAY_REQUEST_MS = 500
#: A stream that went on answering this long after its first response proved the service
#: works (longer than any replay takes to fail): its failure starts a fresh retry budget.
HEALTHY_STREAM_S = 5.0
#: What the client library's wrapper would send with each call (telemetry only).
_CLIENT_METADATA = (DEFAULT_CLIENT_INFO.to_grpc_metadata(),)

Deliver = Callable[["Session", speech_v1.StreamingRecognizeResponse], None]


class Session:
    """One streaming_recognize call.

    Plain fields belong to the reactor thread; ``_call``, ``_wake`` and ``lease`` to the
    loop's. The two share ``_audio`` (a deque: append on one side, popleft on the other,
    each atomic) and the ``_retired`` flag (set once, by the reactor).
    """

    def __init__(self, loop: AioLoop, base: int, opened_at: float, audio: AudioFormat = MULAW_8K) -> None:
        self._loop = loop
        self._bytes_per_s = audio.bytes_per_ms() * 1000  # audio time of the byte offsets below
        self._request_bytes = audio.bytes_per_ms() * REPLAY_REQUEST_MS
        self.base = base  # absolute offset of this stream's first audio byte
        self.sent_upto = base
        self.replayed_upto = base  # where the replay it opened with ends
        self.opened_at = opened_at
        self.responded = False
        self.finals = 0
        self._first_response: tuple[float, int] | None = None  # (clock time, sent_upto) of the first answer
        self._audio: deque[bytes] = deque()
        self._retired = False
        self.lease: Lease[Any] | None = None
        self._call: Any = None  # the grpc.aio call, once started: what retire() cancels
        self._wake: asyncio.Event | None = None  # the writer waits on it for more audio

    # -- the reactor's side ---------------------------------------------------------------------

    def send(self, audio: bytes) -> None:
        if not audio:
            return
        step = self._request_bytes
        for i in range(0, len(audio), step):
            self._audio.append(audio[i : i + step])
        self._loop.call_soon(self._audio_queued)

    def retire(self) -> None:
        """End the stream now: nothing it answers from here on is used."""
        if not self._retired:
            self._retired = True
            self._loop.call_soon(self._cancel)

    @property
    def retired(self) -> bool:
        return self._retired

    def answered(self, now: float) -> None:
        self.responded = True
        if self._first_response is None:
            self._first_response = (now, self.sent_upto)

    def age(self, now: float) -> float:
        """Wall or audio time since the stream opened, whichever is more (as for rollover)."""
        return max(now - self.opened_at, (self.sent_upto - self.base) / self._bytes_per_s)

    def fresh_age(self, now: float) -> float:
        """Like age(), without the replay: how long it has carried the call's new audio."""
        return max(now - self.opened_at, (self.sent_upto - self.replayed_upto) / self._bytes_per_s)

    def healthy(self, now: float) -> bool:
        """Real progress: a final, or answers for HEALTHY_STREAM_S (wall or audio time,
        as for rollover: a test sends audio faster than real time)."""
        if self.finals:
            return True
        if self._first_response is None:
            return False
        at, upto = self._first_response
        return max(now - at, (self.sent_upto - upto) / self._bytes_per_s) >= HEALTHY_STREAM_S

    # -- the loop's side --------------------------------------------------------------------------

    async def run(
        self, acquire: Callable[[], Lease[Any]], config: speech_v1.StreamingRecognitionConfig, timeout: float,
        deliver: Deliver,
    ) -> None:
        """The whole life of the stream. Raises what the stream ended with (unless retired)."""
        if self._retired:
            return  # closed before the loop got to it: never open it
        # Leased here, on the loop: a channel the pool grows is a grpc.aio channel of this loop.
        self.lease = lease = acquire()
        try:
            # The transport's stub, not SpeechAsyncClient.streaming_recognize: that wrapper
            # waits for the first response before there is a call to cancel.
            call = lease.client.transport.streaming_recognize(timeout=timeout, metadata=_CLIENT_METADATA)
            self._call = call
            first_status: list[tuple[grpc.StatusCode, str] | None] = []
            call.add_done_callback(lambda c: first_status.append(_status_now(c)))
            self._wake = asyncio.Event()
            writer = asyncio.ensure_future(self._write(call, config))
            try:
                async for response in call:
                    if self._retired:
                        return
                    deliver(self, response)
            except grpc.RpcError as e:
                if not self._retired:
                    code, details = await _server_status(call, e, first_status[0] if first_status else None)
                    raise gexc.from_grpc_status(code, details) from e
            except asyncio.CancelledError:
                if not self._retired:
                    raise
            finally:
                writer.cancel()
        finally:
            lease.release()

    async def _write(self, call: Any, config: speech_v1.StreamingRecognitionConfig) -> None:
        assert self._wake is not None
        try:
            await call.write(speech_v1.StreamingRecognizeRequest(streaming_config=config))
            while not self._retired:
                while self._audio:
                    await call.write(speech_v1.StreamingRecognizeRequest(audio_content=self._audio.popleft()))
                self._wake.clear()
                if not self._audio and not self._retired:
                    await self._wake.wait()
        except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            pass  # the call ended: its reader reports how

    def _audio_queued(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._wake is not None:
            self._wake.set()


def _status_now(call: Any) -> tuple[grpc.StatusCode, str] | None:
    """The status of a call that has just ended, read synchronously (in its done callback
    its ``code()`` and ``details()`` coroutines complete without suspending); else None."""

    def result(coroutine: Any) -> Any:
        try:
            coroutine.send(None)
        except StopIteration as done:
            return done.value
        except Exception:  # noqa: BLE001 - a callback inside gRPC must never raise
            return None
        coroutine.close()
        return None

    code, details = result(call.code()), result(call.details())
    return None if code is None else (code, details or "")


#: What grpc.aio reports when a write fails because the server has just ended the call.
_WRITE_RACE_DETAILS = "Internal error from Core"


async def _server_status(
    call: Any, error: grpc.RpcError, first: tuple[grpc.StatusCode, str] | None
) -> tuple[grpc.StatusCode, str]:
    """How the server ended the call. A write in flight as the server ends it makes
    grpc.aio overwrite the server's status with INTERNAL (grpc/grpc#36066): the first
    status the call had (its done callback's) is the server's; if even that was the
    write's, the server's may still come, so wait a little for it."""
    code, details = first or (error.code(), error.details())
    for _ in range(20):
        if not (code == grpc.StatusCode.INTERNAL and details == _WRITE_RACE_DETAILS):
            break
        await asyncio.sleep(0.005)
        code, details = await call.code(), await call.details()
    return code, details or ""
