"""voiced.reactor: voiced's epoll reactor reads and writes without the log context, is the
default unless -r chose another, and a connection whose teardown raises costs that connection only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone
from twisted.internet.main import CONNECTION_DONE
from twisted.logger import globalLogPublisher
from twisted.python import context, log
from twisted.trial.unittest import TestCase

from voiced.reactor import LeanEpollReactor


class Pipe(FileDescriptor):
    """One end of a socket pair, read by the reactor under test."""

    def __init__(self, reactor: LeanEpollReactor, sock: socket.socket, fail_on_read: bool = False) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.sock.setblocking(False)
        self.fail_on_read = fail_on_read
        self.received: list[bytes] = []
        self.contexts: list[object] = []
        self.lost: list[object] = []

    def logPrefix(self) -> str:
        return "Pipe"  # what the stock reactor would put in the log context around each read

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.contexts.append(context.get(log.ILogContext, {}).get("system"))
        if self.fail_on_read:
            raise RuntimeError("a protocol bug")
        self.received.append(self.sock.recv(100))

    def connectionLost(self, reason: object) -> None:
        self.lost.append(reason)
        if self.fail_on_read:
            raise RuntimeError("and a teardown bug")


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHICH_REACTOR = """
import sys
from voiced.tap import Options
if sys.argv[1] == "poll":  # what twistd -r poll does while parsing its own options, first
    from twisted.internet import pollreactor
    pollreactor.install()
Options().parseOptions(["--listen", "tcp:0"])
from twisted.internet import reactor
print(type(reactor).__name__)
"""


class DefaultReactorTests(TestCase):
    """``twistd voiced`` runs voiced's reactor unless ``-r`` chose one (a fresh interpreter
    each: a process installs one reactor)."""

    def reactor_after_options(self, chosen: str) -> str:
        env = dict(os.environ, PYTHONPATH=REPO)
        done = subprocess.run([sys.executable, "-c", WHICH_REACTOR, chosen], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout.strip()

    def test_voiced_options_install_it_when_nothing_was_chosen(self) -> None:
        self.assertEqual(self.reactor_after_options("none"), "LeanEpollReactor")

    def test_a_reactor_chosen_with_r_stays(self) -> None:
        self.assertEqual(self.reactor_after_options("poll"), "PollReactor")


class LeanEpollReactorTests(TestCase):
    def setUp(self) -> None:
        self.reactor = LeanEpollReactor()
        self.addCleanup(self.reactor._poller.close)
        self.pairs = [socket.socketpair() for _ in range(2)]
        for a, b in self.pairs:
            self.addCleanup(a.close)
            self.addCleanup(b.close)
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def test_reads_reach_the_selectable_without_a_log_context(self) -> None:
        pipe = Pipe(self.reactor, self.pairs[0][0])
        self.reactor.addReader(pipe)
        self.pairs[0][1].send(b"media")
        self.reactor.doPoll(1)
        self.assertEqual(pipe.received, [b"media"])
        self.assertEqual(pipe.contexts, ["-"])  # the process's default: no callWithLogger around the read

    def test_a_failing_connection_costs_only_itself(self) -> None:
        broken = Pipe(self.reactor, self.pairs[0][0], fail_on_read=True)
        healthy = Pipe(self.reactor, self.pairs[1][0])
        self.reactor.addReader(broken)
        self.reactor.addReader(healthy)
        self.pairs[0][1].send(b"x")
        self.pairs[1][1].send(b"y")
        self.reactor.doPoll(1)
        self.assertEqual(healthy.received, [b"y"])
        self.assertEqual(len(broken.lost), 1)
        self.assertNotIn(broken, self.reactor.getReaders())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)  # the read's and the teardown's
        self.assertTrue(any(e.get("log_format", "").startswith("REACTOR_ERROR") for e in self.logged))

    def test_a_closed_peer_is_a_clean_close(self) -> None:
        pipe = Pipe(self.reactor, self.pairs[0][0])
        pipe.doRead = lambda: CONNECTION_DONE  # type: ignore[method-assign]
        self.reactor.addReader(pipe)
        self.pairs[0][1].close()
        self.reactor.doPoll(1)
        self.assertEqual(len(pipe.lost), 1)
        self.assertTrue(pipe.lost[0].check(ConnectionDone))
