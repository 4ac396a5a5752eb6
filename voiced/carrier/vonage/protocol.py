"""The Vonage Voice API WebSocket: Vonage's wire (``wire``) on the shared carrier socket.

One protocol instance per phone call. Vonage opens the socket the answer's NCCO names;
its first message, ``websocket:connected``, carries the audio format and the headers
voiced put in that NCCO: the call's ``uuid``, ``conversation_uuid``, ``from``, ``to`` and,
when the signature secret is set, the per-call media token (``voiced.carrier.media_token``)
that only a signed answer hands out. Then the caller's audio comes as binary frames of
16-bit PCM, straight to the link. voiced's audio goes back the same way, one 20 ms frame a
message, as fast as it comes: Vonage buffers it, ``clear`` drops that buffer, and a
``notify`` is echoed as ``websocket:notify`` once the audio before it has played (the
playback marker). Hanging up is closing the socket: the NCCO has nothing after ``connect``.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.logger import Logger

from voiced.carrier import media_token
from voiced.carrier.base import CallStart
from voiced.carrier.inbound import parse_failed
from voiced.carrier.link import CLOSE_BAD_MEDIA_FORMAT
import voiced.carrier.vonage.signature as signature
import voiced.carrier.vonage.wire as wire
from voiced.carrier.websocket import CarrierWebSocket, CarrierWebSocketFactory

log = Logger(namespace="voiced.carrier")


@dataclass(frozen=True)
class VonageAdmission:
    """What admits a Vonage stream: the account's signature secret ("" when unsigned)."""

    secret: str


class VonageMediaStream(CarrierWebSocket):
    carrier = "vonage"
    echoes_marks = True

    def __init__(self) -> None:
        super().__init__()
        self.frame_bytes = 640  # one 20 ms frame at the call's rate, once connected says it

    # ---- admission -----------------------------------------------------------------------
    def admit(self, request: ConnectionRequest) -> None:
        """A JWT on the upgrade (the NCCO asks Vonage for one) must be Vonage's and fresh.
        Without one, the per-call media token in ``websocket:connected`` decides alone: it
        keeps voiced working where Vonage does not sign the upgrade yet."""
        secret = self.factory.config.secret
        authorization = request.headers.get("authorization")
        if not secret or authorization is None:
            return
        try:
            # The upgrade is a GET without a body: there is no payload to hash.
            signature.verify(secret, authorization, self.factory.clock.seconds())
        except signature.SignatureError as e:
            log.warn("MEDIA_REJECTED carrier=vonage: {problem} from {peer}", problem=str(e), peer=request.peer)
            raise ConnectionDeny(403, "invalid signature")

    # ---- inbound -------------------------------------------------------------------------
    def received(self, payload: bytes | str, is_binary: bool) -> None:
        link = self.link
        if is_binary:
            link.audio(payload)  # type: ignore[arg-type]  # binary frames are bytes
            return
        try:
            message = wire.parse_text(payload)
        except Exception as e:  # a parser gap must cost one message, never the socket
            parse_failed(link, e, wire.ProtocolError)
            return
        kind = type(message)
        if kind is wire.Notify:
            link.played(message.name)  # type: ignore[union-attr]
        elif kind is wire.Dtmf:
            link.dtmf(message.digit)  # type: ignore[union-attr]
        elif kind is wire.Connected:
            self._on_connected(message)  # type: ignore[arg-type]
        elif kind is wire.Cleared:
            log.debug("CLEARED call={call}", call=link.call_id)
        else:
            log.debug("Ignoring unknown event {event!r} call={call}", event=message.event,  # type: ignore[union-attr]
                      call=link.call_id)

    def _on_connected(self, connected: wire.Connected) -> None:
        link = self.link
        if link.call is not None:
            link.protocol_error("duplicate websocket:connected ignored")
            return
        headers = dict(connected.headers)
        token = headers.pop(media_token.PARAMETER, None)
        uuid = headers.get("uuid", "")
        # A call voiced placed (voiced.outbound.vonage_dial): its NCCO was written before Vonage
        # named the call, so its headers name the dial, and the token was made for the dial.
        dial_id = headers.get(wire.DIAL_HEADER, "")
        if dial_id and not uuid:
            from voiced.outbound.vonage_dial import dial_call_id

            uuid = dial_call_id(self.factory.core, dial_id)
        # An operator's own NCCO may leave out the headers: the call still gets an id of its own.
        link.call_id = uuid or headers.get("conversation_uuid", "") or f"vonage-{uuid4().hex}"
        secret = self.factory.config.secret
        if secret:
            problem = media_token.problem(secret, dial_id or uuid, token, self.factory.clock.seconds())
            if problem is not None:
                log.warn("MEDIA_REJECTED call={call}: {problem}; closing 1008 before any speech stream opens",
                         call=link.call_id, problem=problem)
                link.refuse(problem, logged=True)
                return
        audio = wire.audio_format(connected.content_type)
        if audio is None:
            link.fail(CLOSE_BAD_MEDIA_FORMAT, f"unsupported content-type {connected.content_type[:60]!r}")
            return
        self.frame_bytes = audio.bytes_per_ms() * 20
        link.started(CallStart("vonage", link.call_id, headers.get("conversation_uuid", ""),
                               headers.get("from", ""), headers.get("to", ""), headers, audio))

    # ---- CarrierWire -----------------------------------------------------------------------
    def write_audio(self, payload: bytes) -> None:
        """Vonage takes exactly one 20 ms frame per message."""
        size = self.frame_bytes
        if len(payload) % size:
            # The link hands whole frames; a short one would be refused by Vonage: pad it with silence.
            payload += bytes(size - len(payload) % size)
        self.send_binary(payload[:size])  # the shared path's checks: still open, the peer still reading
        if len(payload) == size or self.state != self.STATE_OPEN or self.link.closing:
            return
        # A sentence's audio is a few hundred frames: written at once as ready-made frames, not one
        # Autobahn sendMessage each (~7 µs apiece). A server's frames are unmasked, and every
        # Vonage frame (320 to 960 bytes) takes the 16-bit length form.
        header = b"\x82\x7e" + size.to_bytes(2, "big")
        self.sendData(b"".join(header + payload[start:start + size] for start in range(size, len(payload), size)))

    def write_mark(self, name: str) -> None:
        self.send_text(wire.notify_message(name))

    def write_clear(self) -> None:
        self.send_text(wire.CLEAR_MESSAGE)


class VonageMediaStreamFactory(CarrierWebSocketFactory):
    protocol = VonageMediaStream
