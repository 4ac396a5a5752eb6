"""The per-call event stream: Server-Sent Events fed by the CallHub.

``CallEventStreams`` subscribes to the service's ``CallHub`` and receives exactly the
events that write the ``CALLER``, ``BOT`` and ``TURN`` lines. Each event is encoded
once and handed to the clients watching that call (or every call). A call never
waits for a viewer: writing is a non-blocking append to the client's transport, and
a client whose transport stops draining (the HTTP channel paused us as a producer)
gets a bounded backlog; past the bound it is disconnected (an ``EventSource``
reconnects by itself and starts again from a fresh snapshot).

Wire format (one SSE event each)::

    event: snapshot   data: {"call": sid, "record": CallRecord.as_json() | null, "live": bool,
                             "language": BCP-47 tag of the call's words, "" if unknown}
    event: caller     data: {"call": sid, "turn": n, "text": ..., "event": ...}
    event: reply      data: {"call": sid, "turn": n|null, "text": ...}   (all of a reply's audio is sent)
    event: bot        data: {"call": sid, "turn": n|null, "text", "heard", "interrupted"}
    event: turn       data: {"call": sid, "turn": n, "metrics": {...}}
    event: end        data: {"call": sid, "record": CallRecord.as_json()}
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Callable, Protocol

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from voiced.call.record import CallHub, CallRecord

log = Logger(namespace="voiced.console")

MAX_CLIENTS = 64  # event streams open at once, over all viewers
MAX_BACKLOG_BYTES = 256 * 1024  # per client, while its transport is not draining
HEARTBEAT_S = 15.0  # an SSE comment keeps proxies from closing an idle stream
RETRY_MS = 2000  # how soon a disconnected EventSource comes back


def encode_event(kind: str, data: dict[str, Any]) -> bytes:
    # JSON has no raw newlines, so one data: line is always enough.
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class StreamRequest(Protocol):
    """What a client needs of its twisted.web request (a test passes a fake)."""

    def write(self, data: bytes) -> None: ...
    def registerProducer(self, producer: Any, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def notifyFinish(self) -> Any: ...
    def finish(self) -> None: ...


class EventClient:
    """One open stream. A push producer for its request, so the HTTP channel tells us
    when the peer stops reading instead of buffering without limit."""

    def __init__(self, request: StreamRequest, call_sid: str | None, on_gone: Callable[["EventClient"], None],
                 max_backlog: int = MAX_BACKLOG_BYTES, abort: Callable[[], None] | None = None) -> None:
        self.request = request
        self.call_sid = call_sid  # None: every call
        self.max_backlog = max_backlog
        self.dropped = False  # disconnected for not keeping up
        self._on_gone = on_gone
        self._abort = abort or request.finish
        self._paused = False
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self._open = True
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(self._finished)

    def send(self, chunk: bytes) -> None:
        if not self._open:
            return
        if not self._paused:
            self.request.write(chunk)
            return
        self._backlog.append(chunk)
        self._backlog_bytes += len(chunk)
        if self._backlog_bytes > self.max_backlog:
            log.info("CONSOLE_STREAM_DROPPED call={call}: the viewer is not reading ({n} bytes behind)",
                     call=self.call_sid or "*", n=self._backlog_bytes)
            self.dropped = True
            self._close()
            self._abort()

    # ---- IPushProducer -------------------------------------------------------------------
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while self._backlog and not self._paused and self._open:
            chunk = self._backlog.popleft()
            self._backlog_bytes -= len(chunk)
            self.request.write(chunk)

    def stopProducing(self) -> None:
        self._close()

    # ---- the end ---------------------------------------------------------------------------
    def _finished(self, _: object) -> None:
        self._close()

    def _close(self) -> None:
        if not self._open:
            return
        self._open = False
        self._backlog.clear()
        self._backlog_bytes = 0
        self._on_gone(self)


class CallEventStreams:
    """A CallObserver: fans the hub's events out to the console's open streams."""

    def __init__(self, hub: CallHub, clock: Any, max_clients: int = MAX_CLIENTS,
                 max_backlog: int = MAX_BACKLOG_BYTES, language: str = "") -> None:
        self.hub = hub
        self.clock = clock
        self.language = language  # the daemon's; a page marks each line up with it (lang=)
        self.max_clients = max_clients
        self.max_backlog = max_backlog
        self.clients: set[EventClient] = set()
        self._heartbeat: LoopingCall | None = None
        hub.subscribe(self)

    def close(self) -> None:
        self.hub.unsubscribe(self)
        self._stop_heartbeat()

    def open(self, request: StreamRequest, call_sid: str | None, abort: Callable[[], None] | None = None
             ) -> EventClient | None:
        """Start a stream on ``request`` (None when too many are open). The snapshot
        and the subscription happen in one reactor turn: no event falls between them."""
        if len(self.clients) >= self.max_clients:
            return None
        client = EventClient(request, call_sid, self.clients.discard, self.max_backlog, abort)
        self.clients.add(client)
        client.send(f"retry: {RETRY_MS}\n\n".encode())
        if call_sid is not None:
            record, live = self.find(call_sid)
            client.send(encode_event("snapshot", {"call": call_sid, "live": live, "language": self.language,
                                                  "record": record.as_json() if record else None}))
        self._start_heartbeat()
        return client

    def find(self, call_sid: str) -> tuple[CallRecord | None, bool]:
        record = self.hub.live.get(call_sid)
        if record is not None:
            return record, True
        for ended in reversed(self.hub.recent):
            if ended.call_sid == call_sid:
                return ended, False
        return None, False

    # ---- CallObserver ----------------------------------------------------------------------
    def call_event(self, record: CallRecord, kind: str, data: dict[str, Any]) -> None:
        watching = [c for c in self.clients if c.call_sid in (None, record.call_sid)]
        if not watching:
            return  # nobody looks: not even the encoding is paid
        payload = {"call": record.call_sid, **data}
        if kind in ("start", "end"):
            payload["record"] = record.as_json()
        chunk = encode_event(kind, payload)
        for client in watching:
            client.send(chunk)

    # ---- keep-alive ------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = LoopingCall(self._beat)
            self._heartbeat.clock = self.clock
            self._heartbeat.start(HEARTBEAT_S, now=False)

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None

    def _beat(self) -> None:
        if not self.clients:
            self._stop_heartbeat()
            return
        for client in list(self.clients):
            client.send(b": keep-alive\n\n")
