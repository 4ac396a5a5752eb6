"""What the scripted emulator heard: audio it has been told about, and the words said in it.

A bench or test that knows the audio its callers send (a sentence; each half of one with
a pause cut in) gives the scripted mode a table of *phrases*, each its text and its
audio (``--heard FILE``). An utterance's transcript is then the words of the phrases
found in it, in the order they were said, as a real recognizer's would be: the first
half of a paused sentence gets a final of its own words ("what's the username and"),
not a fixed script. Audio the table does not know gets the script, as before.

Finding a phrase: each has key snippets, 64 ms from its loud parts (the loudest in
each 200 ms of it), and each snippet carries the phrase's words around it (by their
share of the phrase's letters), so that an utterance holding only part of a phrase gets
only that part's words. A snippet is found where the utterance's audio equals it to
within ``MATCH_RESIDUAL`` of its energy (17 dB): line hiss and mu-law's rounding on
the way are far under that (25-40 dB), while other speech, or the same speech 15 dB
down as background talk, is far over it. A snippet that fits anywhere else in the
table's audio even within ``AMBIGUOUS_RESIDUAL`` (10 dB) is no key: noise could tip such a
place under the match. Fits closer than ``PLACE_SAMPLES`` are one place (a steady vowel
fits itself a few pitch periods on). The search (FFT correlation, over the audio not
searched yet) runs only when a partial or a final is due, never per frame.

The file is JSON: ``{"phrases": [{"text": "...", "ulaw": "<base64>"}, ...]}``, audio
as 8 kHz mu-law or (``"pcm16"``) 8 kHz 16-bit little-endian PCM, base64.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from voiced.audio import FRAME_MS, SAMPLE_RATE, ulaw_to_pcm16

SNIPPET_MS = 64  # long enough to span more than a steady vowel's few pitch periods
SNIPPET_SAMPLES = SAMPLE_RATE * SNIPPET_MS // 1000
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
SNIPPET_EVERY = SAMPLE_RATE * 200 // 1000  # one key snippet per this much of a phrase
SNIPPET_STEP = SAMPLE_RATE * 5 // 1000  # candidate snippets start this far apart
#: A snippet's audio must be at least this loud (RMS) to be a key: the scripted mode's
#: LOUD_RMS (200) twice over, so that a key is speech, not its fading edge.
KEY_MIN_RMS = 400.0
#: Found: the audio differs from the snippet by at most this share of the snippet's energy.
MATCH_RESIDUAL = 0.02
#: A snippet that fits another place this well is too like it to be a key.
AMBIGUOUS_RESIDUAL = 0.1
#: A key's fits closer together than this are one place (the best fit of them).
PLACE_SAMPLES = SNIPPET_EVERY
FFT_SIZE = 4096
#: The utterance's audio starts this long before its first loud frame (a key may begin there).
PREROLL_SAMPLES = SAMPLE_RATE * 100 // 1000


@dataclass(frozen=True)
class Phrase:
    text: str
    pcm: np.ndarray  # int16, 8 kHz


class HeardTable:
    """The phrases' key snippets, ready to search; shared (read-only) by every stream."""

    def __init__(self, phrases: Sequence[Phrase]) -> None:
        if not phrases:
            raise ValueError("the heard table has no phrases")
        keys: list[tuple[int, int]] = []  # (phrase, start sample in it)
        for number, phrase in enumerate(phrases):
            starts = _key_starts(phrase.pcm)
            if not starts:
                raise ValueError(f"phrase {number + 1} ({phrase.text!r}) has no {SNIPPET_MS} ms of audio louder than "
                                 f"RMS {KEY_MIN_RMS:g}: nothing the scripted mode would hear as speech")
            keys += [(number, start) for start in starts]
        self.phrases = tuple(phrases)
        self._set_keys(keys)
        # A key found anywhere but its own place (a phrase that repeats itself, or two phrases
        # sharing audio) would put words where they were not said: such keys are left out.
        ambiguous: set[int] = set()
        for number, phrase in enumerate(phrases):
            for at, key in _find(self, phrase.pcm.astype(np.float64), AMBIGUOUS_RESIDUAL):
                if self._key_phrase[key] != number or abs(self._key_start[key] - at) >= PLACE_SAMPLES:
                    ambiguous.add(key)
        kept = [k for i, k in enumerate(keys) if i not in ambiguous]
        lost = sorted({p for p, _ in keys} - {p for p, _ in kept})
        if lost:
            names = ", ".join(f"{n + 1} ({phrases[n].text!r})" for n in lost)
            raise ValueError(f"phrase(s) {names}: all of its audio is found elsewhere too (a phrase that "
                             "repeats itself, or audio two phrases share): the table cannot tell where it was said")
        self._set_keys(kept)
        self.key_words = _words_of_keys(phrases, kept)

    def _set_keys(self, keys: list[tuple[int, int]]) -> None:
        self._key_phrase = [p for p, _ in keys]
        self._key_start = [s for _, s in keys]
        snippets = np.stack([self.phrases[p].pcm[s: s + SNIPPET_SAMPLES].astype(np.float64) for p, s in keys])
        self.energy = (snippets ** 2).sum(axis=1)
        self.spectra = np.conj(np.fft.rfft(snippets, FFT_SIZE, axis=1))

    @property
    def keys(self) -> int:
        return len(self._key_start)


