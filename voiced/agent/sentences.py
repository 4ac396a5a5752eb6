"""Streamed reply text -> sentences, each spoken as soon as it is complete.

An LLM sends a word or less at a time. Speech has to start before the reply is
finished, but a sentence cut in the middle sounds wrong, so text is held until a
sentence ends: terminal punctuation followed by whitespace (the whitespace proves
"3.5" or "e.g." is not an end), a line break, or a CJK full stop. The first piece of
a reply may also end at a clause (a comma, semicolon or colon) once it is long
enough, because the first audio is what the caller waits for. A run of text with no
boundary at all is cut at a word once it grows past ``max_chars``.

Hebrew replies bring three things English does not. Models put bidi marks (RLM and
friends) after a full stop, before the space, so the marks belong to the sentence they
follow. Abbreviations use geresh and gershayim (ASCII ' and " or U+05F3/U+05F4) inside
a word, as in ת"א, which is never a closing quote, since a closing quote only counts
after the terminal punctuation. And some abbreviations end in a full stop ("רח.",
"מס."), like English "Dr.".
"""

from __future__ import annotations

import re

from voiced.language import BIDI_MARKS

# Directional marks and embedding/isolate controls: invisible, not speech, not space.
_BIDI = BIDI_MARKS
_SPEECH = re.compile(rf"[^\s{_BIDI}]")
_SILENT_RUN = re.compile(rf"[\s{_BIDI}]*")
# Closing quotes and brackets belong to the sentence they close. Hebrew uses the
# ASCII quotes, gershayim/geresh as quote marks, and “ or » as closing marks.
_CLOSERS = "\"'\u201d\u2019\u201c\u05f4\u05f3\u00bb)\\]"
# A sentence end (Hebrew sof pasuq U+05C3 included), then the whitespace that confirms it.
_SENTENCE_END = re.compile(
    rf"[.!?\u2026\u05c3]+[{_CLOSERS}{_BIDI}]*(?=\s)|[\u3002\uff01\uff1f]|\n")
_CLAUSE_END = re.compile(rf"[,;:\u060c][{_BIDI}]*(?=\s)")
_OPENERS = "(\"'\u201c\u201e\u05f4\u05f3\u00ab["
# Not sentence ends although they end in a full stop.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr prof vs etc no approx dept apt ave inc ltd co e.g i.e a.m p.m".split()
)
# Hebrew abbreviations written with a full stop that a sentence does not end on: titles
# before a name (Dr., Prof., Mrs., Hon.), street and boulevard, page, P.O. box, and
# "etc."/"and the like".
_HEBREW_ABBREVIATIONS = frozenset(['ד"ר', "פרופ", "גב", "כב", "רח", "שד", "עמ", "ת.ד", "וכו", "וכד"])
# Hebrew glues one-letter prepositions and conjunctions to the next word ("לד"ר", "בעמ."),
# or joins them with a hyphen before an abbreviation ("ב-רח."). Glued on, only these
# abbreviations may carry them: the others become words that do end sentences ("ברח." is
# "he fled", "שכב." "lay down", "בגב." "in the back").
_HEBREW_PREFIXES = "והבלמשכ"
_HEBREW_PREFIXABLE = frozenset(['ד"ר', "פרופ", "עמ", "ת.ד"])
# Abbreviations that are only abbreviations before a number, because the same letters
# also end sentences: "מס. 5" (No. 5) but "שילמנו מס." (we paid tax); "טל. 03..." (tel.)
# but "שמי טל." (my name is Tal); ID, company and dealer numbers but "נא להביא ת.ז." (bring ID).
# The number decides, so they may carry a prefix.
_HEBREW_NUMBER_ABBREVIATIONS = frozenset(["מס", "טל", "ת.ז", "ח.פ", "ע.מ"])


def _speakable(text: str) -> bool:
    return _SPEECH.search(text) is not None


def _hebrew_key(word: str) -> str:
    # ״/׳ and "/' are the same marks typed two ways; a geresh before the full stop
    # ("רח'.") is the abbreviation's own mark.
    word = word.replace("\u05f4", '"').replace("\u05f3", "'").lstrip(_OPENERS)
    return word[:-1] if word.endswith("'") else word


def _hebrew_abbreviation(key: str) -> str | None:
    for length in (0, 1, 2):
        if not all(letter in _HEBREW_PREFIXES for letter in key[:length]):
            break
        bare, hyphened = key[length:], False
        if length and bare[:1] in "-\u05be":
            bare, hyphened = bare[1:], True
        if bare in _HEBREW_NUMBER_ABBREVIATIONS:
            return "before a number"
        if bare in _HEBREW_ABBREVIATIONS and (not length or hyphened or bare in _HEBREW_PREFIXABLE):
            return "always"
    return None


def _abbreviation_at(text: str, dot_at: int) -> str | None:
    """"always" or "before a number" if the full stop at ``dot_at`` ends an abbreviation."""
    if text[dot_at] != ".":
        return None
    before = text[:dot_at].split()
    if not before:
        return None
    word = before[-1].strip(_BIDI)
    if word.lstrip("(\"'").lower() in _ABBREVIATIONS:
        return "always"
    return _hebrew_abbreviation(_hebrew_key(word))


def _number_follows(text: str, at: int) -> bool | None:
    """Whether a number comes next after ``at``; None while the stream has not said."""
    at = _SILENT_RUN.match(text, at).end()
    if at == len(text):
        return None
    return text[at].isdigit() or text[at] == "+"


class SentenceSplitter:
    def __init__(self, first_clause_chars: int = 40, max_chars: int = 240) -> None:
        self.first_clause_chars = first_clause_chars
        self.max_chars = max_chars
        self._pending = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        """Add streamed text; returns the sentences it completed, in order."""
        self._pending += delta
        out: list[str] = []
        while (piece := self._next_piece()) is not None:
            out.append(piece)
        return out

    def flush(self) -> list[str]:
        """The reply is complete: whatever is pending is its last sentence. Bidi marks
        with no text after them direct nothing and are dropped."""
        rest, self._pending = self._pending.strip(), ""
        return self._take([rest] if _speakable(rest) else [])

    def _next_piece(self) -> str | None:
        text = self._pending
        for match in _SENTENCE_END.finditer(text):
            kind = _abbreviation_at(text, match.start())
            if kind == "always":
                continue
            if kind == "before a number":
                number = _number_follows(text, match.end())
                if number is None:
                    return None  # the next character decides, and later ends must wait for it
                if number:
                    continue
            if not _speakable(text[:match.end()]) and text[:match.end()].strip():
                continue  # bidi marks alone before a line break go with the text after it
            return self._cut(match.end())
        if self._emitted == 0:
            for match in _CLAUSE_END.finditer(text):
                if match.end() >= self.first_clause_chars:
                    return self._cut(match.end())
        if len(text) > self.max_chars:
            space = text.rfind(" ", 0, self.max_chars)
            at = space if space > 0 else self.max_chars
            if _speakable(text[:at]) or not text[:at].strip():
                return self._cut(at)
        return None

    def _cut(self, at: int) -> str | None:
        piece, self._pending = self._pending[:at].strip(), self._pending[at:].lstrip()
        if not piece:  # a boundary with nothing before it (a blank line)
            return self._next_piece()
        return self._take([piece])[0]

    def _take(self, pieces: list[str]) -> list[str]:
        self._emitted += len(pieces)
        return pieces
