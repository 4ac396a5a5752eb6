"""voiced-call: place simulated calls against a voiced daemon and report what a caller heard.

  voiced-call ws://127.0.0.1:8080/media --say "What time do you open?" --say "Thanks, bye"
  voiced-call --wav question.wav --barge-in-ms 300 --say "Stop, stop" --out bot.wav
  voiced-call --calls 20 --say "Hello" --json
  voiced-call --say "Opening hours, please" --dtmf 2 --say "Thanks, bye"
  voiced-call --carrier NAME ...   # speak another carrier's wire format (--help lists them)
  voiced-call --language he-IL --say "שלום" --whisper-model DIR   # DIR (or a cached name): a multilingual Whisper

Exit status: 0 when every call connected and heard the bot, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

from autobahn.websocket.util import parse_url
from twisted.internet import ssl, task, threads
from twisted.internet.defer import gatherResults

from voiced.audio import read_wav_as_ulaw, write_ulaw_as_wav
from voiced.caller.bot_words import attribute, log_ended, log_said
from voiced.caller.carriers import DEFAULT_CARRIER, carrier_names, carrier_wire
from voiced.caller.client import parse_tcp_url, place_call
from voiced.caller.console_feed import ConsoleFeed, ConsoleUnavailable, events_url, open_console_feed
from voiced.caller.report import (
    CallReport,
    format_call_summary,
    format_conversation,
    format_said_source,
    format_summary,
    mixed_audio,
    run_dict,
    transcribe_calls,
)
from voiced.caller.session import DTMF_KEYS, CallerLine

DEFAULT_DAEMON = "ws://127.0.0.1:8080"
DEFAULT_URL = DEFAULT_DAEMON + "/media"


class _LineAction(argparse.Action):
    """--say/--wav/--dtmf append a line in command-line order; a preceding --barge-in-ms applies to it."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: Any, option: Any = None
    ) -> None:
        kind = str(option).lstrip("-")
        if kind == "dtmf" and not (value and set(value) <= DTMF_KEYS):
            parser.error(f"--dtmf {value!r}: the keys are 0-9, *, # and A-D")
        namespace.lines.append((kind, value, namespace.barge_in_ms))
        namespace.barge_in_ms = None


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voiced-call", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("url", nargs="?",
                   help=f"the daemon's media WebSocket (default {DEFAULT_DAEMON} and the carrier's path: "
                        f"{DEFAULT_URL} for Twilio; a URL without a path gets the carrier's), or "
                        f"tcp://HOST:PORT for a carrier on plain TCP")
    p.add_argument("--carrier", default=DEFAULT_CARRIER, choices=carrier_names(),
                   help=f"the carrier whose side of the media stream to speak: {', '.join(carrier_names())} "
                        f"(default {DEFAULT_CARRIER})")
    p.set_defaults(lines=[])
    p.add_argument(
        "--say", action=_LineAction, metavar="TEXT", help="a line to speak, synthesized by espeak-ng (spoken in order)"
    )
    p.add_argument("--wav", action=_LineAction, metavar="FILE", help="a line to speak, read from a WAV file")
    p.add_argument("--dtmf", action=_LineAction, metavar="KEYS",
                   help="a line that presses keys (0-9, *, #, A-D), one per 20 ms, as the carrier sends DTMF")
    p.add_argument(
        "--barge-in-ms",
        type=int,
        metavar="N",
        help="the next --say/--wav starts N ms after the bot's reply starts playing, talking over it",
    )
    p.add_argument("--language", default="en-US",
                   help="the call's language: the espeak-ng voice for --say, and the language the bot's replies "
                        "are transcribed in, when the Whisper model knows it (default en-US)")
    p.add_argument("--pause-ms", type=int, default=400, help="pause after the bot finishes before speaking (400)")
    p.add_argument("--reply-timeout", type=float, default=8.0, help="speak anyway after this many silent seconds (8)")
    p.add_argument("--hangup-grace", type=float, default=3.0, help="seconds after the last reply before hanging up (3)")
    p.add_argument("--max-duration", type=float, default=120.0, help="hang up after this many seconds regardless (120)")
    p.add_argument("--calls", type=int, default=1, help="number of concurrent calls, each with its own CallSid (1)")
    p.add_argument("--call-sid", help="the carrier's id of the (first) call (Twilio: CallSid); default a random one")
    p.add_argument("--account-sid", help="the carrier account named in the call (Twilio: AccountSid); default random")
    p.add_argument("--from", dest="from_", default="+15550100", metavar="NUMBER", help="the caller's number")
    p.add_argument("--to", default="+15550199", metavar="NUMBER", help="the number called")
    p.add_argument("--param", type=_parameter, action="append", default=[], metavar="NAME=VALUE",
                   help="extra custom parameters of the stream (Twilio: customParameters)")
    p.add_argument("--auth-token",
                   help="the carrier's secret: Twilio signs the upgrade with X-Twilio-Signature "
                        "(default the carrier's environment variable: $TWILIO_AUTH_TOKEN for Twilio)")
    p.add_argument("--cacert", metavar="FILE.pem",
                   help="trust this CA (or self-signed) certificate for a wss:// URL, instead of the system's")
    p.add_argument("--insecure", action="store_true",
                   help="wss:// without verifying the certificate at all (testing only)")
    p.add_argument("--signed-url", help="the public wss:// URL the signature covers (default the URL called)")
    p.add_argument("--out", metavar="FILE.wav", help="save the bot's audio as heard (call N > 1 gets FILE-N.wav)")
    p.add_argument("--out-caller", metavar="FILE.wav", help="save both sides mixed, the caller's audio included")
    p.add_argument("--no-transcribe", action="store_true", help="do not transcribe the bot's replies with Whisper")
    p.add_argument("--whisper-model", default="",
                   help="a Whisper model directory or a name in the Hugging Face cache (default the bundled "
                        "tiny.en, which knows English only)")
    p.add_argument("--json", action="store_true", help="print a machine-readable report instead of the conversation")
    p.add_argument("--console", metavar="URL",
                   help="the daemon console's event stream, where the bot's own words come from (default "
                        f"{events_url(DEFAULT_URL)} on the daemon called; needed for a tcp:// carrier)")
    p.add_argument("--console-token", help="the console's token (default $VOICED_CONSOLE_TOKEN)")
    p.add_argument("--daemon-log", metavar="FILE",
                   help="the daemon's log, for the bot's own words (its BOT lines) when the console cannot tell them")
    return p