def _key_starts(pcm: np.ndarray) -> list[int]:
    """The start of the loudest key-long stretch in each 200 ms of ``pcm`` that has one loud enough."""
    if len(pcm) < SNIPPET_SAMPLES:
        return []
    squares = np.concatenate([[0.0], np.cumsum(pcm.astype(np.float64) ** 2)])
    candidates = np.arange(0, len(pcm) - SNIPPET_SAMPLES + 1, SNIPPET_STEP)
    energy = squares[candidates + SNIPPET_SAMPLES] - squares[candidates]
    starts = []
    for lo in range(0, len(pcm), SNIPPET_EVERY):
        inside = np.flatnonzero((candidates >= lo) & (candidates < lo + SNIPPET_EVERY))
        if len(inside):
            best = inside[int(np.argmax(energy[inside]))]
            if energy[best] >= KEY_MIN_RMS ** 2 * SNIPPET_SAMPLES:
                starts.append(int(candidates[best]))
    return starts


def _words_of_keys(phrases: Sequence[Phrase], keys: list[tuple[int, int]]) -> list[str]:
    """Each key's share of its phrase's words: a word goes to the key nearest to where it is
    said, its place estimated from its share of the letters over the phrase's loud span."""
    words_of = [""] * len(keys)
    for number, phrase in enumerate(phrases):
        mine = [i for i, (p, _) in enumerate(keys) if p == number]
        centres = np.array([keys[i][1] + SNIPPET_SAMPLES / 2 for i in mine])
        loud = np.flatnonzero(np.abs(phrase.pcm.astype(np.int32)) > KEY_MIN_RMS)
        first, last = (int(loud[0]), int(loud[-1])) if len(loud) else (0, len(phrase.pcm))
        words = phrase.text.split()
        sizes = np.array([len(w) + 1 for w in words], dtype=np.float64)
        shares = (np.cumsum(sizes) - sizes / 2) / sizes.sum()
        groups: list[list[str]] = [[] for _ in mine]
        for word, share in zip(words, shares):
            groups[int(np.argmin(np.abs(centres - (first + share * (last - first)))))].append(word)
        for i, group in zip(mine, groups):
            words_of[i] = " ".join(group)
    return words_of


def _find(table: HeardTable, audio: np.ndarray, within: float = MATCH_RESIDUAL) -> list[tuple[int, int]]:
    """(position, key) of every key found (fitting ``within``) in ``audio`` (float samples); one
    position per place (the best of the fits closer together than ``PLACE_SAMPLES``)."""
    n = SNIPPET_SAMPLES
    hits: dict[int, tuple[float, int]] = {}  # key -> its latest place (residual share, position)
    found: list[tuple[int, int]] = []
    step = FFT_SIZE - n + 1
    for lo in range(0, len(audio) - n + 1, step):
        block = audio[lo: lo + FFT_SIZE]
        valid = min(step, len(block) - n + 1)
        correlation = np.fft.irfft(np.fft.rfft(block, FFT_SIZE)[None, :] * table.spectra, FFT_SIZE, axis=1)
        squares = np.concatenate([[0.0], np.cumsum(block ** 2)])
        window = squares[n: n + valid] - squares[:valid]
        residual = (window[None, :] - 2 * correlation[:, :valid] + table.energy[:, None]) / table.energy[:, None]
        for key, at in zip(*np.nonzero(residual <= within)):
            position, share = lo + int(at), float(residual[key, at])
            previous = hits.get(int(key))
            if previous is not None and position - found[previous[1]][0] < PLACE_SAMPLES:
                if share < previous[0]:
                    found[previous[1]] = (position, int(key))
                    hits[int(key)] = (share, previous[1])
                continue
            hits[int(key)] = (share, len(found))
            found.append((position, int(key)))
    return found


