"""How a carrier's TCP connection ends (``CarrierWebSocket.dropConnection``).

A carrier's hang-up is a ``stop`` and its own close, often in one read: voiced answers the
stop with its close, and the two closes cross. Autobahn resets the TCP then, discarding
voiced's close frame, and the carrier saw 1006. After a complete handshake voiced now
closes the socket after what it sent; a peer that then never reads is reset after
``CLOSE_FLUSH_S``; a handshake that never completes is still reset at once.
"""

from __future__ import annotations

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.carriers import HANDSHAKE, server_frames
from tests.testing.websocket import CLOSE, Core, RecordingSocket, Transport, frame
from voiced.carrier.websocket import CLOSE_FLUSH_S, CarrierWebSocketFactory

PEER_CLOSE = frame((1000).to_bytes(2, "big"), CLOSE)


class ClosingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.autobahn_clock = Clock()  # Autobahn's own timers (the close handshake's timeout)
        self.patch(txaio.config, "loop", self.autobahn_clock)
        core = Core()
        self.clock = core.clock
        factory = CarrierWebSocketFactory(core)
        factory.protocol = RecordingSocket
        self.proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = Transport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
                                   peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(HANDSHAKE)
        self.transport.clear()
        self.link_timers = set(self.clock.getDelayedCalls())  # the link's wait for a start

    def timers(self) -> list:
        """What the socket's ending has pending on voiced's clock."""
        return [t for t in self.clock.getDelayedCalls() if t not in self.link_timers]

    def closes_sent(self) -> list[int]:
        return [int.from_bytes(p[:2], "big") for op, p in server_frames(self.transport.value()) if op == CLOSE]

    def test_crossing_closes_end_after_voiceds_close_is_sent(self):
        self.proto.sendClose(1000)  # voiced's answer to the carrier's stop
        self.proto.dataReceived(PEER_CLOSE)  # the carrier's own close, already on its way
        self.assertEqual(self.closes_sent(), [1000])
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.disconnected, "closed after the buffer, not reset")
        self.assertEqual(self.proto.closed_with, None)  # onClose waits for the TCP to go

    def test_the_peers_close_is_answered_and_the_socket_closed_after_it(self):
        self.proto.dataReceived(PEER_CLOSE)
        self.assertEqual(self.closes_sent(), [1000])
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.disconnected)

    def test_a_peer_that_never_reads_after_the_handshake_is_reset(self):
        self.proto.sendClose(1000)
        self.proto.dataReceived(PEER_CLOSE)
        self.clock.advance(CLOSE_FLUSH_S - 0.1)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(0.1)
        self.assertTrue(self.transport.disconnected)

    def test_a_socket_that_closes_leaves_no_timer(self):
        self.proto.dataReceived(PEER_CLOSE)
        self.assertEqual(len(self.timers()), 1)
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.timers(), [])
        self.assertEqual(self.proto.closed_with, (True, 1000))

    def test_a_handshake_the_peer_never_finishes_is_reset_at_once(self):
        self.proto.sendClose(1000)
        self.autobahn_clock.advance(self.proto.closeHandshakeTimeout)
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.timers(), [])