def check_address(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill in the carrier's default URL and secret, and refuse an address it cannot dial."""
    wire = carrier_wire(args.carrier)
    if args.auth_token is None and wire.secret_env:
        args.auth_token = os.environ.get(wire.secret_env)
    if wire.transport == "tcp":
        if args.url is None:
            parser.error(f"--carrier {args.carrier} speaks plain TCP: give the daemon's tcp://HOST:PORT")
        try:
            parse_tcp_url(args.url)
        except ValueError as e:
            parser.error(str(e))
        if args.cacert or args.insecure:
            parser.error(f"--cacert and --insecure apply to a wss:// URL, not to {args.carrier}'s plain TCP")
        return
    if args.url is None:
        args.url = DEFAULT_DAEMON + wire.path
    if not args.url.startswith(("ws://", "wss://")):
        parser.error(f"{args.url!r} is not a ws:// or wss:// URL")
    parts = urlsplit(args.url)
    if parts.path in ("", "/"):  # the daemon's address alone: the carrier's own path on it
        args.url = urlunsplit(parts._replace(path=wire.path))


def load_lines(specs: Sequence[tuple[str, str, int | None]], language: str) -> list[CallerLine]:
    """Synthesize or read every line before the first call, so no call waits on it."""
    lines: list[CallerLine] = []
    synthesizer = None
    for kind, value, barge_in_ms in specs:
        if kind == "say":
            if synthesizer is None:
                from voiced.tts.local import EspeakSynthesizer

                synthesizer = EspeakSynthesizer(language)
            lines.append(CallerLine(synthesizer.synthesize_blocking(value), value, barge_in_ms))
        elif kind == "dtmf":
            lines.append(CallerLine(b"", f"[dtmf {value}]", barge_in_ms, dtmf=value))
        else:
            lines.append(CallerLine(read_wav_as_ulaw(value), f"[{os.path.basename(value)}]", barge_in_ms))
    return lines


def numbered(path: str, index: int) -> str:
    if index == 0:
        return path
    stem, ext = os.path.splitext(path)
    return f"{stem}-{index + 1}{ext}"


def transcribe_all(reports: list[CallReport], model_path: str, language: str = "en-US") -> str | None:
    """Blocking: one Whisper model, in ``language``, for every reply of every call.
    Returns what to say once on stderr (a failure, a model without the language), or None."""
    try:
        from voiced.stt.local import WhisperTranscriber

        transcriber = WhisperTranscriber(model_path=model_path, cpu_threads=1, language=language)
        bundled = "the bundled Whisper model (tiny.en: English only)"
        model = f"the Whisper model in {model_path}" if model_path else bundled
        return transcribe_calls(reports, transcriber, language, model)
    except Exception as e:  # noqa: BLE001 - a transcript is a nicety; the call results stand without it
        return f"transcription failed: {e}"


def tls_options(url: str, cacert: str | None = None, insecure: bool = False) -> Any:
    """Client TLS for a wss:// URL: None (the default: system CAs, host name checked), a
    certificate file to trust instead (--cacert, a self-signed daemon), or no
    verification at all (--insecure)."""
    from twisted.internet import ssl

    if insecure:
        return ssl.CertificateOptions()  # verify=False: encrypted, but anyone could be at the other end
    if cacert:
        host = parse_url(url)[1]
        with open(cacert, "rb") as f:
            trusted = ssl.Certificate.loadPEM(f.read())
        return ssl.optionsForClientTLS(host, trustRoot=trusted)
    return None


async def open_said_source(reactor: Any, args: argparse.Namespace) -> tuple[ConsoleFeed | None, str]:
    """The console's event stream, subscribed before any call; or None and why not."""
    url = args.console or events_url(args.url)
    if url is None:
        return None, f"no console known for {args.url} (--console URL)"
    if args.insecure and url.startswith("https:"):
        return None, "the console is not asked over https with --insecure"
    trust = None
    if args.cacert and url.startswith("https:"):
        with open(args.cacert, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
    token = args.console_token if args.console_token is not None else os.environ.get("VOICED_CONSOLE_TOKEN")
    try:
        return await open_console_feed(reactor, url, token, trust), ""
    except ConsoleUnavailable as e:
        return None, str(e)


LOG_WAIT_S = 3.0  # the daemon's log writer is a thread: its last lines may come a moment after the call


async def fill_said(reactor: Any, reports: list[CallReport], feed: ConsoleFeed | None, daemon_log: str | None,
                    unavailable: str) -> str:
    """Give each heard reply the daemon's words for it, from the console or else the log.
    Returns why neither could tell them ("" when one did)."""
    calls = [r.call_sid for r in reports if r.connected]
    if feed is not None:
        await feed.when_ended(calls, LOG_WAIT_S)
        feed.close()
        for report in reports:
            report.end_reason = feed.end_reason(report.call_sid)
        if not feed.lost or all(feed.said(sid) for sid in calls):
            if _attribute_all(reports, feed.said, f"the daemon's console ({feed.url})"):
                return ""
            unavailable = f"the console at {feed.url} told no words of these calls"
        else:
            unavailable = f"{feed.url}: {feed.lost}"
    if not daemon_log:
        return f"{unavailable}; no --daemon-log" if unavailable else "no --daemon-log"
    deadline = reactor.seconds() + LOG_WAIT_S
    while True:
        try:
            with open(daemon_log, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            return f"{unavailable}; --daemon-log {daemon_log}: {e.strerror}"
        if all(log_ended(text, sid) for sid in calls) or reactor.seconds() >= deadline:
            break
        await task.deferLater(reactor, 0.2, lambda: None)
    if _attribute_all(reports, lambda sid: log_said(text, sid), f"the daemon's log ({daemon_log})"):
        return ""
    return f"{unavailable + '; ' if unavailable else ''}--daemon-log {daemon_log} has no BOT line of these calls"


def _attribute_all(reports: list[CallReport], said_of: Any, source: str) -> bool:
    """Attribute each call's words from ``said_of(call_sid)``; False when no call had any."""
    found = False
    for report in reports:
        said = said_of(report.call_sid)
        if said:
            attribute(report, said)
            report.said_from = source
            found = True
    return found


async def run(reactor: Any, args: argparse.Namespace, lines: list[CallerLine]) -> None:
    parameters = {"From": args.from_, "To": args.to, **dict(args.param)}
    tls = tls_options(args.url, args.cacert, args.insecure)
    feed, unavailable = await open_said_source(reactor, args)
    calls = [
        place_call(
            reactor,
            args.url,
            lines,
            carrier=args.carrier,
            pause_ms=args.pause_ms,
            reply_timeout_s=args.reply_timeout,
            hangup_grace_s=args.hangup_grace,
            call_sid=args.call_sid if i == 0 else None,
            custom_parameters=parameters,
            max_duration_s=args.max_duration,
            account_sid=args.account_sid,
            auth_token=args.auth_token,
            signed_url=args.signed_url,
            tls=tls,
        )
        for i in range(args.calls)
    ]
    reports: list[CallReport] = await gatherResults(calls)
    unavailable = await fill_said(reactor, reports, feed, args.daemon_log, unavailable)
    if not args.no_transcribe and any(r.replies for r in reports):
        problem = await threads.deferToThread(transcribe_all, reports, args.whisper_model, args.language)
        if problem:
            print(f"voiced-call: {problem}", file=sys.stderr)
    for i, report in enumerate(reports):
        if args.out and report.connected:
            write_ulaw_as_wav(numbered(args.out, i), report.bot_audio)
        if args.out_caller and report.connected:
            write_ulaw_as_wav(numbered(args.out_caller, i), mixed_audio(report))
    if args.json:
        print(json.dumps(run_dict(reports), indent=2, ensure_ascii=False))
    else:
        if any(r.replies for r in reports):
            print(format_said_source(reports, unavailable))
        for report in reports:
            if report.connected:
                print(format_conversation(report))
            print(format_call_summary(report))
            print()
        print(format_summary(reports))
    for report in reports:
        if not report.connected:
            print(f"voiced-call: {report.call_sid}: {'; '.join(report.errors)}", file=sys.stderr)
    if not all(r.completed for r in reports):
        raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.barge_in_ms is not None:
        parser.error("--barge-in-ms applies to the next --say/--wav/--dtmf; none follows it")
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    check_address(parser, args)
    if (args.cacert or args.insecure) and not args.url.startswith("wss://"):
        parser.error("--cacert and --insecure apply to a wss:// URL")
    if args.cacert and not os.path.isfile(args.cacert):
        parser.error(f"--cacert {args.cacert}: no such file")
    try:
        lines = load_lines(args.lines, args.language)
    except (OSError, ValueError, RuntimeError) as e:
        parser.exit(2, f"voiced-call: cannot prepare a line: {e}\n")
    task.react(lambda reactor: run(reactor, args, lines))


if __name__ == "__main__":
    main()
