"""``python -m voiced.demo``: start the daemon on the local engines and place one call.

It runs exactly what an operator would: ``twistd -n voiced`` on a free loopback
port, waits for /health/ready, then ``voiced-call`` says a few lines to it and
prints the conversation and the latencies; the daemon's TURN lines follow.
It also prints the web console's URL; run from a terminal, the daemon then stays
up so that a person can press "Call" there and talk to the bot (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

DEFAULT_LINES = ["What time do you open?", "Thank you, goodbye."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, daemon: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"voiced exited with status {daemon.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("voiced did not become ready in time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--say", action="append", help="a caller line (repeatable)")
    parser.add_argument("--out", default="demo-call.wav", help="where to save what the caller heard")
    parser.add_argument("--stay", action=argparse.BooleanOptionalAction, default=None,
                        help="keep the daemon running for the console after the call (default: when run from a terminal)")
    args = parser.parse_args(argv)
    stay = sys.stdin.isatty() and sys.stdout.isatty() if args.stay is None else args.stay
    port = free_port()
    bindir = os.path.dirname(sys.executable)
    log_fd, log_path = tempfile.mkstemp(prefix="voiced-demo-", suffix=".log")
    os.close(log_fd)
    with open(log_path, "w") as log_file:
        daemon = subprocess.Popen(
            [os.path.join(bindir, "twistd"), "-n", "--pidfile=", "voiced", "--listen",
             f"tcp:{port}:interface=127.0.0.1"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
        try:
            print(f"voiced is starting on 127.0.0.1:{port} (log: {log_path}) ...", flush=True)
            wait_ready(port, daemon)
            console = f"http://127.0.0.1:{port}/console/phone"
            print(f"The web console: {console} (press Call to talk to the bot; /console/calls lists the calls)",
                  flush=True)
            call = [os.path.join(bindir, "voiced-call"), f"ws://127.0.0.1:{port}/media", "--out", args.out,
                    "--daemon-log", log_path]  # the bot's own words, should the console not tell them
            for line in args.say or DEFAULT_LINES:
                call += ["--say", line]
            status = subprocess.call(call)
            if stay:
                time.sleep(0.5)  # the daemon's log writer is a thread: let it catch up
                print_turn_lines(log_path)
                print(f"\nvoiced is still running: open {console} in a browser on this machine and press Call.\n"
                      "Ctrl-C stops it.", flush=True)
                # A SIGTERM (not only Ctrl-C) must still stop the daemon in ``finally``.
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(status))
                try:
                    daemon.wait()
                except KeyboardInterrupt:
                    print()
        finally:
            daemon.terminate()
            daemon.wait(timeout=15)
    if not stay:
        print_turn_lines(log_path)
    return status


def print_turn_lines(log_path: str) -> None:
    print("\nThe daemon's per-turn measurements:")
    with open(log_path) as f:
        for line in f:
            if " TURN " in line or "APP_START" in line:
                print("  " + line.rstrip())


if __name__ == "__main__":
    sys.exit(main())
