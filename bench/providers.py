"""The daemon's own share of a turn with each provider (issue 22).

For each provider a real daemon (``twistd -n voiced``, tests/e2e/daemon.py) runs against the
loopback fake of that provider's API (tests/fakes/: Deepgram's ``/v1/listen``, the ElevenLabs,
Cartesia and OpenAI ``/v1/audio/speech`` streams, OpenAI Realtime), in this process, and the
real caller (``voiced.caller.client.place_call``, espeak-ng lines) places a few calls of short
questions no intent matches, so every reply ("I heard you say: ...") is synthesized live.

The fakes answer at once (no configured delay: their first audio, their final, their first
delta goes out as soon as they are asked), so what a turn takes beyond the end-of-turn silence
the daemon waits by design is voiced's own work plus the loopback round trips (the fakes' own
Python runs on the same two cores: an upper bound). From the TURN lines:

    turn = TOTAL_LATENCY_MS (caller speech end -> first reply audio frame sent)
    own  = turn - VOICED_EOU_SILENCE_MS (the silence that ends the turn, a policy, not work)

The semantic turn model and its hold are off (VOICED_TURN_MODEL=off, VOICED_TURN_HOLD_MS=0: a
reply plays at the end of the turn) so that no policy wait but the end-of-turn silence is in a turn.
``local`` (Whisper tiny.en + espeak-ng, the defaults) is there for comparison: its own share
is Whisper's and espeak's work. The TTS vendors are measured with Deepgram's fake as the STT,
so that only the TTS differs from the ``deepgram`` row (espeak-ng). Run from the repository
root (~5 min on an idle 2-core machine, 7 under load)::

    .venv/bin/python bench/providers.py [--calls 2] [--providers local,deepgram,...] [--out FILE]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

import benchlib  # noqa: F401 - the repository on sys.path
from benchlib import nearest_rank
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater, react

from tests.e2e.daemon import Daemon, line
from tests.fakes.deepgram_server import DeepgramFake
from tests.fakes.realtime_server import RealtimeFake
from tests.fakes.tts_servers import TTSFake
from voiced.caller.client import place_call
from voiced.options import default

PROVIDERS = ("local", "deepgram", "elevenlabs", "cartesia", "openai", "realtime")
KEY = "bench-key-0123456789abcdef"
# No intent of the front desk matches them: the fallback's reply is synthesized live.
QUESTIONS = ("Tell me about the weather.", "Do you sell flowers?", "Is parking free?")
EOU_SILENCE_MS = default("eou_silence_ms")
_TURN = re.compile(r"TURN call=(\S+) turn=(\d+) (.*)$")


class Setup:
    """One provider's fakes and the daemon's environment for them."""

    def __init__(self, provider: str, calls: int) -> None:
        self.provider = provider
        self.fakes: list[Any] = []
        self.env = {"VOICED_TURN_MODEL": "off", "VOICED_TURN_HOLD_MS": "0"}
        if provider == "realtime":
            fake = RealtimeFake(api_key=KEY, heard=list(QUESTIONS) * calls,
                                replies=[f"You asked: {q}" for q in QUESTIONS] * calls)
            self.env.update(VOICED_AGENT="realtime", VOICED_OPENAI_REALTIME_URL=self._start(fake),
                            OPENAI_API_KEY=KEY)
            return
        if provider == "local":
            self.env.update(VOICED_STT="local", VOICED_TTS="local")
            return
        deepgram = DeepgramFake(api_key=KEY, script=list(QUESTIONS) * calls)
        self.env.update(VOICED_STT="deepgram", VOICED_DEEPGRAM_URL=self._start(deepgram), DEEPGRAM_API_KEY=KEY,
                        VOICED_TTS="local")
        if provider == "deepgram":
            return
        tts = TTSFake(provider, api_key=KEY)
        url = self._start(tts)
        self.env["VOICED_TTS"] = provider
        if provider == "elevenlabs":
            self.env.update(VOICED_ELEVENLABS_BASE_URL=url, VOICED_ELEVENLABS_API_KEY=KEY)
        elif provider == "cartesia":
            self.env.update(VOICED_CARTESIA_BASE_URL=url, VOICED_CARTESIA_API_KEY=KEY,
                            VOICED_CARTESIA_VOICE_ID="bench-voice")
        else:
            self.env.update(VOICED_OPENAI_TTS_BASE_URL=url, OPENAI_API_KEY=KEY)

    def _start(self, fake: Any) -> str:
        fake.listen()
        self.fakes.append(fake)
        return fake.url

    async def stop(self) -> None:
        for fake in self.fakes:
            await fake.stop()


async def wait_ready(daemon: Daemon, timeout_s: float = 120.0) -> None:
    """Without blocking this reactor: the fakes the daemon warms up against answer from it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise RuntimeError(f"daemon exited ({daemon.process.returncode}):\n{daemon.log()[-3000:]}")
        try:
            if daemon.get("/health/ready")[0] == 200:
                return
        except OSError:
            pass
        await deferLater(reactor, 0.2, lambda: None)
    raise RuntimeError(f"daemon not ready after {timeout_s} s:\n{daemon.log()[-3000:]}")


