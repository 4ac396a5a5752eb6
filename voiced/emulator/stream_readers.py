"""How a stream's handler takes its requests: from an inbox filled by a reader task, or directly.

With a model, a reader task puts requests in an inbox as they arrive (``Inbox``),
so arrival times (the audio timeout, ``BehindWatch``) stay wall time and the client
never blocks while recognition of earlier audio is busy. In the scripted mode the
handler reads them itself (``DirectReader``): its recognition never keeps it from
the next request, and a task switch and a queue per request would cost more than
the recognition does. Both end the stream with OUT_OF_RANGE after
``audio_timeout_s`` without a request, with one lazily re-armed timer per stream
(not one per request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

import grpc

from voiced.emulator.common import Rejected

log = logging.getLogger("voiced.emulator")

#: What ``next`` returns after the last request: the client half-closed, or the RPC is over.
HALF_CLOSED = object()
CANCELLED = object()
_TIMED_OUT = object()  # Inbox: the timer's wake-up call


def audio_timeout() -> Rejected:
    return Rejected(
        grpc.StatusCode.OUT_OF_RANGE,
        "Audio Timeout Error: Long duration elapsed without audio. Audio should be sent close to real time.",
    )


class Reader(Protocol):
    """Where a stream's handler takes its requests from."""

    #: When the request ``next`` returned last arrived (monotonic).
    last_arrival: float

    def start(self) -> None: ...

    async def next(self) -> Any:
        """The next raw request, ``HALF_CLOSED`` or ``CANCELLED``; raises Rejected (OUT_OF_RANGE)
        once ``audio_timeout_s`` passed without a request."""

    def close(self) -> None: ...


class Inbox:
    """One stream's requests as they arrive, with their arrival times, and the audio timeout.

    A reader task puts (arrival, request) in; after the last request comes a half-close
    or a cancel marker. No request for ``timeout_s`` puts a timeout marker in, from one
    timer per stream that re-arms itself lazily (not one per request).
    """

    def __init__(self, requests: AsyncIterator[Any], timeout_s: float) -> None:
        self._requests = requests
        self._timeout_s = timeout_s
        self._queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self._latest = self.last_arrival = time.monotonic()  # latest put in / latest taken out
        self._reader: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._pump())
        self._timer = loop.call_at(self._latest + self._timeout_s, self._check)  # loop.time() is monotonic

    async def next(self) -> Any:
        """The next request (or marker); raises Rejected once ``timeout_s`` passed without a request."""
        while True:
            if self.last_arrival + self._timeout_s - time.monotonic() <= 0:
                raise audio_timeout()
            arrival, item = await self._queue.get()
            if item is not _TIMED_OUT:  # the timeout marker only wakes us to check
                self.last_arrival = arrival
                return item

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()  # the stream is over: its remaining requests go unread

    async def _pump(self) -> None:
        end = HALF_CLOSED
        try:
            async for request in self._requests:
                self._latest = time.monotonic()
                self._queue.put_nowait((self._latest, request))
        except (grpc.RpcError, grpc.aio.BaseError):
            # The RPC is over: cancelled, or ended by this side (an abort's status is out
            # before the handler's finally can stop this reader).
            end = CANCELLED
        except Exception:  # noqa: BLE001 - e.g. a request that failed to deserialize
            log.exception("reading requests failed")
            end = CANCELLED
        self._queue.put_nowait((time.monotonic(), end))

    def _check(self) -> None:
        deadline = self._latest + self._timeout_s
        now = time.monotonic()
        if now < deadline:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._check)
        else:
            self._timer = None
            self._queue.put_nowait((now, _TIMED_OUT))


class DirectReader:
    """Requests read by the handler's own task, as it asks for them, and the audio timeout.

    The timeout is one timer per stream that re-arms itself lazily. When it expires
    during a read, it cancels the handler's task and the read turns that into the
    OUT_OF_RANGE; when it expires while the handler does something else, the next read
    raises at once (as ``Inbox`` does).
    """

    def __init__(self, read: Callable[[], Awaitable[Any]], timeout_s: float) -> None:
        # context.read, not the request iterator: one async generator step less per request.
        self._read = read
        self._timeout_s = timeout_s
        self.last_arrival = time.monotonic()
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reading = False
        self._timed_out = False

    def start(self) -> None:
        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().call_at(self.last_arrival + self._timeout_s, self._check)

    async def next(self) -> Any:
        if self.last_arrival + self._timeout_s - time.monotonic() <= 0:
            raise audio_timeout()
        self._reading = True
        try:
            request = await self._read()
        except asyncio.CancelledError:
            if not self._timed_out:
                raise  # the client's cancel or deadline
            assert self._task is not None
            self._task.uncancel()  # the cancel was this reader's own
            raise audio_timeout() from None
        except (grpc.RpcError, grpc.aio.BaseError):
            return CANCELLED  # the RPC is over
        except Exception:  # noqa: BLE001 - e.g. a request that failed to deserialize
            log.exception("reading requests failed")
            return CANCELLED
        finally:
            self._reading = False
        if request is grpc.aio.EOF:
            return HALF_CLOSED
        self.last_arrival = time.monotonic()
        return request

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _check(self) -> None:
        deadline = self.last_arrival + self._timeout_s
        if time.monotonic() < deadline:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._check)
            return
        self._timer = None
        if self._reading and self._task is not None:
            self._timed_out = True
            self._task.cancel()
