"""How the asyncio server's stream handler reads its requests: itself, with the audio timeout.

Scripted recognition never keeps the handler from its next request, so the handler
reads them itself (``DirectReader``): a reader task and a queue per stream would cost
a task switch per request, more than the recognition does. The stream ends with
OUT_OF_RANGE after ``audio_timeout_s`` without a request, from one lazily re-armed
timer per stream (not one per request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

import grpc

from voiced.emulator.common import Rejected

log = logging.getLogger("voiced.emulator")

#: What ``next`` returns after the last request: the client half-closed, or the RPC is over.
HALF_CLOSED = object()
CANCELLED = object()


def audio_timeout() -> Rejected:
    return Rejected(
        grpc.StatusCode.OUT_OF_RANGE,
        "Audio Timeout Error: Long duration elapsed without audio. Audio should be sent close to real time.",
    )


class DirectReader:
    """Requests read by the handler's own task, as it asks for them, and the audio timeout.

    The timeout is one timer per stream that re-arms itself lazily. When it expires
    during a read, it cancels the handler's task and the read turns that into the
    OUT_OF_RANGE; when it expires while the handler does something else, the next read
    raises at once (as the thread server's handler does before every request).
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
