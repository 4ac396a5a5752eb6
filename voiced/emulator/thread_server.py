"""StreamingRecognize with a model (Whisper, or a test's Recognizer), on a sync gRPC server.

Recognition by a model blocks for as long as it transcribes, so each stream gets a
handler thread of the server's pool, which recognizes its requests in order, and a
reader thread (``_pump``) that puts them in an inbox as they arrive, so the audio
timeout and ``BehindWatch`` count wall time even while a transcription is busy.
A model serves a few calls at a time, where two threads per stream cost nothing
that matters. The scripted mode, for hundreds of streams, is served by
voiced.emulator.aio_server instead. This module is the emulator's server as it was
before that one was written: the tests that drive models (and their timing on a
loaded machine) see the same server.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator, NoReturn

import grpc
from google.cloud.speech_v1.types import (
    StreamingRecognitionConfig,
    StreamingRecognizeRequest,
    StreamingRecognizeResponse,
)

from voiced.emulator.common import EmulatorStats, Rejected, invalid
from voiced.emulator.faults import Fault, FaultPlan
from voiced.emulator.recognizer import RecognitionSession, serves_language, unsupported_language_message
from voiced.emulator.scripted import EnergySession
from voiced.emulator.streaming import SPEECH_SERVICE, AudioDecoder, BehindWatch, check_recognition_config, response

if TYPE_CHECKING:
    from voiced.emulator.server import Emulator

log = logging.getLogger("voiced.emulator")


def _which(request: StreamingRecognizeRequest) -> str | None:
    return StreamingRecognizeRequest.pb(request).WhichOneof("streaming_request")


_HALF_CLOSED = object()
_CANCELLED = object()
_CANCEL_SETTLE_S = 0.02


def _pump(requests: Iterator[StreamingRecognizeRequest], inbox: queue.SimpleQueue) -> None:
    """Reader thread: requests -> (arrival time, request) in the inbox, then an end marker."""
    end = _HALF_CLOSED
    try:
        for request in requests:
            inbox.put((time.monotonic(), request))
    except grpc.RpcError:
        end = _CANCELLED
    except Exception:  # noqa: BLE001 - e.g. a request that failed to deserialize
        log.exception("reading requests failed")
        end = _CANCELLED
    inbox.put((time.monotonic(), end))


class _Stream:
    """One StreamingRecognize call: its number, fate, responses, and the log line it ends with."""

    def __init__(self, stats: EmulatorStats, number: int, fault: Fault | None, plan: FaultPlan, context: Any) -> None:
        self.stats = stats
        self.number = number
        self.fault = fault
        self.plan = plan
        self.context = context
        self.sent = 0
        self.audio_s = 0.0
        self.ended = False

    def send(self, response: StreamingRecognizeResponse) -> StreamingRecognizeResponse:
        """Account for one response about to go out (after the latency; or fail instead)."""
        self.sleep_latency()
        if self.fault is not None and self.sent >= self.fault.after_responses:
            self.fail(self.fault.status, self.fault.message)
        self.sent += 1
        self.stats.add(responses_sent=1)
        return response

    def sleep_latency(self) -> None:
        # A worker thread of this separate server process: sleeping is the latency being emulated.
        if self.plan.latency_ms:
            time.sleep(self.plan.latency_ms / 1000)

    def fail(self, status: grpc.StatusCode, message: str) -> NoReturn:
        self._end("streams_failed", f"failed {status.name}: {message}")
        self.context.abort(status, message)
        raise AssertionError("context.abort returned")  # it always raises

    def complete(self) -> None:
        if self.fault is not None:
            # Chosen to fail, but fewer responses were due than after_responses: fail at the end.
            self.fail(self.fault.status, self.fault.message)
        self._end("streams_completed", "completed")

    def cancelled(self) -> None:
        self._end("streams_cancelled", "cancelled by the client")

    def _end(self, counter: str, what: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.stats.add(**{counter: 1, "active_streams": -1})
        log.info("stream %d %s (%d responses, %.1f s of audio)", self.number, what, self.sent, self.audio_s)


class ThreadSpeech:
    """google.cloud.speech.v1.Speech: StreamingRecognize only, a thread per stream (and its reader)."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SPEECH_SERVICE,
            {
                "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                    self.streaming_recognize,
                    request_deserializer=StreamingRecognizeRequest.deserialize,
                    response_serializer=StreamingRecognizeResponse.serialize,
                )
            },
        )

    def streaming_recognize(
        self, requests: Iterator[StreamingRecognizeRequest], context: grpc.ServicerContext
    ) -> Iterator[StreamingRecognizeResponse]:
        schedule = self._emulator.fault_schedule()
        number, fault = schedule.next_stream()
        stats = self._emulator.stats
        stats.add(streams_started=1, active_streams=1)
        log.info("stream %d started%s", number, f" (will fail {fault.status.name})" if fault else "")
        stream = _Stream(stats, number, fault, schedule.plan, context)
        try:
            yield from self._serve(stream, requests, context)
        except Rejected as e:
            stream.fail(e.status, e.message)
        except Exception as e:
            if stream.ended:
                raise  # context.abort's own exception, on its way to gRPC
            # A recognizer crash is what Google calls an internal error.
            log.exception("stream %d crashed", number)
            stream.fail(grpc.StatusCode.INTERNAL, f"Internal error encountered. [voiced-emulator: {e!r}]")
        except GeneratorExit:
            stream.cancelled()  # gRPC closed the response generator: the RPC is over
            raise
        finally:
            if not stream.ended and not context.is_active():
                stream.cancelled()

    def _serve(
        self, stream: _Stream, requests: Iterator[StreamingRecognizeRequest], context: grpc.ServicerContext
    ) -> Iterator[StreamingRecognizeResponse]:
        plan = stream.plan
        if stream.fault is not None and stream.fault.after_responses == 0:
            stream.sleep_latency()
            stream.fail(stream.fault.status, stream.fault.message)
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(
            target=_pump, args=(requests, inbox), name=f"emulator-stream-{stream.number}", daemon=True
        ).start()
        last_arrival = time.monotonic()
        terminated = threading.Event()
        if not context.add_callback(terminated.set):
            terminated.set()
        if plan.hang:
            terminated.wait()  # audio goes into the inbox, nothing comes out, until the client gives up
            stream.cancelled()
            return

        def ended_by_client(item: Any) -> bool:
            if item is _CANCELLED:
                return True
            # gRPC ends the request iterator alike for a half-close and a cancel whose flag lands
            # a moment later; after a real half-close the RPC stays up until we answer.
            return item is _HALF_CLOSED and terminated.wait(_CANCEL_SETTLE_S)

        def next_request() -> Any:
            nonlocal last_arrival
            while True:
                wait = last_arrival + plan.audio_timeout_s - time.monotonic()
                if wait <= 0:
                    raise Rejected(
                        grpc.StatusCode.OUT_OF_RANGE,
                        "Audio Timeout Error: Long duration elapsed without audio. "
                        "Audio should be sent close to real time.",
                    )
                try:
                    last_arrival, item = inbox.get(timeout=wait)
                    return item
                except queue.Empty:
                    continue

        first = next_request()
        if ended_by_client(first):
            stream.cancelled()
            return
        if first is _HALF_CLOSED or _which(first) != "streaming_config":
            raise invalid(
                "Malordered Data Received. Send exactly one config, followed by audio data: "
                "the first request must contain streaming_config."
            )
        streaming: StreamingRecognitionConfig = first.streaming_config
        fmt = check_recognition_config(streaming.config)
        language = streaming.config.language_code
        decoder = AudioDecoder(fmt)
        scripted = self._emulator.scripted
        session: RecognitionSession | EnergySession
        if scripted is not None:
            session = EnergySession(scripted, streaming.interim_results, streaming.single_utterance, language)
        else:
            if not serves_language(self._emulator.recognizer, language):
                raise invalid(unsupported_language_message(language))
            session = RecognitionSession(
                self._emulator.recognizer,
                language,
                interim_results=streaming.interim_results,
                single_utterance=streaming.single_utterance,
                voice_activity_events=streaming.enable_voice_activity_events,
            )
        behind = BehindWatch(stream.number, stream.stats)
        while not session.done:
            request = next_request()
            behind.note(time.monotonic() - last_arrival)
            if ended_by_client(request):
                stream.cancelled()
                return
            if request is _HALF_CLOSED:
                outputs = session.finish()
            else:
                if _which(request) == "streaming_config":
                    raise invalid("Malordered Data Received. Send exactly one config, followed by audio data.")
                pcm = decoder.decode(request.audio_content)
                stream.audio_s = decoder.seconds
                if stream.audio_s > plan.max_stream_s:
                    raise Rejected(
                        grpc.StatusCode.OUT_OF_RANGE,
                        f"Exceeded maximum allowed stream duration of {plan.max_stream_s:g} seconds.",
                    )
                outputs = session.feed(pcm)
            for output in outputs:
                yield stream.send(response(output, language))
            if request is _HALF_CLOSED:
                break
        stream.complete()


