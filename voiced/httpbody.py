"""Reading an HTTP response body as it arrives, in a way that can be cancelled.

``treq.collect(response, on_chunk)`` streams a body, but the Deferred it returns
has no canceller: cancelling it leaves the connection open and still reading (a
barge-in would let the LLM go on generating, a timed-out tool would hold its
connection). ``stream_body`` is the same idea with a canceller that drops the
connection. ``cancellable`` makes a cancelled request *look* cancelled: twisted.web's
client reports one as ``DNSLookupError`` or ``ResponseNeverReceived``, which the code
awaiting it would take for a real failure (and, say, answer the model with a tool
error while the caller has hung up). ``read_body`` collects a body up to a size limit, for error answers and
tool results, so a misbehaving server cannot make voiced buffer without end.

Shared by everything voiced sends over HTTP (the agents, the carriers' REST calls, the
journal's outbox), so it belongs to none of them.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse


T = TypeVar("T")


class BodyTooLarge(Exception):
    pass


def cancellable(d: Deferred[T]) -> Deferred[T]:
    """``d``'s result; cancelling it cancels ``d`` and always fails with ``CancelledError``."""
    cancelled = False

    def cancel(_: Deferred[T]) -> None:
        nonlocal cancelled
        cancelled = True
        d.cancel()  # whatever d fails with now is swallowed below

    wrapper: Deferred[T] = Deferred(cancel)

    def forward(result: Any) -> None:
        if cancelled:
            return None
        if isinstance(result, Failure):
            wrapper.errback(result)
        else:
            wrapper.callback(result)
        return None

    d.addBoth(forward)
    return wrapper


class _Streamer(Protocol):
    def __init__(self, on_chunk: Callable[[bytes], None]) -> None:
        self._on_chunk = on_chunk
        self.finished: Deferred[None] = Deferred(self._cancel)
        self._done = False

    def _cancel(self, _: Deferred[None]) -> None:
        self._done = True
        self._drop()

    def _drop(self) -> None:
        if self.transport is not None:
            # Closes the TCP (or TLS) connection under the response, as treq.collect
            # does on a collector error; the pool never reuses it.
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        try:
            self._on_chunk(data)
        except BaseException:
            self._done = True
            failure = Failure()
            self._drop()
            self.finished.errback(failure)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done:
            return
        self._done = True
        if reason.check(ResponseDone, PotentialDataLoss):
            # PotentialDataLoss: a body delimited by the connection closing (no
            # length, not chunked); whether it was complete is for the caller to say.
            self.finished.callback(None)
        else:
            self.finished.errback(reason)


def stream_body(response: IResponse, on_chunk: Callable[[bytes], None]) -> Deferred[None]:
    """Call ``on_chunk`` with each piece of the body as it arrives; fire at its end.

    An exception from ``on_chunk`` drops the connection and fails the Deferred with
    it; cancelling the Deferred drops the connection.
    """
    if response.length == 0:
        return succeed(None)
    streamer = _Streamer(on_chunk)
    response.deliverBody(streamer)
    return streamer.finished


def read_body(response: IResponse, limit: int) -> Deferred[bytes]:
    """The whole body; fails with ``BodyTooLarge`` (connection dropped) past ``limit``."""
    pieces: list[bytes] = []
    size = 0

    def collect(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > limit:
            raise BodyTooLarge(f"the response body is larger than {limit} bytes")
        pieces.append(data)

    return stream_body(response, collect).addCallback(lambda _: b"".join(pieces))


def read_body_prefix(response: IResponse, limit: int) -> Deferred[bytes]:
    """At most the first ``limit`` bytes of the body (the rest is dropped with the
    connection): enough for an error message."""
    pieces: list[bytes] = []

    def keep(result: object) -> bytes:
        if isinstance(result, Failure):
            result.trap(BodyTooLarge)
        return b"".join(pieces)[:limit]

    def collect(data: bytes) -> None:
        pieces.append(data)
        if sum(map(len, pieces)) > limit:
            raise BodyTooLarge()

    return stream_body(response, collect).addBoth(keep)
