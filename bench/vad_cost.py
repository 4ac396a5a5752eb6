"""CPU per call of each voice-activity detector at N simultaneous real-time calls.

    .venv/bin/python bench/vad_cost.py                        # ~4 min: 100 and 500 calls
    .venv/bin/python bench/vad_cost.py --calls 500 --detectors silero --seconds 30

For each detector and N, a fresh Python process opens N streams of the detector
(``voiced.turns``' port) on a real reactor and feeds each a 20 ms frame of real speech
(../shared/audio/sample.wav at 8 kHz, through mu-law as a call carries it; each call
starts at another point of the clip) at real-time pace: the calls are spread over 20
timers a millisecond apart, and a timer that fires late pushes the frames it owes. After
a warm-up it measures for ``--seconds`` and prints:

  CPU per call    the process's CPU time (every thread) / audio time / N, in % of one core
  reactor share   the reactor thread's CPU / the process's: what the detector costs the
                  thread every call shares; "reactor us/frame" is the reactor thread's CPU
                  per frame above the ``null`` detector's (the bench's own pacing)
  delay           frame pushed -> its probability delivered, p50 / p99 / max ms. Silero's
                  32 ms windows make a 20 ms frame wait for the frame that completes its
                  window (0, 20 or 40 ms of audio, 22.5 ms on average) before any inference;
                  "after window" is the delay from that frame's push (batching + inference)
  backlog         audio pushed but not yet answered at the end, per call (s): above ~0.04 s
                  the detector cannot keep up, and its CPU figure is only what it got
  batches         mean windows per session.run batch (Silero)

Detectors: ``null`` (answers 0.0 at once: the baseline), ``webrtc`` (voiced's webrtcvad,
aggressiveness 2), ``silero`` (the full export in pipecat-ai's wheel: one inference
per batch of every call's windows). Numbers, never pass/fail; the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

import benchlib  # noqa: F401  (puts the repo on sys.path)
from benchlib import REPO, summarize

FRAME_BYTES = 320  # 20 ms of 8 kHz PCM16
TIMERS = 20
DEFAULT_AUDIO = os.path.join(os.path.dirname(REPO), "shared", "audio", "sample.wav")
DETECTORS = ("null", "webrtc", "silero")


class NullVoiceActivity:
    """The baseline: what the bench's timers and bookkeeping cost without a detector."""

    name = "null"
    threshold = 0.5

    def open(self, deliver: Any) -> Any:
        return _NullStream()


class _NullStream:
    def push(self, pcm16: bytes) -> float:
        return 0.0

    def close(self) -> None:
        pass


def load_frames(path: str) -> list[bytes]:
    from voiced.audio import read_wav_as_ulaw, ulaw_to_pcm16

    pcm = ulaw_to_pcm16(read_wav_as_ulaw(path))
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


