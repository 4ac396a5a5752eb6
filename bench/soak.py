"""Soak: many short calls in a row against one real daemon; resources must stay flat.

Starts ``twistd -n voiced`` with a journal (tests/e2e/daemon.py), places one warm-up
call, then ``--calls`` short calls one after another over raw WebSockets: each sends
``connected`` and ``start``, waits for the greeting's first audio, sends half a second
of the caller's silence and ``stop``. A fraction (``--malformed``) also sends garbage
(not JSON, bad base64, partial frames, another streamSid, a repeated chunk) before its
``stop``; another (``--cut``) drops the TCP connection mid-greeting without a close.
Reports the daemon's threads, open file descriptors and RSS, and the journal's rows,
before and after, and whether every call that started has its record. Exit status 1
when a figure is outside its bound (threads +2, fds +8, RSS +40 MB, a record missing).

    .venv/bin/python bench/soak.py --calls 1000
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from typing import Any

import benchlib  # noqa: F401  (puts the repo on sys.path)
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater, react

from tests.e2e.daemon import Daemon

SILENCE = base64.b64encode(b"\xff" * 160).decode()
BOUNDS = {"threads": 2, "fds": 8, "rss_mb": 40}


def daemon_figures(pid: int, journal: str) -> dict[str, Any]:
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    finally:
        conn.close()
    return {"threads": int(status["Threads"]), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1), "journal_rows": rows}


class SoakCaller(WebSocketClientProtocol):
    def onOpen(self) -> None:
        f = self.factory
        self.seq = 0
        self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.send({"event": "start", "streamSid": f.stream_sid, "start": {
            "accountSid": "ACsoak", "streamSid": f.stream_sid, "callSid": f.call_sid, "tracks": ["inbound"],
            "customParameters": {"From": "+15550100", "To": "+15550199"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
        self.heard = False

    def send(self, message: dict[str, Any]) -> None:
        if message["event"] != "connected":
            self.seq += 1
            message["sequenceNumber"] = str(self.seq)
        self.sendMessage(json.dumps(message).encode(), isBinary=False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.heard:
            return
        self.heard = True  # the greeting started: the call is in progress
        f = self.factory
        if f.kind == "cut":
            self.transport.abortConnection()
            return
        for chunk in range(1, 26):
            self.send({"event": "media", "streamSid": f.stream_sid,
                       "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20),
                                 "payload": SILENCE}})
        if f.kind == "malformed":
            for garbage in (b"{not json", b'{"event":"media","media":{"payload":"%%%"}}',
                            json.dumps({"event": "media", "streamSid": f.stream_sid,
                                        "media": {"payload": base64.b64encode(b"\xff" * 77).decode()}}).encode(),
                            json.dumps({"event": "mark", "streamSid": "MZother", "mark": {"name": "x"}}).encode(),
                            json.dumps({"event": "media", "streamSid": f.stream_sid,
                                        "media": {"chunk": "3", "payload": SILENCE}}).encode()):
                self.sendMessage(garbage, isBinary=False)
        self.send({"event": "stop", "streamSid": f.stream_sid, "stop": {"callSid": f.call_sid}})

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.done.called:
            self.factory.done.callback(self.heard)


def one_call(url: str, n: int, kind: str) -> Deferred[bool]:
    factory = WebSocketClientFactory(url)
    factory.protocol = SoakCaller
    factory.call_sid, factory.stream_sid, factory.kind = f"CAsoak{n:06d}", f"MZsoak{n:06d}", kind
    factory.done = Deferred()
    factory.setProtocolOptions(openHandshakeTimeout=10, closeHandshakeTimeout=2)
    connectWS(factory)
    return factory.done


async def soak(args: argparse.Namespace) -> int:
    journal = os.path.join(tempfile.mkdtemp(prefix="voiced-soak-"), "calls.db")
    daemon = Daemon(env={"VOICED_JOURNAL": journal})
    try:
        daemon.wait_ready()
        pid = daemon.process.pid
        await one_call(daemon.media_url, 0, "normal")  # warm-up: first-call allocations
        await deferLater(reactor, 1.0, lambda: None)
        before = daemon_figures(pid, journal)
        rng = random.Random(args.seed)
        kinds = {"normal": 0, "malformed": 0, "cut": 0}
        started = 0
        t0 = time.monotonic()
        for n in range(1, args.calls + 1):
            roll = rng.random()
            kind = "cut" if roll < args.cut else "malformed" if roll < args.cut + args.malformed else "normal"
            kinds[kind] += 1
            started += bool(await one_call(daemon.media_url, n, kind))
            if n % 100 == 0:
                print(f"  {n} calls, {time.monotonic() - t0:.0f} s: {daemon_figures(pid, journal)}", flush=True)
        await deferLater(reactor, 2.0, lambda: None)  # the last commits
        after = daemon_figures(pid, journal)
        elapsed = time.monotonic() - t0
        records = after["journal_rows"] - before["journal_rows"]
        alive = daemon.get("/health")[0] == 200
    finally:
        daemon.stop()
    print(f"{args.calls} calls in {elapsed:.0f} s ({kinds}); {started} started")
    print(f"before: {before}")
    print(f"after:  {after}")
    problems = [f"{k} grew by {after[k] - before[k]:g} (bound {bound})" for k, bound in BOUNDS.items()
                if after[k] - before[k] > bound]
    if records != started:
        problems.append(f"{started} calls started but {records} records were committed")
    if not alive:
        problems.append("the daemon's /health did not answer 200")
    print("within bounds; every call has its record" if not problems else "OUT OF BOUNDS: " + "; ".join(problems))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--malformed", type=float, default=0.1, help="fraction of calls that send garbage")
    parser.add_argument("--cut", type=float, default=0.1, help="fraction of calls dropped mid-greeting")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)
    status: list[int] = []

    async def run(_reactor: Any) -> None:
        status.append(await soak(args))

    react(lambda r: Deferred.fromCoroutine(run(r)))
    return status[0] if status else 1


if __name__ == "__main__":
    sys.exit(main())
