"""Does a long recorded call grow memory? Two ways to ask, RSS printed every minute.

**Sped up (default):** in this process, ``--calls`` recorded calls of ``--minutes`` of call
time each go through the real recording path (a ``Timeline`` per call, ``CallRecording``,
the one ``RecordingWriter`` thread, the WAV files) on a ``Clock`` that runs as fast as
the disk takes it: the caller's 20 ms frames, a bot reply every 10 s (cut by a clear
every third one). A call on a real daemon cannot be sped up (its media-flood guard
closes a stream faster than real time), so this measures the recording's own memory:
RSS after each minute of call time, the files' sizes and the writer's drops.

**Real time (``--real-time``):** a daemon with ``--recordings`` (local engines) and one
``voiced-call`` call of ``--minutes`` minutes asking questions; the daemon's RSS
(``/proc/PID/status`` VmRSS) every minute of the call.

    .venv/bin/python bench/recording_rss.py --minutes 30 --calls 20
    .venv/bin/python bench/recording_rss.py --real-time --minutes 30
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import sys
import tempfile
import time
import wave

import benchlib  # noqa: F401  (puts the repository on sys.path)
from twisted.internet import defer, task

from voiced.audio import pcm16_to_ulaw
from voiced.recording.recordings import Recordings
from voiced.recording.writer import RecordingWriter

FRAME_S = 0.02
REPLY_EVERY_S = 10.0


def rss_kb(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise KeyError("VmRSS")


class SimulatedCall:
    """What Recordings.open reads of a call."""

    def __init__(self, call_id: str, started_at: float) -> None:
        self.call_id = call_id
        self.record = type("Record", (), {"started_at": started_at, "recording": ""})()


async def sped_up(reactor, minutes: float, calls: int) -> int:
    directory = tempfile.mkdtemp(prefix="voiced-recording-bench-")
    clock = task.Clock()
    recordings = Recordings(directory, 0, clock, writer=RecordingWriter(reactor))
    recordings.start()
    taps = [recordings.open(SimulatedCall(f"CAbench{n}", clock.seconds())) for n in range(calls)]
    voice = pcm16_to_ulaw(struct.pack("<h", 4000) * 160)  # a 20 ms frame that is not silence
    reply = voice * 250  # 5 s of bot audio
    started, baseline = time.monotonic(), rss_kb()
    print(f"{calls} calls x {minutes:g} min of call time, recorded to {directory}; RSS at start {baseline} kB")
    frames = round(minutes * 60 / FRAME_S)
    per_reply = round(REPLY_EVERY_S / FRAME_S)
    for n in range(1, frames + 1):
        clock.advance(FRAME_S)
        for tap in taps:
            tap.caller(voice)
        if n % per_reply == 0:
            for tap in taps:
                tap.bot(reply)
        if n % per_reply == per_reply // 4 and (n // per_reply) % 3 == 0:
            for tap in taps:
                tap.clear()  # a barge-in 2.5 s into every third reply
        if n % 50 == 0:  # each call second: let the writer thread have the disk
            while recordings.writer.pending_bytes > 4 * 1024 * 1024:
                await task.deferLater(reactor, 0.005, lambda: None)
        if n % 3000 == 0:
            now_kb = rss_kb()
            print(f"  minute {n // 3000:3d}: RSS {now_kb} kB  (+{now_kb - baseline} kB)  "
                  f"queued {recordings.writer.pending_bytes // 1024} kB  wall {time.monotonic() - started:.1f} s")
    for tap in taps:
        tap.close()
    await recordings.stop()
    sizes = [os.path.getsize(tap.path) for tap in taps]
    with wave.open(taps[0].path) as w:
        seconds = w.getnframes() / w.getframerate()
    end_kb = rss_kb()
    print(f"done in {time.monotonic() - started:.1f} s wall: {len(taps)} files of {sizes[0] / 1e6:.1f} MB "
          f"({seconds / 60:.1f} min each), writer dropped {recordings.writer.dropped_bytes} bytes; "
          f"RSS {end_kb} kB (+{end_kb - baseline} kB over the start)")
    for tap in taps:
        os.remove(tap.path)  # gigabytes with many calls: the numbers are what was asked
    return 0


async def real_time(reactor, minutes: float) -> int:
    from tests.e2e.daemon import Daemon
    from voiced.caller.client import place_call
    from voiced.caller.session import CallerLine
    from voiced.tts.local import EspeakSynthesizer

    speech = EspeakSynthesizer("en-US")
    questions = ["What time do you open?", "Where are you located?"]
    count = max(2, round(minutes * 60 / 9.5))
    lines = [CallerLine(audio=speech.synthesize_blocking(questions[i % 2]), text=questions[i % 2])
             for i in range(count)]
    lines.append(CallerLine(audio=speech.synthesize_blocking("Goodbye."), text="Goodbye."))
    directory = tempfile.mkdtemp(prefix="voiced-recording-bench-")
    daemon = Daemon(args=["--recordings", directory, "--max-call-s", str(int(minutes * 60 * 2 + 120))])
    try:
        daemon.wait_ready()
        pid = daemon.process.pid
        print(f"daemon pid {pid} recording to {directory}; RSS before the call {rss_kb(pid)} kB; "
              f"placing a call of {len(lines)} lines (~{minutes:g} min)")
        started = time.monotonic()

        def sample() -> None:
            print(f"  minute {(time.monotonic() - started) / 60:5.1f}: daemon RSS {rss_kb(pid)} kB", flush=True)

        sampler = task.LoopingCall(sample)
        sampler.start(60.0, now=True)
        report = await place_call(reactor, daemon.media_url, lines, reply_timeout_s=20,
                                  max_duration_s=minutes * 60 * 2 + 120)
        sampler.stop()
        await task.deferLater(reactor, 1.0, lambda: None)
        print(f"call lasted {report.duration_s / 60:.1f} min; bot hung up: {report.hung_up_by_bot}; "
              f"daemon RSS after {rss_kb(pid)} kB")
        finished = [line for line in daemon.lines(" RECORDING call=") if report.call_sid in line]
        print(finished[-1] if finished else "no RECORDING line")
        path = re.search(r"path=(\S+)", finished[-1]).group(1) if finished else ""
        if path:
            print(f"file {path}: {os.path.getsize(path) / 1e6:.1f} MB")
    finally:
        daemon.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--calls", type=int, default=1, help="sped up: calls recorded at once")
    parser.add_argument("--real-time", action="store_true", help="one real call through a daemon, in real time")
    args = parser.parse_args()
    if args.real_time:
        return task.react(lambda reactor: defer.Deferred.fromCoroutine(real_time(reactor, args.minutes)))
    return task.react(lambda reactor: defer.Deferred.fromCoroutine(sped_up(reactor, args.minutes, args.calls)))


if __name__ == "__main__":
    sys.exit(main())
