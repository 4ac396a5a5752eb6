"""voiced's turn-taking benchmark on real human speech, measured on the wire as a caller hears it.

    .venv/bin/python bench/turn_taking.py                              # the default configuration, local engines (~4 min)
    .venv/bin/python bench/turn_taking.py --config before --config default --plot turn.png
    .venv/bin/python bench/turn_taking.py --config mine=VOICED_VAD=silero,VOICED_VAD_THRESHOLD=0.25
    .venv/bin/python bench/turn_taking.py --engines google   # the scripted emulator: final 300 ms after speech,
                                                             # saying the words the caller said

For each configuration (a name and VOICED_* variables) it starts ``twistd voiced`` on the bench's
script (``data/turn_bench.dialog``: fixed replies, a 30 s one to talk over) and places real-time
Twilio Media Streams calls over WebSockets, several at once, each one case (``turn_cases``): a caller
who speaks a labelled sentence from real recordings, whole or with a pause cut in, or who says
something over the bot's long reply (a backchannel, a line-noise burst, background talk, a real
interruption), or whose line echoes the bot back at -20 dB. Between its words the line carries hiss.
With ``--engines google`` the emulator is told what every clip says (``turn_cases.heard_phrases``:
each sentence's halves, interruptions, backchannels), so its partials and finals carry the words
said so far, as Google's do: a paused sentence's first final is its first half ("What's the
username and"), which the daemon's end-of-turn policy reads as unfinished; background talk and
noise get the emulator's fixed script.
Each caller frame's send time and each media/clear message's arrival are timestamped, and:

- a false cut-off is reply audio arriving before the caller's real end of speech (a reply voiced
  prepared and dropped when the caller went on never reaches the wire: it counts as none, and the
  daemon's RESUME lines count it apart);
- end-of-turn delay is the caller's last speech frame to the first reply audio;
- a false barge-in is a ``clear`` after a sound that was no turn; a real interruption's delay is its
  first speech frame to the ``clear``.

Whisper runs one utterance at a time, so turn cases would measure each other's queue: each books
the stretch from 0.3 s before its first possible turn end to 1.5 s after its real end, and no two booked
stretches overlap (``--no-isolate`` turns that off); the calls around them overlap freely.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

import turn_cases as tc  # noqa: E402  (puts the repository on sys.path)
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from benchlib import nearest_rank
from turn_caller import Booking, Outcome, place
from tests.e2e.daemon import BIN, Daemon, free_port
from voiced.emulator.heard import heard_document

DIALOG = os.path.join(tc.DATA, "turn_bench.dialog")
BUILT_IN = {
    "default": {},
    # voiced before the turn-taking seam: VAD silence only, a reply plays when ready, 160 ms barge-in.
    "before": {"VOICED_TURN_MODEL": "off", "VOICED_TURN_HOLD_MS": "0", "VOICED_BARGE_IN_MS": "160",
               "VOICED_FALSE_INTERRUPTION_MS": "0", "VOICED_ECHO_GUARD_DB": "0", "VOICED_BACKGROUND_MARGIN_DB": "0"},
    "no-model": {"VOICED_TURN_MODEL": "off"},  # the hold alone
    "silero": {"VOICED_VAD": "silero"},
    "scale": {"VOICED_TURN_MODEL": "off", "VOICED_TURN_HOLD_MS": "0"},  # the cheapest per call
}


# ---- one configuration --------------------------------------------------------------------------
class Engines:
    """The daemon for one configuration: on the local engines, or on the Google engines against
    ``voiced-emulator --scripted --final-delay-ms 300 --heard FILE``: recognition by energy, its
    final 300 ms of audio after the last loud frame, a tone at a voice's level for speech. FILE
    tells it the words of every clip the callers play (``turn_cases.heard_phrases``), so a partial
    or final says the words in its utterance's audio (a paused sentence's first half gets "What's the username
    and", its second "password?"); audio it was not told of (background talk, a noise burst) gets
    its fixed script, "What time do you open?". (The emulator's Whisper mode is no substitute: its
    final waits for 300 ms of webrtcvad silence and then for Whisper behind the interim
    transcriptions, 0.9-1.7 s after speech on this machine.)"""

    def __init__(self, engines: str, env: dict[str, str]) -> None:
        self.emulator: subprocess.Popen | None = None
        self.heard_file = ""
        # The daemon runs the voiced of the checkout this bench is in, not the one the venv installed.
        path = os.pathsep.join(p for p in (tc.REPO, os.environ.get("PYTHONPATH", "")) if p)
        base = {"VOICED_SCRIPT": DIALOG, "VOICED_IDLE_REPROMPT_MS": "0", "PYTHONPATH": path}
        if engines != "local":
            port = free_port()
            with tempfile.NamedTemporaryFile("w", prefix="turn-heard-", suffix=".json", delete=False) as heard:
                json.dump(heard_document(tc.heard_phrases(tc.load_labels())), heard)
            self.heard_file = heard.name
            self.emulator_log = tempfile.NamedTemporaryFile("w+", prefix="turn-emulator-", suffix=".log", delete=False)
            self.emulator = subprocess.Popen(
                [os.path.join(BIN, "voiced-emulator"), "--listen", f"127.0.0.1:{port}", "--max-workers", "64",
                 "--scripted", "--final-delay-ms", "300", "--heard", self.heard_file],
                stdout=self.emulator_log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": path})
            deadline = time.monotonic() + 60
            while "listening" not in open(self.emulator_log.name).read():
                if self.emulator.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"voiced-emulator did not start:\n{open(self.emulator_log.name).read()}")
                time.sleep(0.1)
            base.update({"VOICED_STT": "google", "VOICED_TTS": "google", "VOICED_GOOGLE_INSECURE": "1",
                         "VOICED_GOOGLE_ENDPOINT": f"127.0.0.1:{port}"})
        self.daemon = Daemon(env={**base, **env})
        try:
            self.daemon.wait_ready()
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        self.daemon.stop()
        if os.environ.get("TURN_BENCH_KEEP_LOGS"):
            print(f"turn_taking: the daemon's log is {self.daemon.log_file.name}", file=sys.stderr)
        else:
            os.unlink(self.daemon.log_file.name)
        if self.emulator is not None:
            if self.emulator.poll() is None:
                self.emulator.terminate()
                self.emulator.wait(10)
            os.unlink(self.emulator_log.name)
        if self.heard_file:
            os.unlink(self.heard_file)


async def run_cases(url: str, cases: list[tc.Case], parallel: int, isolate: bool) -> list[Outcome]:
    """Place every case's call, ``parallel`` at a time: the turn cases first, then those over the bot."""
    await place(url, cases[0], Booking(False))  # a warm-up (Whisper's first inference), not counted
    results: list[Outcome] = []
    for group in ([c for c in cases if not c.over_the_bot], [c for c in cases if c.over_the_bot]):
        booking, gate = Booking(isolate), DeferredSemaphore(parallel)
        results += await gatherResults([gate.run(place, url, c, booking) for c in group])
    return results


