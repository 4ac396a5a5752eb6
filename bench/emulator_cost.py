"""What the scripted emulator itself costs at N concurrent real-time streams.

    .venv/bin/python bench/emulator_cost.py --streams 100,300,500 --window-s 20

For each N: starts ``voiced-emulator --scripted`` as a subprocess, opens N concurrent
streaming_recognize streams from this one process (grpc.aio, pre-serialized requests:
the client stays cheap), each sending 100 ms mu-law 8 kHz requests in real time: mostly
silence, with a loud burst every few seconds so that finals happen. Once every stream is
up and a warm-up has passed, it measures for ``--window-s`` and prints:

  emulator CPU   utime+stime from /proc/PID/stat over the window (100 % = one core)
  threads, RSS   the emulator's peak over the window (sampled every 0.5 s)
  lateness       final received - send time of the request that completed the final
                 delay (``--final-delay-ms`` of audio after the burst's last loud frame,
                 found with the emulator's own rule: voiced.emulator.scripted.EnergySession),
                 p50 / p99 / max over the finals due in the window; "missing" counts finals
                 due in the window that never came
  client CPU     this process over the same window (the load generator shares the cores)
  by thread      the emulator's CPU split by thread name (its asyncio loop
                 shows as the process name, like every Python thread; gRPC core's own are "event_engine")

Numbers, never pass/fail. Each N gets a fresh emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import benchlib  # noqa: F401  (puts the repo on sys.path)
import calls
from benchlib import summarize

import grpc
from google.cloud.speech_v1.types import (
    RecognitionConfig,
    StreamingRecognitionConfig,
    StreamingRecognizeRequest,
    StreamingRecognizeResponse,
)

from voiced.audio import pcm16_to_ulaw, ulaw_to_pcm16
from voiced.demo import free_port
from voiced.emulator.scripted import EnergySession, ScriptedPlan

BIN = os.path.dirname(sys.executable)
CHUNK_MS = 100
CHUNK_BYTES = 8000 * CHUNK_MS // 1000  # mu-law: one byte a sample
METHOD = "/google.cloud.speech.v1.Speech/StreamingRecognize"
STREAMS_PER_CHANNEL = 50  # like voiced's channel pool: several HTTP/2 connections, not one


# ---- /proc (bench/calls.py's readers) -----------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    return calls.cpu_seconds(f"/proc/{pid}/stat")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds by thread name (threads of one name summed: gRPC's event_engine pool)."""
    out: dict[str, float] = {}
    for key, seconds in calls.thread_cpu(pid).items():
        name = key.split(" ", 1)[1]
        out[name] = out.get(name, 0.0) + seconds
    return out


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---- the audio every stream sends -------------------------------------------------------------
def pattern_chunks(period_s: float, burst_s: float) -> list[bytes]:
    """One period of the line, mu-law in 100 ms chunks: a loud square wave burst, then silence."""
    loud = pcm16_to_ulaw(((3000).to_bytes(2, "little", signed=True) * 10
                          + (-3000).to_bytes(2, "little", signed=True) * 10) * (8000 * CHUNK_MS // 1000 // 20))
    quiet = pcm16_to_ulaw(b"\x00\x00" * CHUNK_BYTES)
    n_loud = round(burst_s * 1000 / CHUNK_MS)
    n_all = round(period_s * 1000 / CHUNK_MS)
    return [loud] * n_loud + [quiet] * (n_all - n_loud)


def final_due(chunks: list[bytes], final_delay_ms: int) -> list[bool]:
    """Per chunk of a stream that sends ``chunks`` over and over: does receiving it complete a
    final? The emulator's own session decides. Two periods: the first one's (a stream may start
    mid-burst or after it) and the steady state's, which repeats."""
    session = EnergySession(ScriptedPlan(final_delay_ms=final_delay_ms), interim_results=False)
    return [any(o.is_final for o in session.feed(ulaw_to_pcm16(c))) for c in chunks * 2]


@dataclass
class StreamLog:
    due_at: list[float] = field(default_factory=list)  # send times of the chunks that complete a final
    finals_at: list[float] = field(default_factory=list)
    error: str = ""


# ---- the emulator -----------------------------------------------------------------------------
class EmulatorProcess:
    def __init__(self, final_delay_ms: int, max_workers: int, extra: list[str], source: str = "") -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile("w+", prefix="emulator-cost-", suffix=".log", delete=False)
        args = ["--listen", f"127.0.0.1:{self.port}", "--scripted", "--final-delay-ms", str(final_delay_ms),
                "--max-workers", str(max_workers), *extra]  # fmt: skip
        if source:  # another tree's emulator (an A/B run against an older commit), same venv
            command = [sys.executable, "-m", "voiced.emulator.main", *args]
            env = dict(os.environ, PYTHONPATH=os.path.abspath(source))
        else:
            command, env = [os.path.join(BIN, "voiced-emulator"), *args], None
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                        cwd=os.path.abspath(source) if source else None)  # fmt: skip
        self.pid = self.process.pid

    async def ready(self) -> None:
        deadline = time.monotonic() + 30
        while "listening" not in open(self.log.name).read():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"emulator did not start:\n{open(self.log.name).read()}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---- one stream -------------------------------------------------------------------------------
def config_request(interim_results: bool) -> bytes:
    config = RecognitionConfig(encoding="MULAW", sample_rate_hertz=8000, language_code="en-US", model="phone_call")
    request = StreamingRecognizeRequest(
        streaming_config=StreamingRecognitionConfig(config=config, interim_results=interim_results)
    )
    return StreamingRecognizeRequest.serialize(request)


def audio_request(chunk: bytes) -> bytes:
    return StreamingRecognizeRequest.pb()(audio_content=chunk).SerializeToString()


async def one_stream(channel: grpc.aio.Channel, first: bytes, chunks: list[bytes], due: list[bool],
                     start_at: float, stop: asyncio.Event, log: StreamLog) -> None:  # fmt: skip
    call_factory = channel.stream_stream(
        METHOD, request_serializer=None, response_deserializer=StreamingRecognizeResponse.pb().FromString
    )
    loop = asyncio.get_running_loop()

    async def requests():  # the line in real time: chunk i goes out at start_at + i * 100 ms
        yield first
        i = 0
        while not stop.is_set():
            delay = start_at + i * CHUNK_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            k = i % len(chunks)
            if due[i if i < len(due) else len(chunks) + k]:
                log.due_at.append(loop.time())
            yield chunks[k]
            i += 1

    call = call_factory(requests())  # chunks: serialized StreamingRecognizeRequest(audio_content=...)
    try:
        async for response in call:
            for result in response.results:
                if result.is_final:
                    log.finals_at.append(loop.time())
    except asyncio.CancelledError:
        call.cancel()
    except grpc.aio.AioRpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            log.error = f"{e.code().name}: {e.details()}"


# ---- one N ------------------------------------------------------------------------------------
async def run_one(n: int, args: argparse.Namespace) -> dict:
    emulator = EmulatorProcess(args.final_delay_ms, n + 50, args.emulator_args.split(), args.emulator_from)
    try:
        await emulator.ready()
        return await drive(n, args, emulator)
    finally:
        emulator.stop()


async def drive(n: int, args: argparse.Namespace, emulator: EmulatorProcess) -> dict:
    loop = asyncio.get_running_loop()
    chunks = pattern_chunks(args.period_s, args.burst_s)
    first = config_request(interim_results=True)
    options = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel, not one shared
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{emulator.port}", options=options)
                for _ in range(math.ceil(n / STREAMS_PER_CHANNEL))]  # fmt: skip
    stop = asyncio.Event()
    logs = [StreamLog() for _ in range(n)]
    ramp_s = max(1.0, n / 100)
    t0 = loop.time() + 0.5
    tasks = []
    dues: dict[int, list[bool]] = {}
    period_chunks = len(chunks)
    for i in range(n):
        start_at = t0 + ramp_s * i / n
        # Spread the bursts evenly over the period in wall time (stream i's bursts begin at
        # t0 + i/n of a period), so finals spread over time as real calls' do: rotate the
        # line by its start's offset, which the ramp adds.
        burst_at_chunk = round(((i / n) * args.period_s - ramp_s * i / n) % args.period_s * 1000 / CHUNK_MS)
        phase = (period_chunks - burst_at_chunk) % period_chunks
        rotated = chunks[phase:] + chunks[:phase]
        if phase not in dues:
            dues[phase] = final_due(rotated, args.final_delay_ms)
        rotated_due = dues[phase]
        serialized = [audio_request(c) for c in rotated]
        tasks.append(asyncio.ensure_future(one_stream(channels[i // STREAMS_PER_CHANNEL], first, serialized,
                                                      rotated_due, start_at, stop, logs[i])))  # fmt: skip
    await asyncio.sleep(t0 + ramp_s + args.warmup_s - loop.time())

    profiler = None
    if args.profile_s:
        # Raw stacks (one line per stack, with its sample count): where the emulator's time goes.
        out = os.path.join(tempfile.gettempdir(), f"emulator-cost-profile-{n}.txt")
        profiler = subprocess.Popen([os.path.join(BIN, "py-spy"), "record", "--pid", str(emulator.pid), "--format",
                                     "raw", "--duration", str(int(args.profile_s)), "--output", out, "--nonblocking"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    w0, e0, c0, t0s = loop.time(), cpu_seconds(emulator.pid), own_cpu_seconds(), thread_cpu(emulator.pid)
    threads, rss = [], []
    while loop.time() < w0 + args.window_s:
        threads.append(calls.status_kb(emulator.pid, "Threads"))
        rss.append(calls.status_kb(emulator.pid, "VmRSS"))
        await asyncio.sleep(0.5)
    w1, e1, c1, t1s = loop.time(), cpu_seconds(emulator.pid), own_cpu_seconds(), thread_cpu(emulator.pid)
    by_thread = {name: 100 * (t1s[name] - t0s.get(name, 0.0)) / (w1 - w0) for name in t1s}
    await asyncio.sleep(2.0)  # the last finals of the window may come late
    if profiler is not None:
        while profiler.poll() is None:
            await asyncio.sleep(0.5)
        print(f"profile: {out}", flush=True)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()

    lateness, missing = [], 0
    for log in logs:
        for k, at in enumerate(log.due_at):
            if not w0 <= at < w1:
                continue
            if k < len(log.finals_at):
                lateness.append(1000 * (log.finals_at[k] - at))
            else:
                missing += 1
    errors = sorted({log.error for log in logs if log.error})
    return dict(n=n, cpu_pct=100 * (e1 - e0) / (w1 - w0), client_cpu_pct=100 * (c1 - c0) / (w1 - w0),
                threads=max(threads), rss_mb=max(rss) / 1024, by_thread=by_thread, lateness=summarize(lateness), missing=missing,
                errors=errors, log=emulator.log.name)  # fmt: skip


def row(r: dict) -> str:
    late = r["lateness"]
    if late["n"]:
        late_s = f"{late['p50']:.0f} / {late['p99']:.0f} / {late['max']:.0f}"
    else:
        late_s = "-"
    return (f"| {r['n']} | {r['cpu_pct']:.1f} % | {r['threads']} | {r['rss_mb']:.0f} | {late_s} | {late['n']} "
            f"| {r['missing']} | {r['client_cpu_pct']:.0f} % |")


async def main_async(args: argparse.Namespace) -> int:
    counts = [int(c) for c in args.streams.split(",")]
    load = os.getloadavg()[0]
    source = f"emulator from {args.emulator_from}" if args.emulator_from else "this tree's emulator"
    print(f"# emulator_cost ({source}): {os.cpu_count()} cores, {platform.python_version()}, grpcio {grpc.__version__}, "
          f"load average {load:.1f} at start; bursts of {args.burst_s:g} s every {args.period_s:g} s, "
          f"final delay {args.final_delay_ms} ms, window {args.window_s:g} s", flush=True)  # fmt: skip
    header = ("| streams | emulator CPU | threads | RSS MB | final lateness p50 / p99 / max ms | finals "
              "| missing | client CPU |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for n in counts:
        r = await run_one(n, args)
        rows.append(r)
        print(row(r), "errors: " + "; ".join(r["errors"]) if r["errors"] else "", flush=True)
        busy = sorted(r["by_thread"].items(), key=lambda kv: -kv[1])
        print("  emulator CPU by thread: " + ", ".join(f"{name} {pct:.1f} %" for name, pct in busy if pct >= 0.5),
              flush=True)
    print()
    print(header)
    for r in rows:
        print(row(r))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", default="100,300,500", help="comma-separated N (default 100,300,500)")
    p.add_argument("--window-s", type=float, default=20.0, help="measurement window per N (default 20)")
    p.add_argument("--warmup-s", type=float, default=3.0, help="after the last stream opened (default 3)")
    p.add_argument("--period-s", type=float, default=4.0, help="one burst every this long (default 4)")
    p.add_argument("--burst-s", type=float, default=1.0, help="length of each loud burst (default 1)")
    p.add_argument("--final-delay-ms", type=int, default=300, help="the emulator's --final-delay-ms (default 300)")
    p.add_argument("--profile-s", type=float, default=0, help="py-spy the emulator for this long in the window")
    p.add_argument("--emulator-from", default="", metavar="DIR",
                   help="run the emulator from this source tree (e.g. `git archive` of an older commit)")
    p.add_argument("--emulator-args", default="", help="more voiced-emulator arguments, space-separated")
    return asyncio.run(main_async(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
