"""Hang-up and transfer for Exotel: the Voicebot applet's stream is the only handle voiced has.

Exotel's call-flow APIs (v1) have no request that ends or moves a live call, and its
newer Call Control API acts on "legs" whose ids the Voicebot applet never hands over.
What the applet does offer: when the bot closes the WebSocket, the stream ends and the
call goes on to the next applet of the flow (Exotel's guide: "disconnect the WebSocket
from your bot when the conversation is complete to allow the call flow to proceed").
So the bot's hang-up is the stream's close (a Hangup applet after the Voicebot ends
the call), and a transfer cannot choose its target: it logs that, and ends the stream,
so a Connect applet placed after the Voicebot puts the caller through to a person.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from voiced.transfer import check_transfer_target

log = Logger(namespace="voiced.carrier")


class Stream(Protocol):
    def end_stream(self) -> None: ...


class ExotelStreams:
    """This process's open Exotel streams by call id, so the control can end a call's stream."""

    def __init__(self) -> None:
        self._by_call: dict[str, Stream] = {}

    def add(self, call_sid: str, stream: Stream) -> None:
        self._by_call[call_sid] = stream

    def remove(self, call_sid: str, stream: Stream) -> None:
        if self._by_call.get(call_sid) is stream:
            del self._by_call[call_sid]

    def get(self, call_sid: str) -> Stream | None:
        return self._by_call.get(call_sid)

    def __len__(self) -> int:
        return len(self._by_call)


class ExotelCallControl:
    """A ``CallControl`` that acts through the call's own stream; it never fails or blocks."""

    def __init__(self, streams: ExotelStreams) -> None:
        self._streams = streams

    def complete(self, call_sid: str) -> Deferred[bool]:
        """The call's stream is closed (the bot's hang-up closed it already, normally):
        the flow's next applet ends the call."""
        stream = self._streams.get(call_sid)
        if stream is not None:
            stream.end_stream()
        return succeed(True)

    def transfer(self, call_sid: str, to: str) -> Deferred[bool]:
        check_transfer_target(to)  # a bad target from an agent is refused the same way on every carrier
        stream = self._streams.get(call_sid)
        if stream is None:
            log.warn("EXOTEL_TRANSFER_FAILED call={call} to={to}: the call's stream is already gone",
                     call=call_sid, to=to)
            return succeed(False)
        log.warn("EXOTEL_TRANSFER call={call} to={to}: Exotel has no API to move a live call to a number; "
                 "ending the stream instead, so the call goes on to the applet after the Voicebot in the flow "
                 "(a Connect applet there puts the caller through to a person)", call=call_sid, to=to)
        stream.end_stream()
        return succeed(True)
