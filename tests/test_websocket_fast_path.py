"""The inbound fast frame path (``CarrierWebSocket.dataReceived``) against Autobahn's own.

The fast path decodes whole masked data frames itself and reads Autobahn's private
state (``current_frame``, ``data``, ``_perMessageCompress``, ``_dataReceived``, the
auto-ping fields) to know when it may. Two protocols get the same bytes in the same
reads: one as voiced runs it, one with the fast path off (``_fast_limit = 0``: every byte
to Autobahn). The messages, what the server wrote back (pongs, closes) and the final
state must be the same, so an Autobahn release that changes what the fast path leans
on fails here, not on a call.
"""

from __future__ import annotations

import os

import txaio
from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.carriers import HANDSHAKE, server_frames
from tests.testing.websocket import BINARY, CLOSE, CONTINUATION, PING, TEXT, Core, RecordingSocket, Transport, frame
from voiced.carrier.websocket import MAX_FAST_FRAME, CarrierWebSocketFactory


def as_carriers_see_it(message: tuple[bytes | str, bool]) -> tuple[bytes | str, bool]:
    """Autobahn hands a text message over as its UTF-8 bytes, the fast path as str; every
    carrier's parser takes either (``voiced.carrier.jsonwire``), so text compares as str."""
    payload, is_binary = message
    return (payload.decode("utf-8") if isinstance(payload, bytes) and not is_binary else payload), is_binary


def heard(proto: "RecordingSocket") -> list[tuple[bytes | str, bool]]:
    return [as_carriers_see_it(m) for m in proto.messages]


class FastPathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(txaio.config, "loop", Clock())  # Autobahn's own timers (auto-ping) never fire

    def open_socket(self, fast: bool, **limits: int) -> tuple[RecordingSocket, Transport]:
        factory = CarrierWebSocketFactory(Core())
        factory.setProtocolOptions(**limits)
        factory.protocol = RecordingSocket
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = Transport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
                                    peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        proto.makeConnection(transport)
        proto.dataReceived(HANDSHAKE)
        assert b"101 Switching Protocols" in transport.value(), transport.value()
        transport.clear()
        proto.to_autobahn = b""
        if not fast:
            proto._fast_limit = 0  # the fast path's off switch: every byte goes to Autobahn
        else:
            sizes = [v for k, v in limits.items() if k.endswith("PayloadSize")]
            assert proto._fast_limit == min(sizes, default=MAX_FAST_FRAME), proto._fast_limit
        return proto, transport

    def both(self, reads: list[bytes], **limits: int) -> tuple[RecordingSocket, RecordingSocket]:
        """Feeds ``reads`` to a fast and a slow socket; asserts they behaved the same."""
        results = []
        for fast in (True, False):
            proto, transport = self.open_socket(fast, **limits)
            for data in reads:
                proto.dataReceived(data)
            results.append((proto, server_frames(transport.value()), transport.disconnecting))
        (fast_proto, fast_out, fast_gone), (slow_proto, slow_out, slow_gone) = results
        self.assertEqual(heard(fast_proto), heard(slow_proto))
        self.assertEqual(fast_out, slow_out)
        self.assertEqual((fast_proto.state, fast_proto.closed_with, fast_gone),
                         (slow_proto.state, slow_proto.closed_with, slow_gone))
        self.assertEqual(slow_proto.to_autobahn, b"".join(reads))
        return fast_proto, slow_proto

    def close_code(self, proto: RecordingSocket) -> int | None:
        closes = [p for op, p in server_frames(proto.transport.value()) if op == CLOSE]
        return int.from_bytes(closes[0][:2], "big") if closes else None

    # ---- what the fast path decodes itself ----------------------------------------------------
    def test_text_and_binary_frames_of_every_length_form(self):
        texts = ["", "a", "ab", "abc", "{\"event\":\"media\"}", "é" * 63, "z" * 125, "y" * 126, "€" * 300]
        blobs = [b"", b"\x00", b"\xff" * 160, os.urandom(640), os.urandom(MAX_FAST_FRAME - 1)]
        reads = [frame(t.encode("utf-8"), TEXT, mask=bytes([i, 255 - i, 7 * i % 256, 3])) for i, t in enumerate(texts)]
        reads += [frame(b, BINARY, mask=os.urandom(4)) for b in blobs]
        fast, _ = self.both(reads)
        self.assertEqual(heard(fast), [(t, False) for t in texts] + [(b, True) for b in blobs])
        self.assertEqual(fast.to_autobahn, b"", "whole masked data frames never reach Autobahn")

    def test_several_frames_in_one_read(self):
        wire = b"".join(frame(f"message {i}".encode(), TEXT if i % 2 else BINARY) for i in range(20))
        fast, _ = self.both([wire])
        self.assertEqual(len(fast.messages), 20)
        self.assertEqual(fast.to_autobahn, b"")

    # ---- what the fast path hands to Autobahn ------------------------------------------------
    def test_a_frame_split_across_reads(self):
        wire = frame(b"x" * 300) + frame(b"\x01\x02", BINARY) + frame(b"y" * 40)
        for cut in (1, 2, 3, 5, 8, 150, len(wire) - 1):
            with self.subTest(cut=cut):
                fast, _ = self.both([wire[:cut], wire[cut:]])
                self.assertEqual(heard(fast), [("x" * 300, False), (b"\x01\x02", True), ("y" * 40, False)])
        fast, _ = self.both([wire[i: i + 7] for i in range(0, len(wire), 7)])
        self.assertEqual(len(fast.messages), 3)

    def test_the_rest_of_a_cut_header_never_reads_as_a_frame(self):
        # Autobahn holds the first two header bytes; what follows (the mask) looks like a
        # whole empty frame, 0x81 0x80 + 4 bytes: only Autobahn may read it.
        wire = frame(b"ab", TEXT, mask=b"\x81\x80\x00\x00")
        fast, _ = self.both([wire[:2], wire[2:]])
        self.assertEqual(heard(fast), [("ab", False)])

    def test_the_rest_of_a_cut_payload_never_reads_as_a_frame(self):
        # Autobahn is inside a frame's payload (its current frame); the rest starts with
        # bytes that look like a whole empty binary frame.
        payload = b"A" * 10 + frame(b"", BINARY, mask=b"\x00" * 4) + b"B" * 10
        wire = frame(payload, BINARY, mask=b"\x00" * 4)
        fast, _ = self.both([wire[:16], wire[16:]])
        self.assertEqual(heard(fast), [(payload, True)])

    def test_the_fast_path_keeps_autobahns_size_limits(self):
        for limits in ({"maxFramePayloadSize": 1000}, {"maxMessagePayloadSize": 1000}):
            with self.subTest(**limits):
                fast, _ = self.both([frame(b"x" * 1000), frame(b"y" * 1001, BINARY)], **limits)
                self.assertEqual((heard(fast), self.close_code(fast)), ([("x" * 1000, False)], 1009))

    def test_a_data_frame_shows_the_peer_alive_to_the_auto_ping(self):
        loop = Clock()
        self.patch(txaio.config, "loop", loop)
        outcomes = []
        for fast in (True, False):
            proto, transport = self.open_socket(fast, autoPingInterval=5, autoPingTimeout=3)
            loop.advance(5)  # a ping went out; without traffic the socket drops in 3 s
            self.assertIsNotNone(proto.autoPingTimeoutCall)
            proto.dataReceived(frame(b"media"))
            outcomes.append((proto.autoPingTimeoutCall, heard(proto)))
            loop.advance(3)
            outcomes.append((proto.state, transport.disconnecting))
        self.assertEqual(outcomes[:2], outcomes[2:])
        self.assertEqual(outcomes[0], (None, [("media", False)]))
        self.assertEqual(outcomes[1][1], False)

    def test_a_fragmented_message_with_a_ping_between_its_fragments(self):
        reads = [frame(b"hel", TEXT, fin=False), frame(b"ping!", PING), frame(b"lo ", CONTINUATION, fin=False),
                 frame(b"world", CONTINUATION), frame(b"after", TEXT)]
        fast, _ = self.both(reads)
        self.assertEqual(heard(fast), [("hello world", False), ("after", False)])
        self.assertIn((0xA, b"ping!"), server_frames(fast.transport.value()))  # Autobahn's pong

    def test_a_ping_then_data_in_one_read(self):
        fast, _ = self.both([frame(b"are you there", PING) + frame(b"a") + frame(b"b", BINARY)])
        self.assertEqual(heard(fast), [("a", False), (b"b", True)])

    def test_the_peers_close_is_answered_and_nothing_after_it_is_heard(self):
        fast, _ = self.both([frame(b"before") + frame((1000).to_bytes(2, "big") + b"bye", CLOSE) + frame(b"after")])
        self.assertEqual(heard(fast), [("before", False)])
        self.assertEqual(self.close_code(fast), 1000)

    def test_an_unmasked_frame_fails_the_connection(self):
        fast, _ = self.both([frame(b"ok"), frame(b"not masked", mask=None), frame(b"never")])
        self.assertEqual(heard(fast), [("ok", False)])
        self.assertEqual(self.close_code(fast), 1002)

    def test_invalid_utf8_fails_the_connection(self):
        fast, _ = self.both([frame(b"ok") + frame(b"\xc3\x28") + frame(b"never")])
        self.assertEqual(self.close_code(fast), 1007)

    def test_a_frame_over_the_size_limit_fails_the_connection(self):
        fast, _ = self.both([frame(b"x" * (MAX_FAST_FRAME + 1), BINARY)])
        self.assertEqual((heard(fast), self.close_code(fast)), ([], 1009))

    def test_reserved_bits_fail_the_connection(self):
        rsv = bytearray(frame(b"compressed?"))
        rsv[0] |= 0x40
        fast, _ = self.both([bytes(rsv)])
        self.assertEqual(self.close_code(fast), 1002)

    # ---- anything at all ---------------------------------------------------------------------
    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def test_any_frames_in_any_reads(self, data: st.DataObject) -> None:
        message = st.one_of(
            st.tuples(st.just(TEXT), st.text(max_size=300).map(lambda t: t.encode("utf-8"))),
            st.tuples(st.just(BINARY), st.binary(max_size=400)),
            st.tuples(st.just(PING), st.binary(max_size=125)),
        )
        wire = b""
        for opcode, payload in data.draw(st.lists(message, max_size=12), "messages"):
            mask = data.draw(st.binary(min_size=4, max_size=4), "mask")
            parts = data.draw(st.integers(1, 3), "fragments") if opcode != PING and payload else 1
            step = -(-len(payload) // parts) if payload else 0
            pieces = [payload[i: i + step] for i in range(0, len(payload), step)] if step else [payload]
            for i, piece in enumerate(pieces):
                wire += frame(piece, opcode if i == 0 else CONTINUATION, fin=i == len(pieces) - 1, mask=mask)
        cuts = sorted(set(data.draw(st.lists(st.integers(0, len(wire)), max_size=8), "cuts")))
        bounds = [0, *cuts, len(wire)]
        self.both([wire[a:b] for a, b in zip(bounds, bounds[1:]) if b > a])