_LOGGED = {"RESUME": re.compile(r"\bRESUME call=(\S+?):"), "BARGE_IN": re.compile(r"\bBARGE_IN call=(\S+)"),
           "TURN": re.compile(r"\bTURN call=(\S+)"),
           "IGNORED": re.compile(r"\bBARGE_IN_IGNORED call=(\S+)"),
           "RESUMED": re.compile(r"\bBARGE_IN_RESUMED call=(\S+)")}


def read_log(log: str, outcomes: list[Outcome]) -> list[str]:
    """Count the daemon's RESUME / BARGE_IN / TURN lines per call; return its warnings about the run."""
    by_sid = {o.call_sid: o for o in outcomes}
    for line in log.splitlines():
        for kind, pattern in _LOGGED.items():
            m = pattern.search(line)
            if m and m.group(1) in by_sid:
                counts = by_sid[m.group(1)].log
                counts[kind] = counts.get(kind, 0) + 1
    return sorted({re.sub(r"^\S+ \S+ ", "", line) for line in log.splitlines()
                   if "VOICED_" in line and ("unknown" in line.lower() or "ignor" in line.lower())})


def isolating(args: argparse.Namespace) -> bool:
    """The scripted emulator runs no Whisper: nothing to isolate."""
    return not args.no_isolate and args.engines == "local"


async def measure(name: str, env: dict[str, str], args: argparse.Namespace, cases: list[tc.Case]) -> dict[str, Any]:
    started = time.monotonic()
    # Starting and stopping processes blocks: off the reactor, which paces the calls.
    engines = await deferToThread(Engines, args.engines, env)
    try:
        url = f"ws://127.0.0.1:{engines.daemon.port}/media"
        outcomes = await run_cases(url, cases, args.parallel, isolate=isolating(args))
        await deferLater(reactor, 0.5, lambda: None)  # the daemon writes its log on a thread
        warnings = read_log(engines.daemon.log(), outcomes)
    finally:
        await deferToThread(engines.stop)
    return {"name": name, "env": env, "outcomes": outcomes, "warnings": warnings,
            "seconds": time.monotonic() - started}


# ---- the report ---------------------------------------------------------------------------------
def ms(values: list[float], points: tuple[float, ...] = (0.5, 0.9)) -> list[float]:
    ordered = sorted(values)
    return [nearest_rank(ordered, p) for p in points] if ordered else []


