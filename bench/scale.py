"""Scale and latency in one command: N concurrent real-time calls on the Google engines.

    .venv/bin/python bench/scale.py --calls 1,50,100 --turns 3
    .venv/bin/python bench/scale.py --carrier NAME ...   # the callers speak that carrier (--help lists them)

Starts ``voiced-emulator --scripted`` (energy endpointing, a fixed transcript, the final
``--final-delay-ms`` of received audio after speech, a tone for speech: no models) and
one daemon on the Google engines against it, then for each N drives N callers with the
lean load generator (bench/loadgen.py) in this process, speaking ``--carrier``'s wire
(Twilio by default), and prints per N:
  overhead p50/p99/max  caller speech end -> first reply audio, minus the final delay
                        (measured from the frame that completes the delay; the replies
                        are cached phrases: no synthesis in a turn)
  failed / unanswered   turns on calls that broke / turns with no reply within 5 s
  refused               upgrades answered 503 (VOICED_MAX_CALLS)
  CPU                   voiced's CPU (100 % = one core) while all N calls were up, and per call
  RSS, threads          voiced's peak over the run
It also runs bench/frame_cost.py briefly for the per-frame cost, writes a Markdown
table (``--out``, default bench/results/scale.md) and a PNG plot of overhead and CPU
against N, with the machine it ran on. Numbers, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import benchlib  # noqa: F401  (puts the repo on sys.path)
from benchlib import summarize, synthesize_lines, with_line_noise
from calls import Snapshot, cpu_seconds, thread_cpu
from loadgen import LoadGenerator, Script
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import LoopingCall, deferLater

from tests.e2e.daemon import Daemon, free_port
from voiced.audio import silence_ulaw
from voiced.caller.carriers import DEFAULT_CARRIER, carrier_names, carrier_wire

BIN = os.path.dirname(sys.executable)
HERE = os.path.dirname(os.path.abspath(__file__))


class Emulator:
    def __init__(self, final_delay_ms: int, tts_delay_ms: int, max_workers: int) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile("w+", prefix="scale-emulator-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [os.path.join(BIN, "voiced-emulator"), "--listen", f"127.0.0.1:{self.port}", "--scripted",
             "--final-delay-ms", str(final_delay_ms), "--tts-delay-ms", str(tts_delay_ms),
             "--max-workers", str(max_workers)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while "listening" not in open(self.log.name).read():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"emulator did not start:\n{open(self.log.name).read()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def process_tree(pid: int) -> list[int]:
    """The daemon and its workers (--workers N: the supervisor's children do the work)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [pid] + [int(c) for c in f.read().split()]
    except OSError:
        return [pid]


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in process_tree(pid):
        try:
            total += cpu_seconds(f"/proc/{p}/stat")
        except OSError:
            pass  # a worker that ended meanwhile
    return total


def tree_threads(pid: int) -> dict[str, float]:
    """Per-thread CPU over the daemon's processes; a worker's main thread is its reactor."""
    out: dict[str, float] = {}
    for p in process_tree(pid):
        try:
            for key, value in thread_cpu(p).items():
                tid, name = key.split(" ", 1)
                out[f"{tid} {'reactor' if int(tid) in (p, pid) else name}"] = value
        except OSError:
            pass
    return out


class Peak:
    """Once a second: voiced's RSS and threads (their peaks are reported)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.rss_kb, self.threads = pid, 0, 0
        self._loop = LoopingCall(self._sample)
        self._loop.start(1.0)

    def _sample(self) -> None:
        rss = threads = 0
        for p in process_tree(self.pid):
            try:
                snap = Snapshot.take(p)
            except OSError:
                continue
            rss, threads = rss + snap.rss_kb, threads + snap.threads
        self.rss_kb, self.threads = max(self.rss_kb, rss), max(self.threads, threads)

    def stop(self) -> None:
        self._loop.stop()


LAG_HISTOGRAMS = {"reactor": "voiced_reactor_lag_milliseconds",
                  "speech_loop": "voiced_speech_loop_round_trip_milliseconds"}


def lag_buckets(daemon: Daemon) -> dict[str, dict[float, float]]:
    """voiced.lag's cumulative histogram buckets from /metrics (summed over workers)."""
    text = daemon.get("/metrics")[1].decode()
    out: dict[str, dict[float, float]] = {}
    for key, name in LAG_HISTOGRAMS.items():
        found = re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M)
        out[key] = {float(le): float(count) for le, count in found}
    return out