class Listening:
    """One stream's recent audio, searched for the table's keys as its utterances go on.

    ``keep`` every byte the stream receives; ``speech_started`` at an utterance's first
    loud sample; ``words_until`` (a partial or final is due) searches what came since
    the last search and answers the utterance's words so far ("" for none known);
    ``utterance_ended`` forgets them. Audio outside utterances is kept only ``PREROLL_SAMPLES``
    back.
    """

    def __init__(self, table: HeardTable) -> None:
        self._table = table
        self._audio = bytearray()
        self._base = 0  # the stream's sample number of _audio[0]
        self._start: int | None = None  # the utterance's first sample (None: not in one)
        self._searched = 0  # key positions before this sample have been searched
        self._hits: list[tuple[int, int]] = []  # (position, key) in the current utterance

    def keep(self, pcm16: bytes) -> None:
        if self._start is None and len(self._audio) > 8 * PREROLL_SAMPLES * 2:
            # Speech can begin no earlier than the frame this chunk completes.
            self._forget_before(self._base + len(self._audio) // 2 - FRAME_SAMPLES - PREROLL_SAMPLES)
        self._audio += pcm16

    def speech_started(self, sample: int) -> None:
        self._start = self._searched = max(self._base, sample - PREROLL_SAMPLES)
        self._hits = []

    def words_until(self, sample: int) -> str:
        if self._start is None:
            return ""
        first = self._searched
        audio = np.frombuffer(self._audio, dtype="<i2", count=max(0, sample - first),
                              offset=2 * (first - self._base)).astype(np.float64)
        for at, key in _find(self._table, audio):
            # A place whose fits straddle the previous search's end was found by that search.
            if not any(k == key and abs(first + at - a) < PLACE_SAMPLES for a, k in self._hits):
                self._hits.append((first + at, key))
        self._searched = max(first, sample - SNIPPET_SAMPLES + 1)
        self._hits.sort()
        words = self._table.key_words
        return " ".join(words[key] for _at, key in self._hits if words[key])

    def utterance_ended(self, sample: int) -> None:
        self._start = None
        self._hits = []
        self._forget_before(sample - PREROLL_SAMPLES)

    def _forget_before(self, sample: int) -> None:
        drop = max(0, min(sample - self._base, len(self._audio) // 2))
        del self._audio[: drop * 2]
        self._base += drop


# ---- the file ------------------------------------------------------------------------------------
def load_heard(path: str) -> HeardTable:
    """Read a heard table (see the module's docstring); ValueError says what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except OSError as e:
        raise ValueError(f"cannot read the heard table {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ValueError(f"the heard table {path} is not JSON: {e}") from None
    return parse_heard(document, path)


def parse_heard(document: Any, where: str = "the heard table") -> HeardTable:
    items = document.get("phrases") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError(f'{where}: expected {{"phrases": [{{"text": ..., "ulaw": base64}}, ...]}} with a phrase')
    phrases = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            raise ValueError(f"{where}: phrase {number} needs a non-empty \"text\"")
        kinds = [k for k in ("ulaw", "pcm16") if k in item]
        if len(kinds) != 1 or not isinstance(item[kinds[0]], str):
            raise ValueError(f"{where}: phrase {number} needs its audio as one of \"ulaw\" or \"pcm16\" (base64)")
        try:
            audio = base64.b64decode(item[kinds[0]], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{where}: phrase {number}'s {kinds[0]} is not base64") from None
        if kinds[0] == "pcm16" and len(audio) % 2:
            raise ValueError(f"{where}: phrase {number}'s pcm16 has an odd number of bytes")
        pcm = ulaw_to_pcm16(audio) if kinds[0] == "ulaw" else audio
        phrases.append(Phrase(item["text"].strip(), np.frombuffer(pcm, dtype="<i2").astype(np.int16)))
    try:
        return HeardTable(phrases)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def heard_document(phrases: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """The file's content for (text, 8 kHz mu-law) phrases: what a bench writes."""
    return {"phrases": [{"text": text, "ulaw": base64.b64encode(ulaw).decode("ascii")} for text, ulaw in phrases]}