def summary(result: dict[str, Any]) -> dict[str, Any]:
    kinds: dict[str, list[Outcome]] = {}
    for o in result["outcomes"]:
        kinds.setdefault(o.case.kind, []).append(o)
    out: dict[str, Any] = {"cut_off": {}, "dropped": {}, "stopped": {}}
    for kind in tc.TURN_KINDS:
        got = kinds.get(kind, [])
        out["cut_off"][kind] = (sum(o.cut_off for o in got), len(got))
        out["dropped"][kind] = sum(o.log.get("RESUME", 0) for o in got)
    complete = kinds.get("complete", [])
    out["delays"] = [o.delay_ms for o in complete if o.delay_ms is not None]
    out["unanswered"] = sum(o.first_reply_at is None for o in result["outcomes"] if not o.case.over_the_bot)
    for kind in ("backchannel", "noise burst", "background talk", "echo"):
        got = kinds.get(kind, [])
        out["stopped"][kind] = (sum(o.stopped_bot for o in got), len(got))
    interruptions = kinds.get("interruption", [])
    out["clear_ms"] = [o.clear_ms for o in interruptions if o.clear_ms is not None]
    out["missed"] = (sum(o.clear_ms is None for o in interruptions), len(interruptions))
    after: dict[str, int] = {}
    for o in result["outcomes"]:
        if o.case.kind in ("backchannel", "noise burst", "background talk", "echo") and o.stopped_bot:
            after[o.after_clear] = after.get(o.after_clear, 0) + 1
    out["after_clear"] = after
    return out


def k_of(pair: tuple[int, int]) -> str:
    return f"{pair[0]}/{pair[1]}" if pair[1] else "-"


def rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    pauses = ", ".join(k_of(s["cut_off"][f"pause {p}"]) for p in tc.PAUSES_MS)
    delays = ms(s["delays"])
    clear = ms(s["clear_ms"], (0.5, 1.0))
    after = s["after_clear"]
    return [
        (f"caller cut off by a mid-sentence pause of {' / '.join(map(str, tc.PAUSES_MS))} ms", pauses),
        ("end of speech to first reply audio, p50 / p90 (max)",
         f"{delays[0]:,.0f} / {delays[1]:,.0f} ms ({max(s['delays']):,.0f})" if delays else "-"),
        ("complete sentences cut off (at a natural pause)", k_of(s["cut_off"]["complete"])),
        ("bot stopped by a backchannel word (0.2-0.35 s)", k_of(s["stopped"]["backchannel"])),
        ("bot stopped by a line-noise burst", k_of(s["stopped"]["noise burst"])),
        ("bot stopped by background talk 15 dB under the caller", k_of(s["stopped"]["background talk"])),
        ("real interruption: speech start to `clear`, p50 / max; missed",
         (f"{clear[0]:,.0f} / {clear[1]:,.0f} ms; " if clear else "-; ") + k_of(s["missed"])),
        ("bot stopped by its own echo at -20 dB (no caller speech)", k_of(s["stopped"]["echo"])),
        ("after a false barge-in, within 2.5 s: reply resumed / answered anew / other / silence",
         " / ".join(str(after.get(k, 0)) for k in ("resumed", "anew", "other", "silent")) if after else "-"),
        (f"replies dropped before any audio (RESUME lines), complete / {' / '.join(map(str, tc.PAUSES_MS))} ms",
         " / ".join(str(s["dropped"][k]) for k in tc.TURN_KINDS)),
    ]


