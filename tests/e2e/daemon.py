"""The processes of end-to-end tests: a real voiced daemon (twistd), the Google emulator
(``voiced-emulator``), and the caller's spoken lines (espeak-ng)."""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

from voiced.caller.session import CallerLine
from voiced.config import Settings
from voiced.demo import free_port
from voiced.emulator.heard import heard_document

#: The daemon's default barge-in: caller speech over a reply before the `clear`.
BARGE_IN_MS = Settings().barge_in_ms

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Daemon:
    """``twistd -n voiced`` (or ``twistd -ny voiced.tac``) on a free loopback port."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        tac: bool = False,
        args: list[str] | None = None,
        daemonize: bool = False,
        admin: bool = False,
    ) -> None:
        self.port = free_port()
        # With admin, /health* and /metrics are on a port of their own (--admin-listen).
        self.admin_port = free_port() if admin else None
        if admin:
            args = ["--admin-listen", f"tcp:{self.admin_port}:interface=127.0.0.1"] + (args or [])
        self.rundir = tempfile.mkdtemp(prefix="voiced-e2e-")
        self.daemonized = daemonize
        self.log_file = tempfile.NamedTemporaryFile("w+", prefix="voiced-e2e-", suffix=".log", delete=False)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("VOICED_")}
        environ.update(env or {})
        listen = f"tcp:{self.port}:interface=127.0.0.1"
        if tac:
            environ["VOICED_LISTEN"] = listen
            cmd = [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "-y", os.path.join(REPO, "voiced.tac")]
        elif daemonize:
            # twistd forks twice; the service must create its threads and channels after that.
            cmd = [os.path.join(BIN, "twistd"), f"--rundir={self.rundir}", "--pidfile=voiced.pid", "voiced",
                   "--listen", listen] + (args or [])
        else:
            cmd = [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "voiced", "--listen", listen] + (args or [])
        self.process = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, env=environ,
                                        cwd=self.rundir)

    @property
    def media_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/media"

    def get(self, path: str, port: int | None = None) -> tuple[int, bytes]:
        if port is None:
            admin_route = path.startswith(("/health", "/metrics"))
            port = self.admin_port if admin_route and self.admin_port else self.port
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str) -> dict:
        return json.loads(self.get(path)[1])

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() not in (None, 0) or (self.process.poll() == 0 and not self.daemonized):
                raise AssertionError(f"daemon exited ({self.process.returncode}):\n{self.log()}")
            try:
                if self.get("/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"daemon not ready after {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_file.name) as f:
            text = f.read()
        daemon_log = os.path.join(self.rundir, "voiced.log")
        if os.path.exists(daemon_log):
            with open(daemon_log) as f:
                text += f.read()
        return text

    def lines(self, word: str) -> list[str]:
        return [line for line in self.log().splitlines() if word in line]

    def stop(self) -> int:
        pidfile = os.path.join(self.rundir, "voiced.pid")
        if self.daemonized and os.path.exists(pidfile):
            with open(pidfile) as f:
                pid = int(f.read())
            os.kill(pid, 15)
            deadline = time.monotonic() + 20
            while os.path.exists(pidfile) and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        return self.process.returncode


def patient_client_factory(url: str) -> WebSocketClientFactory:
    """A raw test client that gives the daemon 10 s to finish a close handshake and drop the
    TCP: Autobahn's 1 s defaults turn a pause of the daemon on a busy CI host into a 1006
    (it happened; a SIGSTOP of 1.3 s reproduces it), where a test means the daemon's code."""
    factory = WebSocketClientFactory(url)
    factory.setProtocolOptions(closeHandshakeTimeout=10, serverConnectionDropTimeout=10)
    return factory


_shared: dict[str, Daemon] = {}


@functools.cache
def shared_journal(name: str) -> str:
    """A journal's path in a directory of its own, the same for every test that names it
    (the journal of a shared daemon)."""
    return os.path.join(tempfile.mkdtemp(prefix=f"voiced-e2e-{name}-"), "calls.db")


def shared_daemon(**options: Any) -> Daemon:
    """One running daemon per set of ``Daemon`` options, for the tests of a module that agree on
    them (trial has no setUpClass): the first test to ask starts it, the process's exit stops it.
    Its tests pick out their own calls (by call sid) and count log lines from where they begin.
    Only the latest is kept running (each holds a few hundred MB): tests run module by module."""
    key = json.dumps(options, sort_keys=True)
    for other in [k for k in _shared if k != key]:
        _shared.pop(other).stop()
    daemon = _shared.get(key)
    if daemon is None or daemon.process.poll() is not None:
        daemon = Daemon(**options)
        try:
            daemon.wait_ready()
        except BaseException:
            daemon.stop()
            raise
        atexit.register(daemon.stop)
        _shared[key] = daemon
    return daemon


