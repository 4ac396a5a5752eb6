"""voiced-emulator: run the Google-compatible Speech/TTS emulator until SIGINT or SIGTERM.

    voiced-emulator --listen 127.0.0.1:50051 --fail-status UNAVAILABLE --fail-every 3
    voiced-emulator --scripted --final-delay-ms 300 --max-workers 1200   # load tests: no models
    voiced-emulator --scripted --transcript "he-IL=שלום" --transcript "he-IL=מתי אתם פותחים?"
    voiced-emulator --scripted --heard phrases.json   # known audio gets its own words (voiced.emulator.heard)
    voiced-emulator --whisper-model DIR   # a multilingual Whisper: recognizes the request's language_code

Point voiced (or any Google client on an insecure channel) at the listen address.
One line per stream (started / failed / completed / cancelled) and per synthesis
goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from voiced.emulator.faults import FAULT_STATUSES, GOOGLE_AUDIO_TIMEOUT_S, GOOGLE_MAX_STREAM_S, FaultPlan
from voiced.emulator.heard import load_heard
from voiced.emulator.recognizer import WhisperRecognizer
from voiced.emulator.scripted import DEFAULT_TRANSCRIPT, ScriptedPlan, parse_transcripts
from voiced.emulator.server import Emulator
from voiced.google.channels import is_loopback

DEFAULT_LISTEN = "127.0.0.1:50051"


def parse_listen(value: str) -> tuple[str, int]:
    """"127.0.0.1:50051" / "[::1]:50051" / "localhost:50051" -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voiced-emulator",
        description="A loopback Google Speech v1 / Text-to-Speech v1 gRPC server on local engines, with faults.",
    )
    p.add_argument("--listen", type=parse_listen, default=parse_listen(DEFAULT_LISTEN), metavar="HOST:PORT",
                   help=f"address to serve on (default {DEFAULT_LISTEN}; port 0 picks one)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback listen address")
    p.add_argument("--fail-status", default="UNAVAILABLE", choices=[s.name for s in FAULT_STATUSES],
                   help="status of injected failures (default UNAVAILABLE)")
    p.add_argument("--fail-every", type=int, default=0, metavar="N", help="fail streams N, 2N, 3N... (0: never)")
    p.add_argument("--fail-fraction", type=float, default=0.0, metavar="F",
                   help="also fail this share of streams at random (0..1)")
    p.add_argument("--fail-after", type=int, default=0, metavar="K",
                   help="a failing stream fails after K responses (0: before the first)")
    p.add_argument("--latency-ms", type=int, default=0, help="added before every response and synthesis")
    p.add_argument("--max-stream-s", type=float, default=GOOGLE_MAX_STREAM_S,
                   help=f"OUT_OF_RANGE after this much audio in one stream (default {GOOGLE_MAX_STREAM_S:g})")
    p.add_argument("--audio-timeout-s", type=float, default=GOOGLE_AUDIO_TIMEOUT_S,
                   help=f"OUT_OF_RANGE after this long without a request (default {GOOGLE_AUDIO_TIMEOUT_S:g})")
    p.add_argument("--hang", action="store_true",
                   help="accept streams and their audio but never answer (a wedged server)")
    p.add_argument("--seed", type=int, default=None, help="seed for --fail-fraction")
    p.add_argument("--tts-fail-every", type=int, default=0, metavar="N", help="fail syntheses N, 2N, 3N...")
    p.add_argument("--max-workers", type=int, default=32, help="concurrent calls served (default 32)")
    p.add_argument("--scripted", action="store_true",
                   help="cheap mode for load tests: recognition by energy, scripted transcripts, a tone for speech")
    p.add_argument("--transcript", action="append", default=[], metavar="[LANG=]TEXT",
                   help="--scripted: a final's text; repeat it for one per utterance, in order (the last one "
                        "repeats); LANG=TEXT (he-IL=..., or he=... for every region) for the streams in that "
                        f"language only (default {DEFAULT_TRANSCRIPT!r})")
    p.add_argument("--final-delay-ms", type=int, default=300,
                   help="--scripted: audio after the speech's last loud frame before its final (default 300)")
    p.add_argument("--tts-delay-ms", type=int, default=0, help="--scripted: time before each synthesis answers")
    p.add_argument("--heard", default="", metavar="FILE",
                   help='--scripted: known audio and its words, JSON {"phrases": [{"text": ..., "ulaw": base64 '
                        '8 kHz}, ...]}: an utterance holding some gets those words instead of the script')
    p.add_argument("--whisper-model", default="", help="Whisper CTranslate2 model directory (default: bundled)")
    p.add_argument("--whisper-threads", type=int, default=1, help="CPU threads per transcription (default 1)")
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    host, port = args.listen
    if not is_loopback(host) and not args.allow_remote:
        parser.error(f"refusing to listen on non-loopback {host!r} without --allow-remote")
    try:
        plan = FaultPlan(
            status=args.fail_status,
            every_nth=args.fail_every,
            fraction=args.fail_fraction,
            seed=args.seed,
            after_responses=args.fail_after,
            latency_ms=args.latency_ms,
            tts_fail_every_nth=args.tts_fail_every,
            max_stream_s=args.max_stream_s,
            audio_timeout_s=args.audio_timeout_s,
            hang=args.hang,
        )
        scripted = None
        if args.scripted:
            every, by_language = parse_transcripts(args.transcript)
            heard = load_heard(args.heard) if args.heard else None
            scripted = ScriptedPlan(every, args.final_delay_ms, args.tts_delay_ms, by_language, heard)
        elif args.transcript or args.heard:
            raise ValueError("--transcript and --heard apply to --scripted")
    except ValueError as e:
        parser.error(str(e))

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s voiced-emulator: %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every transcription
    if scripted is not None and scripted.heard is not None:
        logging.getLogger("voiced.emulator").info(
            "heard table %s: %d phrases, %d keys", args.heard, len(scripted.heard.phrases), scripted.heard.keys)

    emulator = Emulator(
        faults=plan,
        host=host,
        port=port,
        recognizer=WhisperRecognizer(model_path=args.whisper_model, cpu_threads=args.whisper_threads),
        max_workers=args.max_workers,
        scripted=scripted,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("voiced.emulator").info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        emulator.start()
    except RuntimeError as e:
        print(f"voiced-emulator: cannot listen on {host}:{port}: {e}", file=sys.stderr)
        return 1
    while not stop.wait(1.0):
        pass  # a timed wait keeps the main thread responsive to signals
    emulator.stop(grace=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
