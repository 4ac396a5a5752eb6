"""The scripted mode's server on grpc.aio: every stream a coroutine on one asyncio loop.

Why asyncio: the load benchmark puts hundreds of real-time streams on the machine
that runs the daemon under test. The sync server (voiced.emulator.thread_server)
costs a handler thread and a request-reader thread per stream, all taking turns at
the GIL, which spends the cores the daemon is measured on and delays finals. Here a
stream is one coroutine on the loop of ``EventLoopThread``, which reads its own
requests (voiced.emulator.direct_reader) and recognizes them on the loop: scripted
recognition (energy per 20 ms frame) costs microseconds and never blocks. The
process keeps a handful of threads whatever the number of streams.

Recognition by a model blocks, so the modes with one stay on the thread server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, NoReturn, TypeVar

import grpc
from google.cloud.speech_v1.types import StreamingRecognitionConfig, StreamingRecognizeRequest, StreamingRecognizeResponse

from voiced.emulator.common import EmulatorStats, Rejected, invalid
from voiced.emulator.faults import Fault, FaultPlan
from voiced.emulator.scripted import EnergySession, ScriptedPlan
from voiced.emulator.direct_reader import CANCELLED, HALF_CLOSED, DirectReader
from voiced.emulator.streaming import (
    REQUEST_PB,
    SPEECH_SERVICE,
    AudioDecoder,
    BehindWatch,
    check_recognition_config,
    response,
    which,
)

if TYPE_CHECKING:
    from voiced.emulator.server import Emulator

log = logging.getLogger("voiced.emulator")

T = TypeVar("T")

_CANCEL_SETTLE_S = 0.02


class EventLoopThread:
    """One asyncio loop in a daemon thread, shared by the process's running emulators.

    Shared because grpc.aio binds every live loop of a process to its one completion
    queue and then wakes all of them on each event (grpc/grpc#25364: spurious
    BlockingIOError logs); a test with two emulators keeps one loop. The last
    ``release`` stops the loop and joins its thread, so a process exits cleanly.
    """

    _lock = threading.Lock()
    _shared: EventLoopThread | None = None
    _users = 0

    @classmethod
    def acquire(cls) -> EventLoopThread:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            cls._users += 1
            return cls._shared

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users or cls._shared is None:
                return
            shared, cls._shared = cls._shared, None
        shared._close()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="emulator-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Awaitable[T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop from another thread; its result or its exception."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            # Stopped: whatever is left (asyncio generators, callbacks of ended calls) ends with the loop.
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def _close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class _Stream:
    """One StreamingRecognize call: its number, fate, responses, and the log line it ends with."""

    def __init__(
        self, stats: EmulatorStats, number: int, fault: Fault | None, plan: FaultPlan, context: grpc.aio.ServicerContext
    ) -> None:
        self.stats = stats
        self.number = number
        self.fault = fault
        self.plan = plan
        self.context = context
        self.sent = 0
        self.audio_s = 0.0
        self.ended = False

    async def send(self, message: StreamingRecognizeResponse) -> None:
        """Send one response after the latency (or fail instead, when its fault is due)."""
        await self.sleep_latency()
        if self.fault is not None and self.sent >= self.fault.after_responses:
            await self.fail(self.fault.status, self.fault.message)
        self.sent += 1
        self.stats.add(responses_sent=1)
        await self.context.write(message)

    async def sleep_latency(self) -> None:
        if self.plan.latency_ms:
            await asyncio.sleep(self.plan.latency_ms / 1000)  # the emulated latency, other streams go on

    async def fail(self, status: grpc.StatusCode, message: str) -> NoReturn:
        self._end("streams_failed", f"failed {status.name}: {message}")
        await self.context.abort(status, message)
        raise AssertionError("context.abort returned")  # it always raises

    async def complete(self) -> None:
        if self.fault is not None:
            # Chosen to fail, but fewer responses were due than after_responses: fail at the end.
            await self.fail(self.fault.status, self.fault.message)
        self._end("streams_completed", "completed")

    def cancelled(self) -> None:
        self._end("streams_cancelled", "cancelled by the client")

    def _end(self, counter: str, what: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.stats.add(**{counter: 1, "active_streams": -1})
        log.info("stream %d %s (%d responses, %.1f s of audio)", self.number, what, self.sent, self.audio_s)


class Speech:
    """google.cloud.speech.v1.Speech: StreamingRecognize only, scripted, on the emulator's loop."""

    def __init__(self, emulator: Emulator, plan: ScriptedPlan) -> None:
        self._emulator = emulator
        self._plan = plan

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SPEECH_SERVICE,
            {
                # A coroutine (not an async generator): it writes with context.write, so a cancel
                # is one CancelledError here and no generator is left for the loop to finalize.
                "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                    self.streaming_recognize,
                    request_deserializer=REQUEST_PB.FromString,
                    response_serializer=StreamingRecognizeResponse.serialize,
                )
            },
        )

    async def streaming_recognize(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        schedule = self._emulator.fault_schedule()
        number, fault = schedule.next_stream()
        stats = self._emulator.stats
        stats.add(streams_started=1, active_streams=1)
        log.info("stream %d started%s", number, f" (will fail {fault.status.name})" if fault else "")
        stream = _Stream(stats, number, fault, schedule.plan, context)
        # Whatever ends the RPC without this handler saying how (a cancel after its last
        # await, the server stopping) counts as cancelled; a no-op once the stream has ended.
        context.add_done_callback(lambda _context: stream.cancelled())
        reader = DirectReader(context.read, schedule.plan.audio_timeout_s)
        try:
            await self._serve(stream, requests, reader)
        except Rejected as e:
            await stream.fail(e.status, e.message)
        except asyncio.CancelledError:
            stream.cancelled()  # grpc.aio cancels the handler on the client's cancel or deadline
            raise
        except Exception as e:
            if stream.ended:
                raise  # context.abort's own exception, on its way to gRPC
            log.exception("stream %d crashed", number)
            await stream.fail(grpc.StatusCode.INTERNAL, f"Internal error encountered. [voiced-emulator: {e!r}]")
        finally:
            reader.close()

    async def _serve(self, stream: _Stream, requests: AsyncIterator[Any], reader: DirectReader) -> None:
        plan = stream.plan
        if stream.fault is not None and stream.fault.after_responses == 0:
            await stream.sleep_latency()
            await stream.fail(stream.fault.status, stream.fault.message)
        if plan.hang:
            await _hang(requests)
        reader.start()
        first = await reader.next()
        if await _ended_by_client(first):
            stream.cancelled()
            return
        if first is HALF_CLOSED or which(first) != "streaming_config":
            raise invalid(
                "Malordered Data Received. Send exactly one config, followed by audio data: "
                "the first request must contain streaming_config."
            )
        # proto-plus for the config, once: check_recognition_config reads its enums by name.
        streaming: StreamingRecognitionConfig = StreamingRecognizeRequest.wrap(first).streaming_config
        fmt = check_recognition_config(streaming.config)
        language = streaming.config.language_code
        decoder = AudioDecoder(fmt)
        session = EnergySession(self._plan, streaming.interim_results, streaming.single_utterance, language)
        behind = BehindWatch(stream.number, stream.stats)
        while not session.done:
            request = await reader.next()
            behind.note(time.monotonic() - reader.last_arrival)
            if request is CANCELLED or request is HALF_CLOSED and await _ended_by_client(request):
                stream.cancelled()
                return
            if request is HALF_CLOSED:
                outputs = session.finish()
            else:
                if which(request) == "streaming_config":
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
                await stream.send(response(output, language))
            if request is HALF_CLOSED:
                break
        await stream.complete()


async def _hang(requests: AsyncIterator[Any]) -> NoReturn:
    """A wedged server: take the audio, answer nothing, until the client gives up (a CancelledError)."""
    try:
        async for _request in requests:
            pass
    except (grpc.RpcError, grpc.aio.BaseError):
        pass  # the RPC is over; the cancel follows
    await asyncio.get_running_loop().create_future()
    raise AssertionError("a future nobody resolves resolved")


async def _ended_by_client(item: Any) -> bool:
    if item is CANCELLED:
        return True
    if item is HALF_CLOSED:
        # gRPC ends the requests alike for a half-close and a cancel whose news lands a
        # moment later; the cancel then arrives as a CancelledError during this sleep.
        # After a real half-close the RPC stays up until we answer.
        await asyncio.sleep(_CANCEL_SETTLE_S)
    return False
