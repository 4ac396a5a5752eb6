"""The daemon's console as voiced-call's source of the bot's words.

Before the first call, voiced-call opens the console's event stream of every call
(``/console/api/events``, Server-Sent Events, see ``voiced.console.stream``). Once its
response has begun the stream is subscribed, so no reply of a call placed after that
is missed. Each ``reply`` event (all of a reply's audio is sent) becomes a ``SaidLine``
timed by the caller's own clock; a ``bot`` event adds a reply cut before all its audio
went out, which had no ``reply`` event. A call's ``end`` event says its words are all in.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, ResponseDone
from twisted.web.http_headers import Headers

from voiced.caller.bot_words import SaidLine

EVENTS_PATH = "/console/api/events"
OPEN_TIMEOUT_S = 3.0


class ConsoleUnavailable(Exception):
    """Why the console cannot tell the bot's words (the message is printed as is)."""


def events_url(media_url: str) -> str | None:
    """The console's event stream on the daemon that serves ``media_url`` (None for tcp://)."""
    parts = urlsplit(media_url)
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        return None
    return urlunsplit((scheme, parts.netloc, EVENTS_PATH, "", ""))


class SSEParser:
    """Server-Sent Events from a byte stream: ``feed`` returns the whole events so far."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        events = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not line:
                if self._data:
                    events.append((self._event or "message", "\n".join(self._data)))
                self._event, self._data = "", []
            elif not line.startswith(":"):  # a comment (the keep-alive) otherwise
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    self._event = value
                elif name == "data":
                    self._data.append(value)
        return events


class ConsoleFeed:
    """The bot's words of every call, as the console's events tell them. Pure: feed it
    bytes (``data``); the network side is ``open_console_feed``."""

    def __init__(self, clock: IReactorTime, url: str = "") -> None:
        self.clock = clock
        self.url = url
        self.lost: str = ""  # why the stream ended early ("" while it is open)
        self._parser = SSEParser()
        self._said: dict[str, list[SaidLine]] = {}
        self._replied: dict[str, set[tuple[Any, str]]] = {}
        self._ended: set[str] = set()
        self._end_reasons: dict[str, str] = {}
        self._waiters: list[tuple[set[str], Deferred[None], IDelayedCall]] = []
        self._transport: Any = None

    def said(self, call_sid: str) -> list[SaidLine]:
        return list(self._said.get(call_sid, []))

    def end_reason(self, call_sid: str) -> str:
        """The daemon's end reason of the call, from its record ("" until its end event)."""
        return self._end_reasons.get(call_sid, "")

    def data(self, chunk: bytes) -> None:
        for kind, raw in self._parser.feed(chunk):
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("call"), str):
                self._event(kind, event)

    def _event(self, kind: str, event: dict[str, Any]) -> None:
        call, text = event["call"], event.get("text")
        if kind in ("reply", "bot") and isinstance(text, str) and text:
            key = (event.get("turn"), text)
            replied = self._replied.setdefault(call, set())
            if kind == "reply" or key not in replied:
                replied.add(key)
                self._said.setdefault(call, []).append(SaidLine(self.clock.seconds(), text))
        elif kind == "end":
            self._ended.add(call)
            record = event.get("record")
            if isinstance(record, dict) and isinstance(record.get("end_reason"), str):
                self._end_reasons[call] = record["end_reason"]
            self._wake()

    def when_ended(self, call_sids: list[str], timeout_s: float) -> Deferred[None]:
        """Fires once every call's end event came, the stream was lost, or after ``timeout_s``."""
        d: Deferred[None] = Deferred()
        waiting = set(call_sids) - self._ended
        if not waiting or self.lost:
            d.callback(None)
            return d
        entry: tuple[set[str], Deferred[None], IDelayedCall]
        timer = self.clock.callLater(timeout_s, lambda: self._release(entry))
        entry = (waiting, d, timer)
        self._waiters.append(entry)
        return d

    def _wake(self) -> None:
        for entry in list(self._waiters):
            entry[0].difference_update(self._ended)
            if not entry[0] or self.lost:
                entry[2].cancel()
                self._release(entry)

    def _release(self, entry: tuple[set[str], Deferred[None], IDelayedCall]) -> None:
        if entry in self._waiters:
            self._waiters.remove(entry)
            entry[1].callback(None)

    def connection_lost(self, reason: str) -> None:
        self.lost = reason or "the console's event stream closed"
        self._wake()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.stopProducing()
            self._transport = None


class _Body(Protocol):
    def __init__(self, feed: ConsoleFeed) -> None:
        self.feed = feed

    def dataReceived(self, data: bytes) -> None:
        self.feed.data(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.feed._transport = None
        done = reason is None or reason.check(ResponseDone)
        self.feed.connection_lost("the console closed its event stream" if done else reason.getErrorMessage())


_STATUS_REASONS = {
    401: "the console needs its token (--console-token, or $VOICED_CONSOLE_TOKEN)",
    403: "the console refused access (a wrong --console-token, or the console is not open to this address)",
    404: "the daemon serves no console there (it is off: a public port, or a carrier secret set without "
         "VOICED_CONSOLE_TOKEN)",
}


async def open_console_feed(reactor: Any, url: str, token: str | None = None, trust: Any = None,
                            timeout_s: float = OPEN_TIMEOUT_S) -> ConsoleFeed:
    """Subscribe to the console's events at ``url`` (``events_url``); ``trust`` is a
    certificate to trust for https instead of the system's. Raises ConsoleUnavailable."""
    policy = BrowserLikePolicyForHTTPS(trustRoot=trust) if trust is not None else BrowserLikePolicyForHTTPS()
    agent = Agent(reactor, contextFactory=policy, connectTimeout=timeout_s)
    headers = Headers({b"accept": [b"text/event-stream"]})
    if token:
        headers.addRawHeader(b"authorization", f"Bearer {token}".encode())
    request = agent.request(b"GET", url.encode(), headers)
    request.addTimeout(timeout_s, reactor)
    try:
        response = await request
    except TimeoutError:
        raise ConsoleUnavailable(f"{url}: no answer in {timeout_s:g} s") from None
    except Exception as e:  # noqa: BLE001 - refused, TLS, DNS: each is a reason to print, not a crash
        message = e.getErrorMessage() if isinstance(e, Failure) else str(e) or type(e).__name__
        raise ConsoleUnavailable(f"{url}: {message}") from None
    if response.code != 200:
        response.deliverBody(Protocol())  # read and drop the error's body
        reason = _STATUS_REASONS.get(response.code, "unexpected answer")
        raise ConsoleUnavailable(f"{url}: HTTP {response.code}: {reason}")
    feed = ConsoleFeed(reactor, url)
    body = _Body(feed)
    response.deliverBody(body)
    feed._transport = body.transport
    return feed