def table(results: list[dict[str, Any]]) -> str:
    names = [r["name"] for r in results]
    lines = ["| | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    columns = [rows(summary(r)) for r in results]
    for i, (label, _) in enumerate(columns[0]):
        lines.append(f"| {label} | " + " | ".join(c[i][1] for c in columns) + " |")
    return "\n".join(lines)


def verdict(o: Outcome) -> str:
    c = o.case
    if c.kind == "interruption":
        return "MISSED" if o.clear_ms is None else f"clear {o.clear_ms:.0f} ms after speech start"
    if c.echo and o.clears:
        on_greeting = sum(o.trigger_at is None or t < o.trigger_at for t in o.clears)
        return f"STOPPED the bot: {on_greeting} clear(s) in the greeting, {len(o.clears) - on_greeting} after"
    if c.over_the_bot:
        return f"STOPPED the bot ({len(o.clears)} clear(s)), then {o.after_clear}" if o.stopped_bot else "no clear"
    if o.cut_off:
        return f"CUT OFF: reply audio {(o.speech_end_at - o.first_reply_at) * 1000:.0f} ms before the real end"
    return f"reply after {o.delay_ms:.0f} ms" if o.delay_ms is not None else "UNANSWERED"


def details(result: dict[str, Any]) -> str:
    lines = []
    for o in result["outcomes"]:
        log = " ".join(f"{k}={v}" for k, v in sorted(o.log.items()))
        errors = f"  errors: {'; '.join(o.errors)}" if o.errors else ""
        lines.append(f"  {o.case.name:44} {verdict(o)}  [{log}]{errors}")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cuts, delay) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        s = summary(r)
        shares = [s["cut_off"][f"pause {p}"] for p in tc.PAUSES_MS]
        cuts.plot(tc.PAUSES_MS, [k for k, _ in shares], marker="o", label=r["name"])
    most = max(summary(r)["cut_off"][f"pause {p}"][1] for r in results for p in tc.PAUSES_MS)
    cuts.set(xlabel="mid-sentence pause cut in (ms)", ylabel=f"callers cut off (of {most})",
             title="False cut-offs", xticks=list(tc.PAUSES_MS))
    cuts.set_ylim(-0.3, most + 0.3)
    cuts.legend()
    names = [r["name"] for r in results]
    p = [ms(summary(r)["delays"]) or [0, 0] for r in results]
    x = np.arange(len(names))
    delay.bar(x - 0.2, [v[0] for v in p], 0.4, label="p50")
    delay.bar(x + 0.2, [v[1] for v in p], 0.4, label="p90")
    delay.set(xticks=x, xticklabels=names, ylabel="ms", title="End of speech to first reply audio")
    delay.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_config(value: str) -> tuple[str, dict[str, str]]:
    """NAME (a built-in) or NAME=VAR=VALUE,VAR=VALUE."""
    name, sep, rest = value.partition("=")
    if not sep:
        if name not in BUILT_IN:
            raise argparse.ArgumentTypeError(f"no built-in configuration {name!r}: {', '.join(BUILT_IN)}")
        return name, dict(BUILT_IN[name])
    env = {}
    for item in rest.split(","):
        var, eq, setting = item.partition("=")
        if not eq or not var.startswith("VOICED_"):
            raise argparse.ArgumentTypeError(f"{item!r} is not VOICED_NAME=VALUE")
        env[var] = setting
    return name, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", type=parse_config, metavar="NAME[=VOICED_X=V,...]",
                        help=f"a configuration (repeatable): built in {', '.join(BUILT_IN)}; default default")
    parser.add_argument("--engines", choices=("local", "google"), default="local",
                        help="local (faster-whisper, espeak-ng), or google against the scripted emulator")
    parser.add_argument("--parallel", type=int, default=8, help="calls at once (8)")
    parser.add_argument("--no-isolate", action="store_true", help="let turn cases share Whisper's queue")
    parser.add_argument("--kinds", default="",
                        help=f"only these case kinds, comma-separated: {', '.join(tc.TURN_KINDS + tc.BOT_KINDS)}")
    parser.add_argument("--tries", type=int, default=tc.TRIES, help=f"tries per over-the-bot kind ({tc.TRIES})")
    parser.add_argument("--rounds", type=int, default=1,
                        help="place every case this many times (the 700 ms row sits on a knife's edge: see it move)")
    parser.add_argument("--plot", metavar="FILE.png")
    parser.add_argument("--out", metavar="FILE.txt", help="also write the report there")
    args = parser.parse_args(argv)
    if min(args.parallel, args.tries, args.rounds) < 1:
        parser.error("--parallel, --tries and --rounds must be at least 1")
    configs = args.config or [("default", {})]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] or list(tc.TURN_KINDS + tc.BOT_KINDS)
    try:
        cases = tc.build_cases(tc.load_labels(), kinds, args.tries) * args.rounds
    except ValueError as e:
        parser.error(str(e))
    started = time.monotonic()
    results: list[dict[str, Any]] = []

    async def everything() -> None:
        for name, env in configs:
            print(f"turn_taking: {name} {env or '(no VOICED_* variables)'}: {len(cases)} calls ...", flush=True)
            results.append(await measure(name, env, args, cases))

    failure: list[Any] = []
    d = Deferred.fromCoroutine(everything())
    d.addErrback(failure.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if failure:
        print(failure[0].getTraceback(), file=sys.stderr)
        return 1
    commit = subprocess.run(["git", "-C", tc.REPO, "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    report = [f"# bench/turn_taking.py on {tc.REPO} ({commit}), {args.engines} engines, "
              f"{time.strftime('%Y-%m-%d %H:%M')}; "
              f"{args.parallel} calls at once, {'' if isolating(args) else 'no '}Whisper isolation; "
              f"{time.monotonic() - started:.0f} s; the worst caller frame went out "
              f"{max(o.worst_lag_ms for r in results for o in r['outcomes']):.0f} ms late",
              "", table(results), ""]
    for r in results:
        report += [f"## {r['name']}: {r['env'] or 'no VOICED_* variables'} ({r['seconds']:.0f} s)"]
        report += [f"  daemon: {w}" for w in r["warnings"]]
        report += [details(r), ""]
    text = "\n".join(report)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
