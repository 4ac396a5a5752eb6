"""Smart Turn v3.2's cost per inference at batch sizes 1, 4 and 16, and what it means for CPU.

Inputs are real speech: prefixes of the conversations in /work/shared/audio (those with sound in
them) and the clips in tests/data, of 1-10 s (the model hears the last 8 s, zero-padded when
shorter), sent as a Twilio call carries them (8 kHz, through mu-law and back) or at 16 kHz
(--rate 16000). Each batch is timed in two steps, in the calling thread:

  features   PCM16 -> float, soxr to 16 kHz, the last 8 s, Whisper log-mel (numpy)
  model      one onnxruntime session.run on the stacked features (intra-op threads: --threads)

and reported per item (the batch's time / its size), p50 and p90 over batches, wall and CPU
(the process's CPU time, onnxruntime's own threads included).

Load assumption for the CPU estimate: a caller pauses about once every 3 s of a call and each
pause asks the model once, so N calls make N / 3 inferences per second; CPU cores busy =
that rate x the CPU time per item (at the batch size the load really gives: at 33 per second
and ~45 ms each on this machine, most batches hold 1 or 2).

Numbers only, from one run on a shared machine: compare ratios and percentiles.
"""

from __future__ import annotations

import os

# One thread everywhere, so the numbers are one core's: BLAS (the mel matmul) would otherwise
# fan out over every core. Set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import benchlib  # noqa: E402,F401  (puts the repo on sys.path)
import numpy as np  # noqa: E402
from benchlib import REPO, summarize  # noqa: E402

from voiced.audio import parse_wav, pcm16_to_ulaw, resample_pcm16, ulaw_to_pcm16  # noqa: E402
from voiced.turns.smart_turn import SmartTurnInference  # noqa: E402

SHARED_AUDIO = "/work/shared/audio"
UTTERANCE_SECONDS = (1.5, 3.0, 5.0, 8.0, 10.0)


def recordings() -> list[bytes]:
    """16 kHz mono PCM16 of every real recording at hand that is not silent."""
    out = []
    paths = sorted(glob.glob(os.path.join(SHARED_AUDIO, "*.wav"))) + sorted(glob.glob(os.path.join(REPO, "tests", "data", "turn_*.wav")))
    for path in paths:
        with open(path, "rb") as f:
            wav = parse_wav(f.read())
        if (wav.format_tag, wav.channels, wav.bits_per_sample) != (1, 1, 16):
            continue
        pcm = resample_pcm16(wav.data, wav.sample_rate, 16000)
        if np.abs(np.frombuffer(pcm, dtype="<i2")).max(initial=0) > 100:  # some copies are all zeros
            out.append(pcm)
    return out


def utterances(rate: int, count: int) -> list[tuple[bytes, int]]:
    """``count`` utterances ending every 0.35 s through the recordings, lengths cycling 1.5-10 s."""
    out: list[tuple[bytes, int]] = []
    sources = recordings()
    if not sources:
        raise SystemExit("no real speech found in /work/shared/audio or tests/data")
    step = int(0.35 * 16000) * 2
    while len(out) < count:
        for pcm in sources:
            for end in range(step, len(pcm) + 1, step):
                seconds = UTTERANCE_SECONDS[len(out) % len(UTTERANCE_SECONDS)]
                utterance = pcm[max(0, end - int(seconds * 16000) * 2) : end]
                if rate == 8000:
                    utterance = ulaw_to_pcm16(pcm16_to_ulaw(resample_pcm16(utterance, 16000, 8000)))
                out.append((utterance, rate))
    return out[:count]


def time_batches(model: SmartTurnInference, items: list[tuple[bytes, int]], size: int, batches: int) -> dict[str, dict]:
    rows: dict[str, list[float]] = {k: [] for k in ("features_ms", "model_ms", "total_ms", "total_cpu_ms")}
    for b in range(batches):
        batch = [items[(b * size + i) % len(items)] for i in range(size)]
        wall0, cpu0 = time.perf_counter(), time.process_time()
        features = model.features(batch)
        wall1 = time.perf_counter()
        model.probabilities(features)
        wall2, cpu2 = time.perf_counter(), time.process_time()
        rows["features_ms"].append((wall1 - wall0) * 1000 / size)
        rows["model_ms"].append((wall2 - wall1) * 1000 / size)
        rows["total_ms"].append((wall2 - wall0) * 1000 / size)
        rows["total_cpu_ms"].append((cpu2 - cpu0) * 1000 / size)
    return {k: summarize(v, (0.5, 0.9)) for k, v in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=8000, choices=(8000, 16000), help="the call's sample rate (8000: mu-law quality)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--items", type=int, default=240, help="utterances timed per batch size")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--pause-every", type=float, default=3.0, help="seconds between a caller's pauses")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()

    model = SmartTurnInference(intra_op_threads=args.threads)
    items = utterances(args.rate, max(args.items, 16))
    time_batches(model, items, 4, 5)  # warm-up: onnxruntime allocates its arenas on the first runs
    rate = args.calls / args.pause_every
    print(f"Smart Turn v3.2, {len(items)} real-speech utterances at {args.rate} Hz, {args.threads} intra-op thread(s)")
    print(f"load: {args.calls} calls x 1 inference per {args.pause_every:g} s pause = {rate:.1f} inferences/s")
    print(f"{'batch':>5} {'features p50/p90':>17} {'model p50/p90':>15} {'total p50/p90':>15} {'CPU p50/p90':>13}  cores at load (p50/p90)")
    results = {}
    for size in (1, 4, 16):
        r = time_batches(model, items, size, max(4, args.items // size))
        results[size] = r
        cores = [rate * r["total_cpu_ms"][p] / 1000 for p in ("p50", "p90")]

        def pair(k: str) -> str:
            return f"{r[k]['p50']:.1f}/{r[k]['p90']:.1f} ms"

        print(f"{size:>5} {pair('features_ms'):>17} {pair('model_ms'):>15} {pair('total_ms'):>15} {pair('total_cpu_ms'):>13}  {cores[0]:.2f}/{cores[1]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rate": args.rate, "threads": args.threads, "inferences_per_s": rate, "batches": results}, f, indent=1)


if __name__ == "__main__":
    main()
