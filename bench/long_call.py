"""A long call on the Google engines under a short stream limit, in real time.

Starts `voiced-emulator --max-stream-s 20` and a daemon on the Google engines
pointed at it, then places one call that alternates two questions for about
``--minutes`` minutes and ends with "Goodbye.". Google's limit (here 20 s instead
of 305 s) forces a stream replacement every ~20 s; the script reports how many
there were and whether every line the caller said produced exactly one answered
turn (no final lost, none duplicated).

    .venv/bin/python bench/long_call.py --minutes 10
"""

from __future__ import annotations

import argparse
import re
import sys

import benchlib  # noqa: F401  (puts the repository on sys.path)
from twisted.internet import defer, task

from tests.e2e.daemon import Daemon
from tests.e2e.test_google import EmulatorProcess
from voiced.caller.client import place_call
from voiced.caller.session import CallerLine
from voiced.tts.local import EspeakSynthesizer

QUESTIONS = ["What time do you open?", "Where are you located?"]
SECONDS_PER_LINE = 9.5  # a question, its answer and the pause, as measured


async def run(reactor, minutes: float, stream_limit_s: int) -> int:
    speech = EspeakSynthesizer("en-US")
    count = max(2, round(minutes * 60 / SECONDS_PER_LINE))
    texts = [QUESTIONS[i % 2] for i in range(count)] + ["Goodbye."]
    lines = [CallerLine(audio=speech.synthesize_blocking(t), text=t) for t in texts]
    emulator = EmulatorProcess("--max-stream-s", str(stream_limit_s))
    daemon = Daemon(env=emulator.google_env())
    try:
        daemon.wait_ready()
        print(f"placing a call of {len(lines)} lines (~{minutes:g} min) under a {stream_limit_s} s stream limit")
        report = await place_call(reactor, daemon.media_url, lines, reply_timeout_s=20,
                                  max_duration_s=minutes * 60 * 2 + 120)
        log = daemon.log()
    finally:
        daemon.stop()
        emulator.kill()
    heard = re.findall(rf"CALLER call={report.call_sid} turn=\d+ text='([^']*)'", log)
    turns = len(re.findall(rf"TURN call={report.call_sid} ", log))
    reopens = len(re.findall(rf"STT_REOPEN call={report.call_sid} ", log))
    rollovers = len(re.findall(rf"STT_ROLLOVER call={report.call_sid} ", log))
    print(f"call lasted {report.duration_s / 60:.1f} min; bot hung up: {report.hung_up_by_bot}")
    print(f"stream replacements: {reopens} at the limit (OUT_OF_RANGE), {rollovers} planned rollovers")
    print(f"caller lines: {len(texts)}; answered turns: {turns}; transcripts: {len(heard)}")
    def first_word(text: str) -> str:
        return re.sub(r"\W", "", text.split()[0].lower()) if text.split() else ""

    mismatched = [(said, got) for said, got in zip(texts, heard) if first_word(said) != first_word(got)]
    print(f"transcripts that do not start like the line said: {len(mismatched)} {mismatched[:3]}")
    latencies = sorted(t.first_reply_audio_ms for t in report.turns if t.first_reply_audio_ms is not None)
    if latencies:
        print(f"speech end -> first reply audio: p50 {latencies[len(latencies) // 2]:.0f} ms, "
              f"max {latencies[-1]:.0f} ms")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--stream-limit-s", type=int, default=20)
    args = parser.parse_args()
    return task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, args.minutes, args.stream_limit_s)))


if __name__ == "__main__":
    sys.exit(main())
