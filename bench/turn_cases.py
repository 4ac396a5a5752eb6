"""The turn-taking bench's material: labelled real speech, and the cases built from it.

Two jobs, one module:

- ``python bench/turn_cases.py label --source DIR ...`` (run once; its output is committed):
  takes the hand-picked stretches of ``PICKS`` from the 16 kHz recordings (pyannote-audio's
  public ``sample.wav`` and ``tests/data/*.wav``), finds where the speech in each really
  starts and ends with Silero VAD (``faster_whisper.vad``, an independent detector: voiced
  uses webrtcvad), times its words with faster-whisper tiny.en, places a sentence's break on
  the quietest 10 ms at the chosen word boundary, and transcribes each half on its own as the
  check that the break falls between the intended words. It writes ``data/turn_labels.json``
  and each stretch as an 8 kHz mu-law clip, normalized to ``CALLER_DBFS`` of active speech
  (``data/turn_clips/<id>.wav``), so the bench needs neither the sources nor the models.
- the case builder ``bench/turn_taking.py`` imports: ``load_labels`` and ``build_cases`` turn
  the labels and clips into ``Case``s (what one simulated caller plays and what it measures).

Audio is int16 PCM at 8 kHz until the caller mixes it over line noise and encodes it.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from voiced.audio import (  # noqa: E402
    SAMPLE_RATE, WAVE_FORMAT_MULAW, pcm16_to_ulaw, read_wav_as_ulaw, resample_pcm16, ulaw_to_pcm16, wav_bytes,
)

DATA = os.path.join(HERE, "data")
LABELS = os.path.join(DATA, "turn_labels.json")
CLIPS = os.path.join(DATA, "turn_clips")

CALLER_DBFS = -26.0  # ITU-T P.56's nominal active speech level on a phone line
LINE_NOISE_DBFS = -60.0  # a phone line's hiss between words: never digital silence
BACKGROUND_BELOW_DB = 15.0
PAUSES_MS = (300, 500, 700, 1000)
TRIES = 10  # per false barge-in kind, interruptions and echo

# (id, kind, recording, cut start s, cut end s, break after this word (sentences), what is said)
# Cut points lie in silence around one speaker's utterance (checked against pyannote's RTTM
# speaker turns); "s" sentences are the complete/pause cases, "i" sentences only interrupt.
PICKS: tuple[tuple[str, str, str, float, float, str, str], ...] = (
    ("s1", "sentence", "dev00", 1.98, 4.02, "think", "Okay, well, I think we're ready to begin."),
    ("s2", "sentence", "dev00", 26.15, 28.21, "the", "I'm the marketing expert."),
    ("s3", "sentence", "dev01", 22.52, 24.05, "and", "What's the username and password?"),
    ("s4", "sentence", "sample", 14.28, 17.95, "Texas", "And I'm Sheila in Texas, originally from Chicago."),
    ("s5", "sentence", "sample", 17.93, 21.66, "Chicago",
     "Oh, I'm originally from Chicago also. I'm in New Jersey now though."),
    ("s6", "sentence", "trn06", 11.25, 12.55, "they", "Aren't they suing him?"),
    ("s7", "sentence", "dev00", 6.62, 9.14, "because", "My name's Andrew. We're here because of real reaction."),
    ("i1", "interruption", "dev01", 4.30, 6.60, "", "Just put it on the desk. All I see is the desktop."),
    ("i2", "interruption", "dev01", 6.95, 11.80, "", "No, on the desktop, you should find a project documents link."),
    ("i3", "interruption", "tst01", 26.05, 28.70, "", "Who wants to take notes today?"),
    ("b1", "backchannel", "dev00", 5.58, 5.98, "", "right"),
    ("b2", "backchannel", "tst01", 9.76, 10.07, "", "yep"),
    ("b3", "backchannel", "trn09", 15.36, 15.585, "", "right"),
    ("b4", "backchannel", "dev01", 17.20, 17.48, "", "yeah"),
    ("b5", "backchannel", "tst00", 3.60, 3.95, "", "yeah"),
    ("g1", "background", "sample", 7.60, 17.90, "", "two people on the phone"),
    ("g2", "background", "tst00", 0.40, 7.25, "", "a meeting, several voices at once"),
    ("g3", "background", "trn08", 12.00, 24.00, "", "a meeting, several voices at once"),
)


# ---- the labels as stored ------------------------------------------------------------------
@dataclass(frozen=True)
class Utterance:
    """One labelled clip; times are seconds from the clip's start."""

    id: str
    kind: str  # sentence, interruption, backchannel, background
    source: str
    text: str
    speech_start: float
    speech_end: float
    break_at: float | None = None  # sentences: where a pause goes
    clean_onset: bool = True  # the clip starts quiet, so its speech start is its first sound
    words: tuple[tuple[str, float, float], ...] = ()

    def pcm(self) -> np.ndarray:
        path = os.path.join(CLIPS, f"{self.id}.wav")
        return np.frombuffer(ulaw_to_pcm16(read_wav_as_ulaw(path)), dtype=np.int16)