def logged(daemon: Daemon, word: str, count: int, timeout_s: float = 5.0) -> Deferred[list[str]]:
    """The daemon's lines with ``word`` once there are ``count`` (or the deadline's): its log
    writer is a thread of its own, a moment behind what the caller saw."""
    from twisted.internet import reactor

    @inlineCallbacks
    def poll():
        deadline = time.monotonic() + timeout_s
        while len(daemon.lines(word)) < count and time.monotonic() < deadline:
            yield deferLater(reactor, 0.1, lambda: None)
        return daemon.lines(word)

    return poll()


@functools.cache
def _speech() -> Any:
    from voiced.tts.local import EspeakSynthesizer

    return EspeakSynthesizer("en-US")


def line(text: str, barge_in_ms: int | None = None) -> CallerLine:
    """``text`` as the caller says it (espeak-ng, 8 kHz mu-law)."""
    return CallerLine(audio=_speech().synthesize_blocking(text), text=text, barge_in_ms=barge_in_ms)


def caller_texts(entries: list[str]) -> list[str]:
    """What the caller said, in order, from the daemon's ``CALLER ... text='...'`` lines."""
    return [re.search(r" text=(['\"])(.*)\1$", entry).group(2) for entry in entries]


def heard_table(*lines: CallerLine) -> str:
    """A ``voiced-emulator --scripted --heard`` file of ``lines``: the emulator then gives each
    utterance the words of these lines found in its audio, in microseconds. Its Whisper mode
    takes seconds per turn when several calls share the suite's two cores, and a test about
    faults, not recognition, would fail on that latency instead of on what it checks. A
    line's words come only from its audio, so audio a retry lost shows as words missing."""
    with tempfile.NamedTemporaryFile("w", prefix="voiced-heard-", suffix=".json", delete=False) as f:
        json.dump(heard_document([(caller_line.text, caller_line.audio) for caller_line in lines]), f)
    return f.name


def constructions(daemon: Daemon) -> dict[str, float]:
    _, body = daemon.get("/metrics")
    found = re.findall(r'^voiced_constructions_total\{kind="([^"]+)"\} (\S+)$', body.decode(), re.M)
    return {kind: float(value) for kind, value in found}


class EmulatorProcess:
    """``voiced-emulator`` (Google's Speech and Text-to-Speech APIs) on a free loopback port;
    ``kill`` and ``start`` again to take it away and bring it back mid-call."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.args = list(args)
        self.log_file = tempfile.NamedTemporaryFile("w+", prefix="voiced-emulator-", suffix=".log", delete=False)
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [os.path.join(BIN, "voiced-emulator"), "--listen", f"127.0.0.1:{self.port}", *self.args],
            stdout=self.log_file, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while "listening" not in self.log() and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"emulator exited:\n{self.log()}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        with open(self.log_file.name) as f:
            return f.read()

    def google_env(self, **extra: str) -> dict[str, str]:
        return {
            "VOICED_STT": "google", "VOICED_TTS": "google", "VOICED_GOOGLE_ENDPOINT": f"127.0.0.1:{self.port}",
            "VOICED_GOOGLE_INSECURE": "1",
            # The emulator recognizes with Whisper on the same two cores as the rest of the suite:
            # on a loaded machine its final can come later than production's 1.5 s, and a partial
            # answered instead ("What time do") is a different turn. These tests are about
            # resilience, not latency.
            "VOICED_STT_FINAL_TIMEOUT_MS": "4000", **extra,
        }


def dialling_through(test: Any, twilio: Any, admin_token: str, prefix: str) -> tuple[str, dict[str, str]]:
    """Serve ``twilio`` (``tests.fakes.twilio_rest.FakeTwilio``) on loopback for the outbound tests,
    and fix the port the test's daemons listen on: the public URL voiced gives Twilio names it.
    Returns a run directory and the daemon's environment for dialling through the fake."""
    from tests.fakes.http_apps import start_server

    fake = start_server(test, twilio)
    port = free_port()
    test.patch(sys.modules[__name__], "free_port", lambda: port)
    twilio.media_url = f"ws://127.0.0.1:{port}/media"
    rundir = tempfile.mkdtemp(prefix=prefix)
    return rundir, {
        "VOICED_PUBLIC_URL": f"http://127.0.0.1:{port}", "VOICED_TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_ACCOUNT_SID": twilio.account_sid, "VOICED_TWILIO_API_BASE": fake.url("").rstrip("/"),
        "VOICED_ADMIN_TOKEN": admin_token, "VOICED_DIAL_FROM": "+15550111",
        "VOICED_JOURNAL": os.path.join(rundir, "journal.db"),
    }