def turn_timings(log: str, call_ids: set[str]) -> list[dict[str, int]]:
    """The TURN lines of these calls, their numbers (a stage an engine cannot time is left out)."""
    turns = []
    for entry in log.splitlines():
        found = _TURN.search(entry)
        if found and found.group(1) in call_ids:
            values = dict(pair.split("=", 1) for pair in found.group(3).split())
            turns.append({k: int(v) for k, v in values.items() if v.isdigit()})
    return turns


async def measure(provider: str, calls: int, lines: list[Any]) -> dict[str, Any]:
    setup = Setup(provider, calls)
    daemon = Daemon(env=setup.env)
    errors: list[str] = []
    call_ids: set[str] = set()
    try:
        await wait_ready(daemon)
        for _ in range(calls):
            report = await place_call(reactor, daemon.media_url, lines, reply_timeout_s=15)
            errors += report.errors
            call_ids.add(report.call_sid)
        await deferLater(reactor, 0.5, lambda: None)  # the last TURN line is written
        turns = turn_timings(daemon.log(), call_ids)
    finally:
        daemon.stop()
        await setup.stop()
        await deferLater(reactor, 2.5, lambda: None)  # Autobahn's close timers outlive a call
    total = sorted(t["TOTAL_LATENCY_MS"] for t in turns if "TOTAL_LATENCY_MS" in t)
    stage = {name: sorted(t[name] for t in turns if name in t) for name in ("STT_FINAL_MS", "TTS_READY_MS")}
    return {"provider": provider, "turns": len(total), "expected": calls * len(lines), "errors": errors,
            "total": total, "own": [v - EOU_SILENCE_MS for v in total], **stage}


def p(values: list[int], q: float) -> str:
    return str(round(nearest_rank(values, q))) if values else "-"


def table(results: list[dict[str, Any]]) -> str:
    head = ("provider", "turns", "turn p50", "turn p90", "own p50", "own p90", "stt_final p50", "tts_ready p50")
    rows = [head, tuple("-" * len(h) for h in head)]
    for r in results:
        rows.append((r["provider"], f"{r['turns']}/{r['expected']}", p(r["total"], 0.5), p(r["total"], 0.9),
                     p(r["own"], 0.5), p(r["own"], 0.9), p(r["STT_FINAL_MS"], 0.5), p(r["TTS_READY_MS"], 0.5)))
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


async def run(args: argparse.Namespace) -> None:
    providers = [name for name in args.providers.split(",") if name]
    unknown = sorted(set(providers) - set(PROVIDERS))
    if unknown:
        raise SystemExit(f"unknown providers {unknown}: choose from {', '.join(PROVIDERS)}")
    lines = [line(text) for text in QUESTIONS]
    started = time.monotonic()
    results = []
    for provider in providers:
        result = await measure(provider, args.calls, lines)
        results.append(result)
        print(f"{provider}: {result['turns']} turns, errors={result['errors'] or 'none'}", file=sys.stderr)
    text = (f"voiced's own share of a turn, per provider (ms; {args.calls} calls x {len(lines)} turns each, "
            f"loopback fakes answering at once, VOICED_TURN_MODEL=off, VOICED_TURN_HOLD_MS=0; "
            f"own = turn - eou_silence_ms {EOU_SILENCE_MS}); {round(time.monotonic() - started)} s\n\n"
            f"{table(results)}\n")
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2, help="calls per provider (3 turns each)")
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--out", default="", help="also write the table to this file")
    args = parser.parse_args(argv)
    react(lambda _reactor: ensureDeferred(run(args)))


if __name__ == "__main__":
    main()