def load_labels(path: str = LABELS) -> list[Utterance]:
    try:
        with open(path) as f:
            items = json.load(f)["clips"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"turn_cases: cannot read the labels {path}: {e} (run `turn_cases.py label`)") from None
    return [Utterance(i["id"], i["kind"], i["source"], i["text"], i["speech"][0], i["speech"][1], i.get("break"),
                      i.get("clean_onset", True), tuple(tuple(w) for w in i.get("words", ()))) for i in items]


# ---- stimuli: audio with its labelled moments ----------------------------------------------------
@dataclass(frozen=True)
class Stimulus:
    """What the caller plays (over line noise), and where its speech is, in seconds from its start."""

    name: str
    pcm: np.ndarray
    speech_start: float
    speech_end: float  # the caller's real end of turn
    first_end: float | None = None  # a paused sentence: where the first half's speech stops

    @property
    def seconds(self) -> float:
        return len(self.pcm) / SAMPLE_RATE


def dbfs(pcm: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
    return 20 * np.log10(max(rms, 1e-9) / 32768)


def active_level(pcm: np.ndarray) -> float:
    """Active speech level (dBFS): the RMS of the 10 ms frames within 30 dB of the loudest one
    (a simple P.56): pauses do not count, so clips of any rhythm compare."""
    frames = pcm[: len(pcm) // 80 * 80].astype(np.float64).reshape(-1, 80)
    energy = (frames ** 2).mean(axis=1)
    active = energy[energy >= energy.max() * 1e-3]
    return 10 * np.log10(max(float(active.mean()), 1e-9) / 32768 ** 2)


def scaled(pcm: np.ndarray, gain_db: float) -> np.ndarray:
    return np.clip(pcm.astype(np.float64) * 10 ** (gain_db / 20), -32768, 32767).astype(np.int16)


def seconds_of(samples: int) -> float:
    return samples / SAMPLE_RATE


def complete(u: Utterance) -> Stimulus:
    return Stimulus(f"{u.id} complete", u.pcm(), u.speech_start, u.speech_end)


def with_pause(u: Utterance, pause_ms: int) -> Stimulus:
    """The sentence with ``pause_ms`` of line noise (the caller adds it) cut in at its break."""
    if u.break_at is None:
        raise ValueError(f"{u.id} has no break")
    pcm = u.pcm()
    cut = round(u.break_at * SAMPLE_RATE)
    gap = np.zeros(pause_ms * SAMPLE_RATE // 1000, dtype=np.int16)
    pause_s = pause_ms / 1000
    return Stimulus(f"{u.id} pause {pause_ms}", np.concatenate([pcm[:cut], gap, pcm[cut:]]), u.speech_start,
                    u.speech_end + pause_s, first_end=u.break_at)


def whole(u: Utterance, name: str = "") -> Stimulus:
    return Stimulus(name or u.id, u.pcm(), u.speech_start, u.speech_end)


ONSET_DBFS = -45.0  # 15 dB over the line's hiss, 19 dB under the caller's speech


def interruption(u: Utterance) -> Stimulus:
    """``u`` spoken over the bot; its speech starts with the first 20 ms frame, as sent, over
    ``ONSET_DBFS``: what a listener on the line hears begin (a soft onset or a breath included,
    which Silero's span may leave out, and which the daemon's VAD may well react to)."""
    pcm = u.pcm()
    frames = pcm[: len(pcm) // 160 * 160].astype(np.float64).reshape(-1, 160)
    loud = np.flatnonzero(20 * np.log10(np.sqrt((frames ** 2).mean(axis=1)) / 32768 + 1e-12) > ONSET_DBFS)
    start = min(loud[0] * 160 / SAMPLE_RATE, u.speech_start) if len(loud) else u.speech_start
    return Stimulus(f"{u.id} over the bot", pcm, start, u.speech_end)


def noise_burst(seed: int) -> Stimulus:
    """A line-noise burst: 0.15-0.5 s of phone-band noise at -32..-20 dBFS with crackle, abrupt
    on and off (a bad line, a handset knock); synthetic, as no recording has one."""
    rng = np.random.default_rng(seed)
    n = int(rng.uniform(0.15, 0.5) * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    hz = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[(hz < 300) | (hz > 3400)] = 0
    noise = np.fft.irfft(spectrum, n)
    crackle = rng.random(n) < 0.004
    noise[crackle] += rng.choice([-1.0, 1.0], crackle.sum()) * 8 * noise.std()
    level = rng.uniform(-32, -20)
    noise *= 32768 * 10 ** (level / 20) / max(noise.std(), 1e-9)
    pcm = np.clip(noise, -32768, 32767).astype(np.int16)
    return Stimulus(f"burst {level:.0f} dBFS {n / SAMPLE_RATE:.2f} s", pcm, 0.0, seconds_of(n))


def background(u: Utterance, offset_s: float, seconds: float) -> Stimulus:
    """``seconds`` of other people talking, from ``offset_s`` into ``u``, 15 dB under the caller."""
    pcm = u.pcm()
    start = round(offset_s * SAMPLE_RATE) % max(1, len(pcm) - round(seconds * SAMPLE_RATE))
    part = pcm[start: start + round(seconds * SAMPLE_RATE)]
    part = scaled(part, CALLER_DBFS - BACKGROUND_BELOW_DB - active_level(part))
    return Stimulus(f"{u.id}+{start / SAMPLE_RATE:.1f}s", part, 0.0, seconds_of(len(part)))


def line_noise(samples: int, seed: int) -> np.ndarray:
    """Float samples of the line's hiss; the caller adds speech to it and encodes each frame."""
    return np.random.default_rng(seed).normal(0.0, 32768 * 10 ** (LINE_NOISE_DBFS / 20), samples)


# ---- cases ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One simulated call. ``kind`` is the table row it counts in. A turn case plays ``stimulus``
    once the greeting has played; an over-the-bot case first says ``trigger`` to get the long
    reply, then plays ``stimulus`` ``over_reply_s`` after that reply starts playing (or, echo,
    only listens to it with ``echo`` on)."""

    kind: str
    stimulus: Stimulus | None
    trigger: Stimulus | None = None
    over_reply_s: float = 3.0
    echo: bool = False
    seed: int = 0
    tags: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def over_the_bot(self) -> bool:
        return self.trigger is not None

    @property
    def name(self) -> str:
        return f"{self.kind}: {self.stimulus.name if self.stimulus else 'echo only'}"


TURN_KINDS = ("complete",) + tuple(f"pause {ms}" for ms in PAUSES_MS)
BOT_KINDS = ("backchannel", "noise burst", "background talk", "interruption", "echo")


def build_cases(labels: Sequence[Utterance], kinds: Sequence[str] = TURN_KINDS + BOT_KINDS,
                tries: int = TRIES) -> list[Case]:
    by_kind: dict[str, list[Utterance]] = {}
    for u in labels:
        by_kind.setdefault(u.kind, []).append(u)
    sentences = by_kind.get("sentence", [])
    speakers = [u for u in sentences + by_kind.get("interruption", []) if u.clean_onset]
    cases: list[Case] = []
    for kind in kinds:
        if kind == "complete":
            cases += [Case(kind, complete(u), tags={"utterance": u.id}) for u in sentences]
        elif kind.startswith("pause "):
            ms = int(kind.split()[1])
            cases += [Case(kind, with_pause(u, ms), tags={"utterance": u.id, "pause_ms": ms}) for u in sentences]
        elif kind not in BOT_KINDS:
            raise ValueError(f"unknown case kind {kind!r}: {', '.join(TURN_KINDS + BOT_KINDS)}")
        for i in range(tries if kind in BOT_KINDS else 0):
            trigger = complete(sentences[i % len(sentences)])
            if kind == "backchannel":
                bc = by_kind["backchannel"]
                stimulus: Stimulus | None = whole(bc[i % len(bc)], f"'{bc[i % len(bc)].text}' ({bc[i % len(bc)].id})")
            elif kind == "noise burst":
                stimulus = noise_burst(seed=100 + i)
            elif kind == "background talk":
                bg = by_kind["background"]
                stimulus = background(bg[i % len(bg)], offset_s=1.3 * i, seconds=4.0)
            elif kind == "interruption":
                stimulus = interruption(speakers[i % len(speakers)])
            else:
                stimulus = None
            # 3.0-4.2 s into the reply: on different words of its second sentence, so that a reply
            # resumed from the sentence the caller was hearing differs from one started anew.
            cases.append(Case(kind, stimulus, trigger, over_reply_s=3.0 + 0.3 * (i % 5), echo=kind == "echo",
                              seed=i))
    return cases


# ---- what the callers say, for the scripted emulator -------------------------------------------------
def split_text(text: str, after: str) -> tuple[str, str]:
    """``text`` split after its first word ``after`` (as ``find_break`` places the break). A comma
    there is the writing's, not the speaker's: a recognizer ends an utterance's final without one."""
    words = text.split()
    k = next((i for i, w in enumerate(words) if plain_words(w) == [after.lower()]), None)
    if k is None or k == len(words) - 1:
        raise ValueError(f"{text!r} has no word {after!r} with words after it")
    return " ".join(words[: k + 1]).rstrip(",;:"), " ".join(words[k + 1:])


def heard_phrases(labels: Sequence[Utterance]) -> list[tuple[str, bytes]]:
    """(text, 8 kHz mu-law) of everything a caller says, for ``voiced-emulator --heard``
    (voiced.emulator.heard): each sentence as its two halves, split at its break (a paused
    sentence's first half is an utterance of its own, and the complete sentence is the halves
    back to back), each interruption and backchannel whole. Background talk and noise bursts
    get none: the emulator answers them with its script, as it answers any audio it was not told of."""
    breaks = {pick[0]: pick[5] for pick in PICKS}
    phrases: list[tuple[str, bytes]] = []
    for u in labels:
        ulaw = read_wav_as_ulaw(os.path.join(CLIPS, f"{u.id}.wav"))
        if u.kind == "sentence" and u.break_at is not None:
            cut = round(u.break_at * SAMPLE_RATE)  # as with_pause cuts the clip
            first, rest = split_text(u.text, breaks[u.id])
            phrases += [(first, ulaw[:cut]), (rest, ulaw[cut:])]
        elif u.kind in ("sentence", "interruption", "backchannel"):
            phrases.append((u.text, ulaw))
    return phrases


# ---- labelling (run once; needs the 16 kHz recordings and faster-whisper) ---------------------------
LABEL_RATE = 16000


def read_source(name: str, dirs: Sequence[str]) -> np.ndarray:
    """The recording ``name`` as float32 at 16 kHz, from the first directory that has a non-silent one
    (``/work/shared/audio``'s dev00.wav and trn01.wav were converted to all zeros: take pyannote's)."""
    import soundfile

    tried = []
    for d in dirs:
        path = os.path.join(d, f"{name}.wav")
        if not os.path.exists(path):
            continue
        audio, rate = soundfile.read(path, dtype="float32")
        if rate != LABEL_RATE or audio.ndim != 1:
            raise SystemExit(f"{path}: expected 16 kHz mono, got {rate} Hz x {audio.ndim} channel(s)")
        if np.abs(audio).max() > 1e-4:
            return audio
        tried.append(f"{path} (all silent)")
    raise SystemExit(f"no usable {name}.wav in {', '.join(dirs)}" + (f"; tried {', '.join(tried)}" if tried else ""))


def quietest_point(audio: np.ndarray, t0: float, t1: float) -> float:
    """The middle of the quietest 10 ms in [t0, t1] (seconds)."""
    hop = LABEL_RATE // 100
    a, b = int(t0 * LABEL_RATE), max(int(t1 * LABEL_RATE), int(t0 * LABEL_RATE) + hop)
    frames = audio[a: a + (b - a) // hop * hop].reshape(-1, hop)
    return t0 + (int(np.argmin((frames ** 2).mean(axis=1))) + 0.5) / 100


def plain_words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def similarity(heard: str, meant: str) -> float:
    return difflib.SequenceMatcher(None, heard, meant).ratio()


def same_word(heard: str, meant: str) -> bool:
    return similarity(heard, meant) >= 0.6


def find_break(clip: np.ndarray, words: list[tuple[str, float, float]], text: str, break_after: str,
               transcribe: Callable[[np.ndarray], list[tuple[str, float, float]]], pick_id: str,
               ) -> tuple[float, list[str]]:
    """Where ``text`` splits after ``break_after``: the quietest 10 ms near Whisper's word boundary
    (whose times are rough) at which each half, transcribed on its own, ends / starts with the
    words either side of the break. Tries the quietest candidates first."""
    meant = plain_words(text)
    k = meant.index(break_after.lower())
    left, right = meant[k], meant[k + 1]
    heard = [(plain_words(w) or [""])[0] for w, _, _ in words]
    i = next((i for i, w in enumerate(heard[:-1]) if same_word(w, left) and same_word(heard[i + 1], right)), None)
    rough = words[i][2] if i is not None else len(clip) / LABEL_RATE / 2
    hop = LABEL_RATE // 100
    lo = max(hop, int((rough - 0.3) * LABEL_RATE) // hop * hop)
    frames = clip[lo: lo + int(0.6 * LABEL_RATE) // hop * hop].reshape(-1, hop)
    tried, picked, best = [], [], (0.0, 0.0, [""])
    for j in np.argsort((frames ** 2).mean(axis=1)):
        if len(picked) == 10:
            break
        if any(abs(int(j) - k) < 4 for k in picked):
            continue  # one candidate per dip: the next quietest 10 ms is usually its neighbour
        picked.append(int(j))
        at = round((lo + (int(j) + 0.5) * hop) / LABEL_RATE, 3)
        halves = [" ".join(w for w, _, _ in transcribe(part)) for part in (clip[: int(at * LABEL_RATE)],
                                                                              clip[int(at * LABEL_RATE):])]
        first, second = plain_words(halves[0]), plain_words(halves[1])
        # How well each half ends / starts with the words either side of the break; Whisper
        # mangles a short word at a cut ("and" heard as "of"), so the better side may carry it.
        score = (similarity(first[-1], left) if first else 0) + (similarity(second[0], right) if second else 0)
        if score > best[0] and not any(same_word(w, right) for w in first):
            best = (score, at, halves)
        tried.append(f"{at:.3f} ({score:.2f}): {halves[0]!r} | {halves[1]!r}")
    if best[0] < 0.6:
        raise SystemExit(f"{pick_id}: no break after {break_after!r} checks out; tried\n  " + "\n  ".join(tried))
    return best[1], best[2]


def audible_onset(clip: np.ndarray, silero_start: float) -> float:
    """Silero's speech start, moved back over the sound that runs into it: it hears a soft onset
    ("oh", a breathy "and") late, and a caller's speech starts with the first audible frame.
    Audible: a 10 ms frame above both the clip's peak - 35 dB and its floor (10th percentile) + 10 dB."""
    hop = LABEL_RATE // 100
    frames = clip[: len(clip) // hop * hop].reshape(-1, hop)
    energy = 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    audible = max(energy.max() - 35, np.percentile(energy, 10) + 10)
    i = int(silero_start * 100)
    while i > 0 and energy[i - 1] > audible:
        i -= 1
    return round(i / 100, 3)


def fade(pcm: np.ndarray, ms: int = 10) -> np.ndarray:
    """10 ms ramps at both ends: a cut through a neighbour's sound must not click."""
    n = min(len(pcm) // 2, SAMPLE_RATE * ms // 1000)
    ramp = np.linspace(0.0, 1.0, n)
    out = pcm.astype(np.float64)
    out[:n] *= ramp
    out[len(out) - n:] *= ramp[::-1]
    return out.astype(np.int16)


def label(dirs: Sequence[str]) -> list[dict[str, Any]]:
    from faster_whisper import WhisperModel
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from voiced.stt.local import bundled_model_path

    model = WhisperModel(bundled_model_path(), device="cpu", compute_type="int8")

    def words_of(clip: np.ndarray) -> list[tuple[str, float, float]]:
        segments, _ = model.transcribe(clip, language="en", beam_size=5, word_timestamps=True,
                                       condition_on_previous_text=False)
        return [(w.word.strip(), round(w.start, 2), round(w.end, 2)) for s in segments for w in s.words]

    os.makedirs(CLIPS, exist_ok=True)
    out = []
    for pick_id, kind, source, cut0, cut1, break_after, text in PICKS:
        clip = read_source(source, dirs)[int(cut0 * LABEL_RATE): int(cut1 * LABEL_RATE)]
        # Silero ends a span only once it has heard the silence after it: pad the clip with some.
        pad = np.zeros(int(0.5 * LABEL_RATE), dtype=np.float32)
        spans = get_speech_timestamps(np.concatenate([pad, clip, pad]),
                                      VadOptions(threshold=0.5, min_silence_duration_ms=50, speech_pad_ms=0))
        if not spans:
            raise SystemExit(f"{pick_id}: Silero finds no speech in {source} {cut0}-{cut1}")
        clip_s = len(clip) / LABEL_RATE
        silero = tuple(round(min(max(t / LABEL_RATE - 0.5, 0.0), clip_s), 3)
                       for t in (spans[0]["start"], spans[-1]["end"]))
        speech = (audible_onset(clip, silero[0]), silero[1])
        words = words_of(clip)
        item: dict[str, Any] = {"id": pick_id, "kind": kind, "source": source, "cut": [cut0, cut1], "text": text,
                                "speech": list(speech), "silero": list(silero),
                                "whisper": " ".join(w for w, _, _ in words), "words": words}
        if break_after:
            item["break"], item["halves"] = find_break(clip, words, text, break_after, words_of, pick_id)
        pcm16 = (np.clip(clip, -1, 1) * 32767).astype(np.int16)
        pcm8 = np.frombuffer(resample_pcm16(pcm16.tobytes(), LABEL_RATE, SAMPLE_RATE), dtype=np.int16)
        in_speech = pcm8[int(speech[0] * SAMPLE_RATE): int(speech[1] * SAMPLE_RATE)]
        level = active_level(in_speech)
        # Speech at the caller's level; background talk too (turn_taking mixes it 15 dB lower).
        gain = CALLER_DBFS - level
        item["level_dbfs"], item["gain_db"] = round(level, 1), round(gain, 1)
        # Whether the clip starts quiet (its first 50 ms 20 dB under its speech): only those time an
        # interruption from their onset, as a clip cut out of a breath or a neighbour's word does not.
        item["clean_onset"] = bool(dbfs(pcm8[: SAMPLE_RATE // 20]) < level - 20)
        ulaw = pcm16_to_ulaw(fade(scaled(pcm8, gain)).tobytes())
        with open(os.path.join(CLIPS, f"{pick_id}.wav"), "wb") as f:
            f.write(wav_bytes(ulaw, SAMPLE_RATE, WAVE_FORMAT_MULAW, 8))
        # And what a phone line leaves of it: the 8 kHz mu-law clip as voiced's Whisper would hear it.
        back = np.frombuffer(resample_pcm16(ulaw_to_pcm16(ulaw), SAMPLE_RATE, LABEL_RATE), dtype=np.int16)
        item["whisper_8k"] = " ".join(w for w, _, _ in words_of(back.astype(np.float32) / 32768))
        out.append(item)
        print(f"{pick_id:3} {kind:12} {source:6} {cut0:6.2f}-{cut1:6.2f} speech {speech[0]:.2f}-{speech[1]:.2f} "
              f"({speech[1] - speech[0]:.2f} s) level {level:.0f} dBFS  {item['whisper']!r}"
              + (f"\n    break {item['break']:.3f}: {item['halves'][0]!r} | {item['halves'][1]!r}"
                 if break_after else "")
              + f"\n    8 kHz: {item['whisper_8k']!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    lab = sub.add_parser("label", help="label PICKS from the 16 kHz recordings; write data/turn_labels.json and clips")
    lab.add_argument("--source", action="append", required=True, metavar="DIR",
                     help="a directory of the recordings (sample.wav, dev00.wav, ...); the first with a file wins")
    show = sub.add_parser("show", help="list the cases the bench builds")
    show.add_argument("--tries", type=int, default=TRIES)
    args = parser.parse_args(argv)
    if args.command == "label":
        clips = label(args.source)
        with open(LABELS, "w") as f:
            json.dump({"about": "bench/turn_cases.py label: Silero VAD speech spans, faster-whisper tiny.en words; "
                                "times in seconds from each clip's start (clip = source[cut])",
                       "caller_dbfs": CALLER_DBFS, "clips": clips}, f, indent=1)
        print(f"wrote {LABELS} and {len(clips)} clips in {CLIPS}")
    else:
        for case in build_cases(load_labels(), tries=args.tries):
            s = case.stimulus
            print(f"{case.name:48} " + (f"{s.seconds:5.2f} s, speech {s.speech_start:.2f}-{s.speech_end:.2f}"
                                         if s else "") + (f"  after {case.trigger.name}" if case.trigger else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
