"""What every WebSocket carrier's protocol shares: admission, the cheap inbound frame
path, a bounded outbound path, closing, and its ``CallLink``.

A carrier's protocol subclasses ``CarrierWebSocket``: it parses its messages in
``received`` and calls its ``link``; it writes its own messages in ``write_audio``,
``write_mark`` and ``write_clear`` (the ``CarrierWire`` its link drives). Any
exception while handling one call is logged with its call id and closes that call's
socket only. Once voiced has sent its close, inbound messages are dropped unread:
the handshake may take seconds, and nothing the peer sends then can matter.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from voiced.carrier.base import CallCore, Refused
from voiced.carrier.limits import MAX_OUTBOUND_BYTES, outbound_backlog
from voiced.carrier.link import CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSE_POLICY_VIOLATION, CallLink

log = Logger(namespace="voiced.carrier")

# The inbound fast path's frame size limit when Autobahn's own limits are off (0).
MAX_FAST_FRAME = 64 * 1024
# After the closing handshake, how long the peer has to read what is left (our close frame,
# the end of a reply) before its socket is reset.
CLOSE_FLUSH_S = 5.0
_TEXT, _BINARY = 0x81, 0x82  # FIN + opcode, no RSV bits


class CarrierWebSocket(WebSocketServerProtocol):
    factory: "CarrierWebSocketFactory"
    #: The carrier's name, as records and logs name it.
    carrier = ""
    #: True when the carrier echoes playback markers (write_mark); else voiced paces playout.
    echoes_marks = True

    def __init__(self) -> None:
        super().__init__()
        self.link: CallLink = None  # type: ignore[assignment]  # set in onConnect, once admitted
        self._fast_limit = 0  # the fast path's frame size limit, set once open (0: Autobahn decodes)
        self._flush_deadline: IDelayedCall | None = None

    @property
    def call_id(self) -> str:
        return self.link.call_id if self.link is not None else "-"

    # ---- the inbound frame path ------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        """Whole masked data frames go straight to onMessage; anything else goes through Autobahn.

        Autobahn's per-read path costs ~30 µs for one 20 ms media frame (a debug line's
        arguments built and discarded, a cffi masker object per frame, a Deferred fired for
        its "message" observers, and its frame state machine), more than the rest of the
        daemon's work on that frame. Carriers send one small unfragmented frame per message,
        so that common case is decoded here: FIN + text or binary opcode, masked, a 7- or
        16-bit length within the payload limits, valid UTF-8 for text. Everything else
        (control frames, fragments, a frame split across reads, extensions, a closing
        socket, bad UTF-8) goes to Autobahn from its first byte, and Autobahn's checks and
        close codes apply exactly as before.
        """
        if self._fast_limit and self.state == self.STATE_OPEN and self.current_frame is None and not self.data \
                and self._perMessageCompress is None:
            data = self._whole_data_frames(data)
            if not data:
                return
        self._dataReceived(data)

    def _whole_data_frames(self, data: bytes) -> bytes:
        """Delivers the whole data frames at the front of ``data``; returns the rest."""
        pos, end = 0, len(data)
        limit = self._fast_limit
        while end - pos >= 6 and self.state == self.STATE_OPEN:
            first, second = data[pos], data[pos + 1]
            if (first != _TEXT and first != _BINARY) or second < 0x80:  # masked
                break
            n = second & 0x7F
            if n == 126:
                n = int.from_bytes(data[pos + 2: pos + 4], "big")
                mask_at = pos + 4
            elif n == 127:
                break
            else:
                mask_at = pos + 2
            start = mask_at + 4
            stop = start + n
            if n > limit or stop > end:
                break
            words = (n + 3) >> 2
            # Unmasked as one integer XOR. Little-endian lines byte i of the payload up with
            # byte i of the repeated mask however long either is; the mask's extra bytes
            # past the payload are cut off after (no slice of the mask first).
            payload = (int.from_bytes(data[start:stop], "little")
                       ^ int.from_bytes(data[mask_at:start] * words, "little")).to_bytes(words << 2, "little")[:n]
            if first == _TEXT:
                try:
                    message: bytes | str = payload.decode("utf-8")
                except UnicodeDecodeError:
                    break  # Autobahn fails the connection with its invalid-payload close
            else:
                message = payload
            pos = stop
            if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                self._cancelAutoPingTimeoutCall()  # as Autobahn does: any data frame shows the peer alive
            self.onMessage(message, first == _BINARY)
        return data[pos:] if pos else data

    # ---- Autobahn callbacks -------------------------------------------------------------
    def onConnect(self, request: ConnectionRequest) -> None:
        try:
            self.factory.core.admit()
            self.admit(request)
        except Refused as e:
            raise ConnectionDeny(e.status, e.reason)
        except ConnectionDeny:
            raise
        except Exception:
            log.failure("Rejecting media stream upgrade from {peer}", peer=request.peer)
            raise ConnectionDeny(ConnectionDeny.INTERNAL_SERVER_ERROR)
        self.link = CallLink(self.factory.core, self, self.carrier, self.echoes_marks)

    def admit(self, request: ConnectionRequest) -> None:
        """The carrier's own check of the upgrade (a signature); raise ConnectionDeny to refuse."""

    def onOpen(self) -> None:
        # Autobahn copied the factory's limits onto the protocol before the handshake.
        self._fast_limit = min(self.maxFramePayloadSize or MAX_FAST_FRAME, self.maxMessagePayloadSize or MAX_FAST_FRAME)
        self.link.opened()

    def onMessage(self, payload: bytes | str, isBinary: bool) -> None:
        if self.link.closing:
            return
        try:
            self.received(payload, isBinary)
        except Exception:
            log.failure("Error handling a {carrier} message call={call}", carrier=self.carrier, call=self.call_id)
            self.link.fail(CLOSE_INTERNAL_ERROR, "internal error")

    def received(self, payload: bytes | str, is_binary: bool) -> None:
        """One whole message from the carrier: parse it and tell the link."""
        raise NotImplementedError

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.link is not None:
            # Unless voiced or the carrier said why first (link.closed keeps that): the peer closed.
            self.link.closed(f"caller hung up (close {code})" if code in (1000, 1001)
                             else f"connection lost (close {code})")

    # ---- the end of the TCP connection -----------------------------------------------------
    def dropConnection(self, abort: bool = False) -> None:
        if abort and self.wasClean:
            # Both sides sent a close at once, as when a carrier's stop (answered by voiced's
            # close) crosses the carrier's own close. Autobahn resets the TCP then, and the reset
            # discards voiced's close frame still in the send buffer: the carrier sees 1006.
            # The handshake is complete, so the socket closes after what was sent instead.
            abort = False
        was_connected = self.state != self.STATE_CLOSED
        super().dropConnection(abort=abort)
        if was_connected and not abort:
            # A peer that stops reading must not keep the socket open (Autobahn sets no timer here).
            self._flush_deadline = self.factory.clock.callLater(CLOSE_FLUSH_S, self._reset_unflushed)

    def _reset_unflushed(self) -> None:
        self._flush_deadline = None
        self.transport.abortConnection()

    def connectionLost(self, reason: Any) -> None:  # type: ignore[override]
        if self._flush_deadline is not None:
            self._flush_deadline.cancel()
        self._flush_deadline = None
        super().connectionLost(reason)

    # ---- CarrierWire ---------------------------------------------------------------------
    def send_text(self, text: str) -> None:
        self._send(text.encode("utf-8"), False)

    def send_binary(self, payload: bytes) -> None:
        self._send(payload, True)

    def _send(self, payload: bytes, binary: bool) -> None:
        if self.state != self.STATE_OPEN:
            return
        if outbound_backlog(self.transport) > MAX_OUTBOUND_BYTES:
            # The peer stopped reading: a close frame would not be read either.
            log.warn("PEER_NOT_READING call={call}: over {limit} bytes unsent; dropping the socket",
                     call=self.call_id, limit=MAX_OUTBOUND_BYTES)
            self.link.closing = True
            self.dropConnection(abort=True)
            return
        self.sendMessage(payload, isBinary=binary)

    def end_call(self) -> None:
        self.close(CLOSE_NORMAL, "call completed")

    def close(self, code: int, reason: str) -> None:
        if self.state != self.STATE_OPEN:
            return
        if code == CLOSE_POLICY_VIOLATION:
            # sendClose allows only 1000 and 3000-4999; 1008 is the standard "policy violation".
            self.sendCloseFrame(code, reason.encode("utf-8")[:120], isReply=False)
        else:
            self.sendClose(code, reason or None)


class CarrierWebSocketFactory(WebSocketServerFactory):
    """One per carrier path; ``core`` is the service, ``config`` whatever the carrier's
    protocol needs (its secrets, the console's media tokens)."""

    def __init__(self, core: CallCore, config: Any = None, url: str = "ws://localhost/media") -> None:
        super().__init__(url, server="voiced")
        self.core = core
        self.clock = core.clock
        self.config = config
        self.setProtocolOptions(
            webStatus=False,
            maxFramePayloadSize=64 * 1024,
            maxMessagePayloadSize=64 * 1024,
            autoPingInterval=10,
            autoPingTimeout=20,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=2,
            failByDrop=False,
        )
