"""Concurrent calls against a real daemon: latencies, CPU per call-minute, memory per call.

Starts ``twistd -n voiced`` on a free loopback port (tests/e2e/daemon.py), waits for
/health/ready, places one warm-up call (not counted: Whisper's first inference and
first-call allocations), then N concurrent calls with voiced.caller.client.place_call,
each saying the same lines (espeak-ng) as ``--carrier`` (Twilio by default). It reports:
  - the daemon's TURN lines (p50/p90/max of STT_FINAL_MS, TTS_READY_MS,
    TOTAL_LATENCY_MS, PLAYBACK_START_MS) and the shares derived from them;
  - what the callers observed: speech end -> first bot audio / bot audio playing,
    and the worst lateness of a caller frame against its 20 ms schedule;
  - the daemon's CPU seconds per call-minute (/proc/<pid>/stat utime+stime), split
    into the reactor thread and the worker threads (Whisper, espeak, log writer);
  - its peak RSS (VmHWM) and RSS growth per call (VmRSS before/after the N calls);
  - voiced_constructions_total from /metrics before and after (it must stay flat).
The callers run in this process on the same (shared) machine: their CPU is printed too.
Numbers, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Any

import benchlib  # noqa: F401  (puts the repo on sys.path)
from benchlib import DEFAULT_LINES, summarize, synthesize_lines
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import LoopingCall, deferLater

from tests.e2e.daemon import Daemon
from voiced.caller.carriers import DEFAULT_CARRIER, carrier_names, carrier_wire
from voiced.caller.client import place_call
from voiced.caller.report import CallReport, percentiles, summary_dict
from voiced.caller.session import CallerLine

TURN_FIELDS = ("STT_FINAL_MS", "TTS_READY_MS", "TOTAL_LATENCY_MS", "PLAYBACK_START_MS")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- /proc ----------------------------------------------------------------------------------
def cpu_seconds(stat_path: str) -> float:
    """utime + stime of a process or thread, from its /proc stat file."""
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each live thread, keyed "tid name"."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            out[f"{tid} {name}"] = cpu_seconds(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            pass  # the thread ended meanwhile
    return out


@dataclass
class Snapshot:
    at: float
    cpu_s: float  # the whole process, exited threads included
    reactor_cpu_s: float  # the main thread: twistd -n runs the reactor there
    rss_kb: int
    hwm_kb: int
    threads: int
    per_thread: dict[str, float]

    @classmethod
    def take(cls, pid: int) -> "Snapshot":
        return cls(time.monotonic(), cpu_seconds(f"/proc/{pid}/stat"), cpu_seconds(f"/proc/{pid}/task/{pid}/stat"),
                   status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM"), status_kb(pid, "Threads"), thread_cpu(pid))


class Sampler:
    """Once a second: the daemon's CPU use over the last second and its RSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu_pct: list[float] = []
        self.rss_kb: list[int] = []
        self._last = Snapshot.take(pid)
        self._loop = LoopingCall(self._sample)

    def start(self) -> None:
        self._loop.start(1.0, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _sample(self) -> None:
        now = Snapshot.take(self.pid)
        elapsed = now.at - self._last.at
        if elapsed > 0:
            self.cpu_pct.append(100 * (now.cpu_s - self._last.cpu_s) / elapsed)
        self.rss_kb.append(now.rss_kb)
        self._last = now


# ---- the daemon's log and metrics -------------------------------------------------------------
_TURN = re.compile(r" TURN call=(\S+) turn=(\d+) (.*)$")


def turn_lines(log: str, call_sids: set[str]) -> list[dict[str, int | None]]:
    turns = []
    for line in log.splitlines():
        m = _TURN.search(line)
        if m and m.group(1) in call_sids:
            values = dict(kv.split("=", 1) for kv in m.group(3).split())
            turns.append({k: (None if v == "-" else int(v)) for k, v in values.items()})
    return turns


def eou_silence_ms(log: str) -> int | None:
    m = re.search(r"APP_START .* eou_silence_ms=(\d+)", log)
    return int(m.group(1)) if m else None


def constructions(daemon: Daemon) -> dict[str, float]:
    _, body = daemon.get("/metrics")
    found = re.findall(r'^voiced_constructions_total\{kind="([^"]+)"\} (\S+)$', body.decode(), re.M)
    return {kind: float(value) for kind, value in found}


# ---- the calls ----------------------------------------------------------------------------------
@dataclass
class Run:
    warmup: list[CallReport]
    reports: list[CallReport]
    before: Snapshot
    after: Snapshot
    sampler: Sampler
    metrics_before: dict[str, float]
    metrics_mid: dict[str, float]
    wall_s: float
    rss_after_rounds: list[int]


def carrier_url(daemon: Daemon, args: argparse.Namespace) -> str:
    """Where ``--carrier``'s calls go: the daemon's WebSocket path for it, or its TCP port."""
    wire = carrier_wire(args.carrier)
    if wire.transport == "tcp":
        return f"tcp://127.0.0.1:{args.tcp_port}"
    return f"ws://127.0.0.1:{daemon.port}{wire.path}"


async def place_calls(reactor: Any, url: str, lines: list[CallerLine], count: int, stagger_ms: int,
                      pause_ms: int, carrier: str = DEFAULT_CARRIER) -> list[CallReport]:
    def one(i: int) -> Deferred[CallReport]:
        if stagger_ms and i:
            return deferLater(reactor, i * stagger_ms / 1000, place_call, reactor, url, lines, pause_ms=pause_ms,
                              carrier=carrier)
        return place_call(reactor, url, lines, pause_ms=pause_ms, carrier=carrier)

    return await gatherResults([one(i) for i in range(count)])


async def run(reactor: Any, daemon: Daemon, lines: list[CallerLine], args: argparse.Namespace) -> Run:
    pid = daemon.process.pid
    metrics_before = constructions(daemon)
    url = carrier_url(daemon, args)
    warmup = []
    if not args.no_warmup_call:
        warmup = await place_calls(reactor, url, lines[:1], 1, 0, args.pause_ms, args.carrier)
    metrics_mid = constructions(daemon)
    sampler = Sampler(pid)
    before = Snapshot.take(pid)
    sampler.start()
    reports: list[CallReport] = []
    rss_after_rounds: list[int] = []
    for _ in range(args.rounds):
        reports += await place_calls(reactor, url, lines, args.calls, args.stagger_ms, args.pause_ms, args.carrier)
        rss_after_rounds.append(Snapshot.take(pid).rss_kb)
    sampler.stop()
    after = Snapshot.take(pid)
    return Run(warmup, reports, before, after, sampler, metrics_before, metrics_mid, after.at - before.at,
               rss_after_rounds)


def drive(daemon: Daemon, lines: list[CallerLine], args: argparse.Namespace) -> Run:
    from twisted.internet import reactor

    outcome: dict[str, Any] = {}

    def start() -> None:
        d = Deferred.fromCoroutine(run(reactor, daemon, lines, args))
        d.addBoth(lambda result: outcome.setdefault("result", result))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    result = outcome.get("result")
    if not isinstance(result, Run):
        raise SystemExit(f"calls: the run failed: {getattr(result, 'getTraceback', lambda: result)()}")
    return result


# ---- output ---------------------------------------------------------------------------------
def fmt(p: dict[str, Any], unit: str = "ms") -> str:
    if not p.get("n"):
        return "(none)"
    return f"p50 {p['p50']:>6.0f}  p90 {p['p90']:>6.0f}  max {p['max']:>6.0f} {unit}  (n={p['n']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10, help="concurrent calls (10)")
    parser.add_argument("--stagger-ms", type=int, default=0, help="start call i at i x N ms (0: all at once)")
    parser.add_argument("--daemon-args", default="", help='extra twistd voiced options, e.g. "--eou-silence-ms 400"')
    parser.add_argument("--daemon-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the daemon (repeatable), e.g. OPENBLAS_NUM_THREADS=1")
    parser.add_argument("--say", action="append", help="caller lines (default: the demo's two lines)")
    parser.add_argument("--carrier", default=DEFAULT_CARRIER, choices=carrier_names(),
                        help=f"the carrier the callers speak: {', '.join(carrier_names())} (default {DEFAULT_CARRIER})")
    parser.add_argument("--tcp-port", type=int, default=0,
                        help="a TCP carrier's port on the daemon (its listen option goes in --daemon-args)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="place the N calls this many times in a row (RSS after each round shows a leak) (1)")
    parser.add_argument("--pause-ms", type=int, default=400, help="caller pause after the bot stops (400)")
    parser.add_argument("--no-warmup-call", action="store_true", help="measure from the very first call")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    parser.add_argument("--keep-log", action="store_true", help="keep the daemon's log file and print its path")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.rounds < 1:
        parser.error("--calls and --rounds must be at least 1")
    if carrier_wire(args.carrier).transport == "tcp" and not args.tcp_port:
        parser.error(f"--carrier {args.carrier} speaks plain TCP: give --tcp-port and the daemon's listen option")

    texts = args.say or list(DEFAULT_LINES)
    lines = [CallerLine(audio, text) for audio, text in zip(synthesize_lines(texts), texts)]
    started = time.monotonic()
    env = dict(item.split("=", 1) for item in args.daemon_env)
    daemon = Daemon(env=env, args=shlex.split(args.daemon_args))
    try:
        daemon.wait_ready()
        ready_s = time.monotonic() - started
        at_ready = Snapshot.take(daemon.process.pid)
        caller_cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        result = drive(daemon, lines, args)
        caller_cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        metrics_after = constructions(daemon)
        time.sleep(0.5)  # the daemon writes its log on a thread: let the last TURN lines land
        log = daemon.log()
    finally:
        daemon.stop()
        if not args.keep_log:
            os.unlink(daemon.log_file.name)

    reports = result.reports
    sids = {r.call_sid for r in reports}
    turns = turn_lines(log, sids)
    eou_ms = eou_silence_ms(log)
    call_minutes = sum(r.duration_s for r in reports) / 60
    cpu_s = result.after.cpu_s - result.before.cpu_s
    reactor_s = result.after.reactor_cpu_s - result.before.reactor_cpu_s
    caller = summary_dict(reports)
    out: dict[str, Any] = {
        "calls": args.calls,
        "rounds": args.rounds,
        "stagger_ms": args.stagger_ms,
        "daemon_args": args.daemon_args,
        "daemon_env": args.daemon_env,
        "lines": texts,
        "daemon_ready_s": round(ready_s, 2),
        "completed": caller["completed"],
        "errors": sorted({e for r in reports for e in r.errors}),
        "wall_s": round(result.wall_s, 1),
        "call_minutes": round(call_minutes, 2),
        "turn_lines": len(turns),
        "daemon": {name: percentiles(t[name] for t in turns if t.get(name) is not None) for name in TURN_FIELDS},
        "caller": {k: caller[k] for k in ("first_reply_audio_ms", "playback_start_ms", "max_send_lag_ms")},
        "cpu_s": round(cpu_s, 2),
        "cpu_s_per_call_minute": round(cpu_s / call_minutes, 3) if call_minutes else None,
        "reactor_cpu_s_per_call_minute": round(reactor_s / call_minutes, 3) if call_minutes else None,
        "cpu_pct_1s": summarize(result.sampler.cpu_pct, (0.5, 0.9)) if result.sampler.cpu_pct else {},
        "caller_cpu_s": round((caller_cpu1.ru_utime + caller_cpu1.ru_stime)
                              - (caller_cpu0.ru_utime + caller_cpu0.ru_stime), 2),
        "rss_mb": {
            "at_ready": round(at_ready.rss_kb / 1024, 1),
            "before_calls": round(result.before.rss_kb / 1024, 1),
            "after_calls": round(result.after.rss_kb / 1024, 1),
            "peak_during_calls": round(max(result.sampler.rss_kb or [result.after.rss_kb]) / 1024, 1),
            "hwm": round(result.after.hwm_kb / 1024, 1),
        },
        "rss_growth_kb_per_call": round((result.after.rss_kb - result.before.rss_kb) / len(reports), 1),
        "rss_mb_after_each_round": [round(kb / 1024, 1) for kb in result.rss_after_rounds],
        "threads": {"before_calls": result.before.threads, "after_calls": result.after.threads},
        "constructions": {"at_ready": result.metrics_before, "after_warmup": result.metrics_mid,
                          "after_calls": metrics_after},
        "warmup_call": summary_dict(result.warmup) if result.warmup else None,
    }
    pid = daemon.process.pid
    busiest = sorted(((k, v - result.before.per_thread.get(k, 0.0)) for k, v in result.after.per_thread.items()),
                     key=lambda kv: -kv[1])
    out["thread_cpu_s"] = {k: round(v, 2) for k, v in busiest}
    if args.rounds > 1:
        first = result.rss_after_rounds[0]
        out["rss_growth_kb_per_call_after_round_1"] = round(
            (result.rss_after_rounds[-1] - first) / (len(reports) - args.calls), 1)
    derived = {
        "post_final_ms": percentiles(t["TOTAL_LATENCY_MS"] - t["STT_FINAL_MS"] for t in turns
                                     if t.get("TOTAL_LATENCY_MS") is not None and t.get("STT_FINAL_MS") is not None),
        "mark_echo_ms": percentiles(t["PLAYBACK_START_MS"] - t["TOTAL_LATENCY_MS"] for t in turns
                                    if t.get("PLAYBACK_START_MS") is not None
                                    and t.get("TOTAL_LATENCY_MS") is not None),
    }
    if eou_ms is not None:
        derived["stt_after_eou_ms"] = percentiles(t["STT_FINAL_MS"] - eou_ms for t in turns
                                                  if t.get("STT_FINAL_MS") is not None)
    out["derived"] = derived

    print(f"calls: {args.calls} concurrent calls x {args.rounds} round(s), stagger {args.stagger_ms} ms, daemon args {args.daemon_args!r}; "
          f"lines {texts}")
    print(f"  daemon ready after {ready_s:.1f} s; {caller['completed']}/{args.calls} calls completed; "
          f"{len(turns)} TURN lines; {call_minutes:.2f} call-minutes in {result.wall_s:.1f} s")
    if out["errors"]:
        print(f"  caller errors: {out['errors']}")
    if result.warmup:
        w = out["warmup_call"]["first_reply_audio_ms"]
        print(f"  warm-up call (not counted): speech end -> first bot audio {fmt(w)}")
    print("\nDaemon TURN lines")
    for name in TURN_FIELDS:
        print(f"  {name:28} {fmt(out['daemon'][name])}")
    print("  derived per turn:")
    if "stt_after_eou_ms" in derived:
        print(f"    {'STT_FINAL - eou silence':26} {fmt(derived['stt_after_eou_ms'])}   "
              f"(Whisper queue + inference + thread hop; eou_silence_ms={eou_ms})")
    print(f"    {'TOTAL - STT_FINAL':26} {fmt(derived['post_final_ms'])}   (agent + TTS + send, after the final)")
    print(f"    {'PLAYBACK_START - TOTAL':26} {fmt(derived['mark_echo_ms'])}   (loopback + caller's mark echo)")
    print("\nWhat the callers observed")
    print(f"  {'speech end -> first audio':28} {fmt(caller['first_reply_audio_ms'])}")
    print(f"  {'speech end -> audio playing':28} {fmt(caller['playback_start_ms'])}")
    lags = summarize((r.max_send_lag_ms for r in reports), (0.5, 0.9))
    out["caller"]["send_lag_ms_per_call_worst"] = lags
    print(f"  {'worst frame send lag':28} {caller['max_send_lag_ms']:.1f} ms (each call's worst: p50 {lags['p50']:.1f} "
          f"ms, p90 {lags['p90']:.1f} ms; the callers share the machine with the daemon)")
    print(f"\nDaemon resources (pid {pid})")
    cpu = out["cpu_pct_1s"]
    print(f"  CPU: {cpu_s:.2f} s over the calls = {out['cpu_s_per_call_minute']} s per call-minute "
          f"(reactor thread {out['reactor_cpu_s_per_call_minute']} s, workers "
          f"{(cpu_s - reactor_s) / call_minutes:.3f} s)" if call_minutes else f"  CPU: {cpu_s:.2f} s")
    if cpu:
        print(f"  CPU per 1 s sample: p50 {cpu['p50']:.0f}%  p90 {cpu['p90']:.0f}%  max {cpu['max']:.0f}% of one core "
              f"(machine: {os.cpu_count()} cores, shared)")
    rss = out["rss_mb"]
    print(f"  RSS: {rss['at_ready']} MB at ready, {rss['before_calls']} MB before the calls, "
          f"{rss['after_calls']} MB after, peak sampled {rss['peak_during_calls']} MB, VmHWM {rss['hwm']} MB; "
          f"growth {out['rss_growth_kb_per_call']} kB per call")
    if args.rounds > 1:
        print(f"  RSS after each round of {args.calls} calls: {out['rss_mb_after_each_round']} MB; growth after "
              f"the first round {out['rss_growth_kb_per_call_after_round_1']} kB per call")
    print(f"  threads: {result.before.threads} before the calls, {result.after.threads} after; "
          f"CPU seconds per thread over the calls (tid name; {pid} is the reactor): "
          + ", ".join(f"{k} {v:.2f}" for k, v in busiest if v >= 0.01))
    flat = result.metrics_before == metrics_after
    print(f"  voiced_constructions_total {'flat' if flat else 'CHANGED'}: at ready {result.metrics_before}, "
          f"after the calls {metrics_after}")
    print(f"  caller process (this one): {out['caller_cpu_s']} s CPU for the calls")
    if args.keep_log:
        print(f"  daemon log: {daemon.log_file.name}")
    print(f"\ncalls: done in {time.monotonic() - started:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
