"""A carrier WebSocket as a test drives it: RFC 6455 client frames of any kind, and a
``CarrierWebSocket`` on a string transport and a Clock (the handshake and the server's
frames read back are ``tests.testing.carriers``')."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from voiced.carrier.websocket import CarrierWebSocket
from voiced.metrics import Metrics

TEXT, BINARY, CONTINUATION, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9


def frame(payload: bytes, opcode: int = TEXT, fin: bool = True, mask: bytes | None = b"\x37\xfa\x21\x3d") -> bytes:
    """One client frame as RFC 6455 writes it (``mask=None``: unmasked, which a server refuses)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Transport(StringTransport):
    """A StringTransport that, like a TCP transport, lets Autobahn unregister a producer
    it never registered (it does so when it drops the connection after a close)."""

    def unregisterProducer(self) -> None:
        self.producer = None


class RecordingSocket(CarrierWebSocket):
    """A carrier whose messages are only recorded; its link stays at "no start yet"."""

    carrier = "test"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[bytes | str, bool]] = []
        self.to_autobahn = b""  # what reached Autobahn's own frame parser
        self.closed_with: tuple[bool, int | None] | None = None

    def received(self, payload: bytes | str, is_binary: bool) -> None:
        self.messages.append((payload, is_binary))

    def _dataReceived(self, data: bytes) -> None:
        self.to_autobahn += data
        super()._dataReceived(data)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed_with = (wasClean, code)
        super().onClose(wasClean, code, reason)


class Core:
    """The call core a carrier's link needs before a call starts: a clock and admission."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.metrics = Metrics()

    def admit(self) -> None:
        pass
