"""Helpers shared by the bench scripts: percentiles, caller audio, the repo on sys.path.

The scripts run as ``.venv/bin/python bench/<name>.py`` from the repository root,
so this module is imported as a sibling (``bench/`` is sys.path[0]) and puts the
repository root on the path for ``tests.e2e.daemon``.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Iterable, Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from voiced.audio import pcm16_to_ulaw, ulaw_to_pcm16  # noqa: E402

# The lines voiced.demo says: one matches the "hours" intent, one the goodbye.
DEFAULT_LINES = ("What time do you open?", "Thank you, goodbye.")


def nearest_rank(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank percentile of sorted values: a value some sample really had."""
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def summarize(values: Iterable[float], points: Sequence[float] = (0.5, 0.9, 0.99)) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    out: dict[str, float] = {"n": len(ordered)}
    for p in points:
        out[f"p{round(p * 100):d}"] = nearest_rank(ordered, p)
    out["max"] = ordered[-1]
    out["mean"] = sum(ordered) / len(ordered)
    return out


def with_line_noise(ulaw: bytes, level_dbfs: float = -60.0, seed: int = 7) -> bytes:
    """Add a phone line's hiss: espeak's digital silence is not what webrtcvad sees on a call."""
    pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16).astype(np.float64)
    rng = np.random.default_rng(seed)
    pcm += rng.normal(0.0, 32768.0 * 10 ** (level_dbfs / 20), pcm.size)
    return pcm16_to_ulaw(np.clip(pcm, -32768, 32767).astype(np.int16).tobytes())


def synthesize_lines(texts: Sequence[str], language: str = "en-US") -> list[bytes]:
    """Caller lines as 8 kHz mu-law, spoken by espeak-ng (what voiced-call --say does)."""
    from voiced.tts.local import EspeakSynthesizer

    synth = EspeakSynthesizer(language)
    return [synth.synthesize_blocking(text) for text in texts]