class Call:
    """One stream, its frames' push times and the delays of its probabilities."""

    __slots__ = ("stream", "frames", "offset", "pushed", "push_times", "delivered", "delays", "after_window", "measuring")

    def __init__(self, frames: list[bytes], offset: int) -> None:
        self.frames, self.offset = frames, offset
        self.pushed = 0
        self.push_times: list[float] = []
        self.delivered = 0
        self.delays: list[float] = []
        self.after_window: list[float] = []
        self.measuring = False

    def push(self) -> None:
        frame = self.frames[(self.offset + self.pushed) % len(self.frames)]
        self.push_times.append(time.perf_counter())
        self.pushed += 1
        probability = self.stream.push(frame)
        if probability is not None:
            self.deliver(probability)

    def deliver(self, probability: float) -> None:
        f = self.delivered
        self.delivered += 1
        if self.measuring:
            now = time.perf_counter()
            self.delays.append(now - self.push_times[f])
            # The frame that completed frame f's 256-sample window (for a detector that
            # answers at once, f itself).
            completing = max(f, (256 * ((160 * f + 159) // 256 + 1) - 1) // 160)
            self.after_window.append(now - self.push_times[min(completing, self.pushed - 1)])


def make_detector(name: str, reactor: Any, pool: Any) -> Any:
    if name == "null":
        return NullVoiceActivity()
    if name == "webrtc":
        from voiced.turns.vad import WebRtcVoiceActivity

        return WebRtcVoiceActivity(2)
    from voiced.turns.silero import SileroVoiceActivity

    return SileroVoiceActivity(reactor, pool)


def child(detector_name: str, n: int, args: argparse.Namespace) -> dict:
    """One measurement in this process; the parent starts a fresh one per row."""
    import calls  # bench/calls.py's /proc readers
    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall
    from twisted.python.threadpool import ThreadPool

    frames = load_frames(args.audio)
    pool = ThreadPool(minthreads=1, maxthreads=1, name="vad")
    pool.start()
    detector = make_detector(detector_name, reactor, pool)
    population = [Call(frames, (i * 997) % len(frames)) for i in range(n)]
    for c in population:
        c.stream = detector.open(c.deliver)
    groups = [population[g::TIMERS] for g in range(TIMERS)]
    loops: list[LoopingCall] = []
    result: dict[str, Any] = {"detector": detector_name, "calls": n}
    marks: dict[str, float] = {}

    def tick(group: list[Call], count: int) -> None:
        for _ in range(count):  # a late timer pushes every frame it owes
            for c in group:
                c.push()

    def start_loops() -> None:
        for g, group in enumerate(groups):
            loop = LoopingCall.withCount(lambda count, group=group: tick(group, count))
            loops.append(loop)
            reactor.callLater(g * 0.020 / TIMERS, loop.start, 0.020, now=True)

    def begin() -> None:
        for c in population:
            c.measuring = True
        marks.update(wall=time.monotonic(), cpu=time.process_time(), reactor=time.thread_time(),
                     pushed=sum(c.pushed for c in population))
        marks["threads"] = calls.thread_cpu(os.getpid())  # type: ignore[assignment]
        if hasattr(detector, "runner"):
            marks.update(batches=detector.runner.batches, items=detector.runner.items)

    def end() -> None:
        wall = time.monotonic() - marks["wall"]
        cpu = time.process_time() - marks["cpu"]
        reactor_cpu = time.thread_time() - marks["reactor"]
        frames_pushed = sum(c.pushed for c in population) - marks["pushed"]
        threads_now = calls.thread_cpu(os.getpid())
        by_thread: dict[str, float] = {}
        for key, seconds in threads_now.items():
            tid, name = key.split(" ", 1)
            name = "reactor" if int(tid) == os.getpid() else name
            by_thread[name] = by_thread.get(name, 0.0) + seconds - marks["threads"].get(key, 0.0)  # type: ignore[union-attr]
        for loop in loops:
            loop.stop()
        for c in population:
            c.stream.close()
        backlog_s = sum(c.pushed - c.delivered for c in population) / n * 0.020
        delays = [d for c in population for d in c.delays]
        after = [d for c in population for d in c.after_window]
        result.update(
            wall_s=wall, cpu_s=cpu, backlog_s=backlog_s, reactor_cpu_s=reactor_cpu, frames=frames_pushed,
            audio_s_per_call=frames_pushed / n * 0.020,
            delay_ms={k: v * 1000 if k != "n" else v for k, v in summarize(delays).items()},
            after_window_ms={k: v * 1000 if k != "n" else v for k, v in summarize(after).items()},
            by_thread={k: v / wall * 100 for k, v in by_thread.items()},
        )
        if hasattr(detector, "runner"):
            batches = detector.runner.batches - marks["batches"]
            result["mean_batch"] = (detector.runner.items - marks["items"]) / max(1, batches)
            detector.stop()
        pool.stop()
        reactor.stop()

    reactor.callWhenRunning(start_loops)
    reactor.callLater(args.warmup_s, begin)
    reactor.callLater(args.warmup_s + args.seconds, end)
    reactor.run()
    return result


def run_child(detector: str, n: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", f"{detector}:{n}", "--seconds", str(args.seconds),
           "--warmup-s", str(args.warmup_s), "--audio", args.audio]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{detector} at {n} calls failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(r: dict, baseline: dict | None) -> str:
    audio_s = r["audio_s_per_call"]
    per_call = r["cpu_s"] / audio_s / r["calls"] * 100
    extra = ""
    if baseline is not None:
        extra_us = (r["reactor_cpu_s"] - baseline["reactor_cpu_s"] * r["frames"] / baseline["frames"]) / r["frames"] * 1e6
        extra = f"{extra_us:.1f}"
    d, a = r["delay_ms"], r["after_window_ms"]
    batch = f"{r['mean_batch']:.0f}" if "mean_batch" in r else "-"
    return (f"| {r['detector']} | {r['calls']} | {per_call:.3f} % | {r['cpu_s'] / r['wall_s'] * 100:.0f} % "
            f"| {r['reactor_cpu_s'] / max(r['cpu_s'], 1e-9) * 100:.0f} % | {extra} "
            f"| {d['p50']:.1f} / {d['p99']:.1f} / {d['max']:.0f} | {a['p50']:.1f} / {a['p99']:.1f} / {a['max']:.0f} "
            f"| {r['backlog_s']:.2f} | {batch} |")


HEADER = ("| detector | calls | CPU per call (% of a core) | process CPU | reactor share | reactor us/frame above null "
          "| delay p50 / p99 / max ms | after window p50 / p99 / max ms | backlog s | mean batch |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", default="100,500", help="comma-separated N (default 100,500)")
    p.add_argument("--detectors", default=",".join(DETECTORS), help=f"comma-separated, of {', '.join(DETECTORS)}")
    p.add_argument("--seconds", type=float, default=20.0, help="measured audio time per row (default 20)")
    p.add_argument("--warmup-s", type=float, default=3.0, help="before measuring (default 3)")
    p.add_argument("--audio", default=DEFAULT_AUDIO, help="a WAV of real speech (default ../shared/audio/sample.wav)")
    p.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        name, n = args.child.split(":")
        print(json.dumps(child(name, int(n), args)))
        return 0
    import onnxruntime

    print(f"# vad_cost: {os.cpu_count()} cores, Python {platform.python_version()}, onnxruntime "
          f"{onnxruntime.__version__}, load average {os.getloadavg()[0]:.1f} at start; "
          f"{args.seconds:g} s measured after {args.warmup_s:g} s, audio {os.path.relpath(args.audio)}", flush=True)
    rows = []
    for n in (int(c) for c in args.calls.split(",")):
        baseline = None
        for detector in args.detectors.split(","):
            r = run_child(detector, n, args)
            rows.append(r)
            baseline = r if detector == "null" else baseline
            busy = sorted(r["by_thread"].items(), key=lambda kv: -kv[1])
            print(row(r, baseline), " threads: " + ", ".join(f"{k} {v:.1f} %" for k, v in busy if v >= 0.5),
                  flush=True)
    print()
    print(HEADER)
    baselines = {r["calls"]: r for r in rows if r["detector"] == "null"}
    for r in rows:
        print(row(r, baselines.get(r["calls"])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
