"""Streamed reply text -> sentences, each spoken as soon as it is complete.

An LLM sends a word or less at a time. Speech has to start before the reply is
finished, but a sentence cut in the middle sounds wrong, so text is held until a
sentence ends: terminal punctuation followed by whitespace (the whitespace proves
"3.5" or "e.g." is not an end), a line break, or a CJK full stop. The first piece of
a reply may also end at a clause (a comma, semicolon or colon) once it is long
enough, because the first audio is what the caller waits for. A run of text with no
boundary at all is cut at a word once it grows past ``max_chars``.
"""

from __future__ import annotations

import re

# A sentence end, then the whitespace that confirms it. Closing quotes and brackets
# belong to the sentence they close.
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)|[\u3002\uff01\uff1f]|\n")
_CLAUSE_END = re.compile(r"[,;:\u060c](?=\s)")
# Not sentence ends although they end in a full stop.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr prof vs etc no approx dept apt ave inc ltd co e.g i.e a.m p.m".split()
)


def _is_abbreviation(text: str, dot_at: int) -> bool:
    if text[dot_at] != ".":
        return False
    before = text[:dot_at].split()
    return bool(before) and before[-1].lstrip("(\"'").lower() in _ABBREVIATIONS


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
        """The reply is complete: whatever is pending is its last sentence."""
        rest, self._pending = self._pending.strip(), ""
        return self._take([rest] if rest else [])

    def _next_piece(self) -> str | None:
        text = self._pending
        for match in _SENTENCE_END.finditer(text):
            if _is_abbreviation(text, match.start()):
                continue
            return self._cut(match.end())
        if self._emitted == 0:
            for match in _CLAUSE_END.finditer(text):
                if match.end() >= self.first_clause_chars:
                    return self._cut(match.end())
        if len(text) > self.max_chars:
            space = text.rfind(" ", 0, self.max_chars)
            return self._cut(space if space > 0 else self.max_chars)
        return None

    def _cut(self, at: int) -> str | None:
        piece, self._pending = self._pending[:at].strip(), self._pending[at:].lstrip()
        if not piece:  # a boundary with nothing before it (a blank line)
            return self._next_piece()
        return self._take([piece])[0]

    def _take(self, pieces: list[str]) -> list[str]:
        self._emitted += len(pieces)
        return pieces