def lag_p99(before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]) -> dict[str, float | str]:
    """The bucket bound under which 99 % of the run's samples fell (ms), per histogram."""
    p99 = {}
    for key, buckets in after.items():
        diff = sorted((le, count - before.get(key, {}).get(le, 0.0)) for le, count in buckets.items())
        total = diff[-1][1] if diff else 0.0
        if total:
            bound = next(le for le, count in diff if count >= 0.99 * total)
            # Past the largest bucket: its bound, marked (JSON has no Infinity).
            p99[key] = bound if bound != float("inf") else f">{max(le for le, _ in diff if le != bound):g}"
    return p99


async def run_one(n: int, args, daemon: Daemon, emulator: Emulator, script: Script) -> dict:
    pid, epid = daemon.process.pid, emulator.process.pid
    lag_before = lag_buckets(daemon)
    peak = Peak(pid)
    port = args.tcp_port if carrier_wire(args.carrier).transport == "tcp" else daemon.port
    gen = LoadGenerator("127.0.0.1", port, script, n, args.turns, ramp_s=max(1.0, n / args.ramp_rate),
                        final_delay_ms=args.final_delay_ms, carrier=args.carrier)
    marks: dict[str, tuple[float, float, float, float]] = {}

    def cpu_now() -> tuple[float, float, float, float]:
        return (time.monotonic(), tree_cpu(pid), cpu_seconds(f"/proc/{epid}/stat"),
                cpu_seconds("/proc/self/stat"))

    profiler: list[subprocess.Popen] = []
    threads: dict[str, dict[str, float]] = {}

    def watch() -> None:  # CPU over the window when every call is up
        if "all" not in marks and gen.all_connected_at is not None:
            marks["all"] = cpu_now()
            threads["all"] = tree_threads(pid)
            if args.profile_s:
                out = os.path.splitext(args.out)[0] + f"-profile-{n}.txt"
                profiler.append(subprocess.Popen(
                    [os.path.join(BIN, "py-spy"), "record", "-d", str(args.profile_s), "-r", "100", "-f", "raw",
                     "--gil", "--nonblocking", "--subprocesses", "-o", out, "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if "all" in marks and "first_end" not in marks and gen.first_ended_at is not None:
            marks["first_end"] = cpu_now()
            threads["first_end"] = tree_threads(pid)

    watcher = LoopingCall(watch)
    watcher.start(0.1)
    stats = await gen.start()
    watcher.stop()
    watch()
    marks.setdefault("first_end", cpu_now())  # one call: its end is the first
    threads.setdefault("first_end", tree_threads(pid))
    for p in profiler:
        p.wait(60)
    peak.stop()
    turns = [t for s in stats for t in s.turns]
    overhead = [(t.first_reply - t.final_due) * 1000 for t in turns if t.first_reply is not None and t.final_due]
    failed_calls = [s for s in stats if s.failed and not s.refused]
    failed_turns = sum(args.turns - len([t for t in s.turns if t.first_reply is not None]) for s in failed_calls)
    unanswered = sum(1 for s in stats if not s.failed for t in s.turns if t.first_reply is None)
    row = {"n": n, "turns": len(turns), "overhead_ms": summarize(overhead, (0.5, 0.99)), "failed_turns": failed_turns,
           "unanswered_turns": unanswered, "refused_calls": sum(s.refused for s in stats),
           "failed_calls": len(failed_calls), "rss_mb": round(peak.rss_kb / 1024), "threads": peak.threads,
           "lag_p99_ms": lag_p99(lag_before, lag_buckets(daemon))}
    if "all" in marks and "first_end" in marks:
        (t0, v0, e0, g0), (t1, v1, e1, g1) = marks["all"], marks["first_end"]
        span = t1 - t0
        if span > 0.5:
            row.update(cpu_pct=100 * (v1 - v0) / span, emulator_cpu_pct=100 * (e1 - e0) / span,
                       loadgen_cpu_pct=100 * (g1 - g0) / span, cpu_window_s=round(span, 1))
            row["cpu_per_call_pct"] = row["cpu_pct"] / n
            # voiced's CPU by thread name (tids stripped): where the cost sits.
            groups: dict[str, float] = {}
            for key, after in threads.get("first_end", {}).items():
                tid, name = key.split(" ", 1)
                name = "reactor" if name == "reactor" else f"other ({name})"  # Python threads keep the comm
                groups[name] = groups.get(name, 0.0) + 100 * (after - threads["all"].get(key, 0.0)) / span
            row["cpu_by_thread_pct"] = {k: round(v, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])
                                        if v >= 0.5}
    return row


def frame_cost() -> dict:
    out = tempfile.mktemp(suffix=".json")
    subprocess.run([sys.executable, os.path.join(HERE, "frame_cost.py"), "--call-seconds", "60", "--passes", "1",
                    "--turns", "50", "--json", out], check=True, capture_output=True, cwd=benchlib.REPO)
    with open(out) as f:
        return json.load(f)["inbound"]


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    load = os.getloadavg()[0]
    return (f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {platform.system()} "
            f"{platform.release()}, load average {load:.1f} at start; emulator and load generator on the same cores")


def fmt(row: dict) -> str:
    o = row["overhead_ms"]
    cpu = f"{row['cpu_pct']:.0f} %" if "cpu_pct" in row else "-"
    per = f"{row['cpu_per_call_pct']:.2f} %" if "cpu_per_call_pct" in row else "-"
    side = (f"{row['emulator_cpu_pct']:.0f} / {row['loadgen_cpu_pct']:.0f} %" if "cpu_pct" in row else "-")
    p = (lambda k: f"{o[k]:.1f}" if k in o else "-")
    return (f"| {row['n']} | {p('p50')} | {p('p99')} | {p('max')} | {row['failed_turns']}/{row['unanswered_turns']}"
            f"/{row['turns']} | {row['refused_calls']} | {cpu} | {per} | {row['rss_mb']} | {row['threads']} | {side} |")


HEADER = ("| N calls | overhead p50 ms | p99 ms | max ms | failed/unanswered/turns | refused | voiced CPU "
          "| CPU per call | RSS MB | threads | emulator / loadgen CPU |\n| --- | --- | --- | --- | --- | --- | --- "
          "| --- | --- | --- | --- |")


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ns, [r["overhead_ms"].get("p50", float("nan")) for r in rows], "o-", label="p50")
    a.plot(ns, [r["overhead_ms"].get("p99", float("nan")) for r in rows], "s-", label="p99")
    a.set(xlabel="concurrent calls", ylabel="overhead ms (speech end -> reply, minus injected)", title="latency")
    a.legend()
    a.grid(alpha=0.3)
    b.plot(ns, [r.get("cpu_pct", float("nan")) for r in rows], "o-", label="voiced CPU % (1 core = 100)")
    b.plot(ns, [100 * r.get("cpu_per_call_pct", float("nan")) for r in rows], "s-", label="per call, % x 100")
    b.set(xlabel="concurrent calls", title="CPU")
    b.legend()
    b.grid(alpha=0.3)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


async def main(args) -> None:
    counts = [int(x) for x in args.calls.split(",")]
    line = with_line_noise(synthesize_lines([args.say])[0] + silence_ulaw(1200))
    script = Script(line, with_line_noise(silence_ulaw(1000), seed=3))
    emulator = Emulator(args.final_delay_ms, args.tts_delay_ms, max_workers=3 * max(counts) + 50)
    env = {"VOICED_STT": "google", "VOICED_TTS": "google", "VOICED_GOOGLE_ENDPOINT": f"127.0.0.1:{emulator.port}",
           "VOICED_GOOGLE_INSECURE": "1", "VOICED_MAX_CALLS": str(args.max_calls or max(counts) + 10),
           "VOICED_IDLE_REPROMPT_MS": "0"}
    daemon = Daemon(env=env, args=args.daemon_args.split())
    rows = []
    try:
        daemon.wait_ready(120)
        args.machine = machine()  # the load average before the runs, not after
        print(f"machine: {args.machine}", flush=True)
        for n in counts:
            row = await run_one(n, args, daemon, emulator, script)
            rows.append(row)
            if len(rows) == 1:
                print(HEADER)
            print(fmt(row), flush=True)
            print(f"  voiced CPU by thread (%): {row.get('cpu_by_thread_pct', {})}; p99 (bucket bound) of the "
                  f"reactor's lag and the speech loop's round trip, ms: {row['lag_p99_ms']}", flush=True)
            await deferLater(reactor, 2.0, lambda: None)
    finally:
        daemon.stop()
        emulator.stop()
    inbound = frame_cost() if not args.no_frame_cost else {}
    full = inbound.get("full path", {})
    title = f"voiced bench/scale.py, {time.strftime('%Y-%m-%d')}: {getattr(args, 'machine', None) or machine()}"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        options = f", daemon options `{args.daemon_args}`" if args.daemon_args else ""
        f.write(f"{title}\n\ncarrier {args.carrier}, final delay {args.final_delay_ms} ms, {args.turns} turns per "
                f"call{options}\n\n{HEADER}\n")
        f.write("\n".join(fmt(r) for r in rows) + "\n")
        if full:
            f.write(f"\nframe path (bench/frame_cost.py full path): p50 {full['p50']:.1f} µs, "
                    f"p99 {full['p99']:.1f} µs per inbound media message\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"machine": getattr(args, "machine", None) or machine(), "carrier": args.carrier, "rows": rows,
                   "frame_path_us": full}, f, indent=2)
    plot(rows, os.path.splitext(args.out)[0] + ".png", title)
    if full:
        print(f"frame path: p50 {full['p50']:.1f} µs, p99 {full['p99']:.1f} µs per inbound media message")
    print(f"wrote {args.out} and its .png/.json; daemon log {daemon.log_file.name}, emulator log {emulator.log.name}")


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", default="1,10,50", help="comma-separated N values (default 1,10,50)")
    p.add_argument("--turns", type=int, default=3, help="turns per call (3)")
    p.add_argument("--final-delay-ms", type=int, default=300)
    p.add_argument("--tts-delay-ms", type=int, default=0, help="only warm-up synthesizes: replies are cached")
    p.add_argument("--ramp-rate", type=float, default=50.0, help="calls started per second (50)")
    p.add_argument("--max-calls", type=int, default=0, help="VOICED_MAX_CALLS for the daemon (default max N + 10)")
    p.add_argument("--say", default="What time do you open?")
    p.add_argument("--carrier", default=DEFAULT_CARRIER, choices=carrier_names(),
                   help=f"the carrier the callers speak: {', '.join(carrier_names())} (default {DEFAULT_CARRIER})")
    p.add_argument("--tcp-port", type=int, default=0,
                   help="a TCP carrier's port on the daemon (its listen option goes in --daemon-args)")
    p.add_argument("--daemon-args", default="", help="extra twistd voiced options")
    p.add_argument("--out", default=os.path.join(HERE, "results", "scale.md"))
    p.add_argument("--no-frame-cost", action="store_true")
    p.add_argument("--profile-s", type=int, default=0,
                   help="py-spy the daemon this long once all N calls are up (raw stacks next to --out)")
    args = p.parse_args()
    if carrier_wire(args.carrier).transport == "tcp" and not args.tcp_port:
        p.error(f"--carrier {args.carrier} speaks plain TCP: give --tcp-port and the daemon's listen option")
    failures: list = []
    d = ensureDeferred(main(args))
    d.addErrback(failures.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if failures:
        failures[0].printTraceback(file=sys.stderr)  # not Twisted's log.logerr, which discards it
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
