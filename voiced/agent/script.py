"""The embedded default agent: a dialog script (``voiced.agent.dialog``) with forgiving
keyword intents.

Matching has to survive Whisper tiny through an 8 kHz phone line ("opening ours",
"good bye", "by now"), so it compares words, not strings: both sides are normalized
(lower case; punctuation, apostrophes and digits dropped; -ing/-ed/-s stripped),
filler words are dropped from phrases, and each remaining phrase word counts with its
difflib similarity to the closest caller word or adjacent word pair (when at least
``WORD_CUTOFF``). A phrase scores the mean over its words; the best phrase over
``MATCH_THRESHOLD`` wins, a longer phrase beats a shorter one on equal scores (it is
more specific), and then the intent written first wins.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Iterable

from twisted.internet.defer import Deferred, maybeDeferred

from voiced.agent.base import CallInfo, Dtmf, EndCall, Idle, ReplySink, TransferCall, TurnRequest, Voicemail
from voiced.agent.dialog import Dialog, Intent, load_dialog, words
from voiced.agent.variables import KeepUnknown, fill
from voiced.language import primary
from voiced.lifecycle import note_construction
from voiced.options import default

# A phrase must reach this mean word similarity. 0.85 keeps a lone short keyword
# from matching a one-letter slip ("by" is 0.80 of "bye": "come by" must not hang
# up) while a two-word phrase tolerates one such slip ("by now" is 0.90 of "bye now").
MATCH_THRESHOLD = 0.85
# A phrase word below this similarity to every caller word counts as missing.
WORD_CUTOFF = 0.8

# Words that carry no intent in a front-desk request; dropped from phrases (unless a
# phrase has nothing else) so that "talk to a person" needs only "talk" and "person".
_FILLER_EN = frozenset(
    """a an the i id im ive me my you your youre we were us it its is are am be been was
    do does did can could would will should please like want to of for in on at and or so
    um uh uhm oh well just hi hello hey okay ok""".split()
)

# Hebrew's pronouns, particles and politeness: "אני רוצה לדעת מה השעות" needs only "השעות".
_FILLER_HE = frozenset(
    """אני אתה את אתם אתן הוא היא אנחנו הם זה זאת של על עם אם גם רק יש לי לך לכם לנו רוצה רוצים
    רציתי אפשר בבקשה אה אמ אממ נו שלום היי הלו תגיד תגידי תגידו לדעת""".split()
)
_FILLERS = {"en": _FILLER_EN, "he": _FILLER_HE}

_TRAILING_PUNCTUATION = " \t.,;:!?\u2026"


def stem(word: str) -> str:
    """Strip one common English ending, keeping at least three letters."""
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word



class IntentMatcher:
    """Scores caller text against every intent's phrases; shared by all calls.

    What a caller word is similar to depends only on the word and the dialog, so it is
    worked out once per process (difflib is the cost of a turn) and kept for the next
    caller who says it: callers repeat each other's words far more than they invent them.
    """

    def __init__(self, intents: Iterable[Intent], language: str, memo_words: int = 4096) -> None:
        filler = _FILLERS.get(primary(language), frozenset())
        self._table = [
            (intent, [self._phrase_words(p, filler) for p in intent.phrases]) for intent in intents
        ]
        self._vocabulary = sorted({w for _, phrases in self._table for phrase in phrases for w in phrase})
        self._similar_words = lru_cache(maxsize=memo_words)(self._similar_words_uncached)

    @staticmethod
    def _phrase_words(phrase: str, filler: frozenset[str]) -> tuple[str, ...]:
        all_words = words(phrase)
        content = [w for w in all_words if w not in filler] or all_words
        return tuple(dict.fromkeys(stem(w) for w in content))

    def _similar_words_uncached(self, heard: str) -> tuple[tuple[str, float], ...]:
        """Every dialog word whose difflib ratio to ``heard`` reaches ``WORD_CUTOFF``."""
        matcher = SequenceMatcher(a=heard)
        similar = []
        for word in self._vocabulary:
            if word == heard:
                similar.append((word, 1.0))
                continue
            matcher.set_seq2(word)
            if matcher.real_quick_ratio() >= WORD_CUTOFF and matcher.quick_ratio() >= WORD_CUTOFF:
                ratio = matcher.ratio()
                if ratio >= WORD_CUTOFF:
                    similar.append((word, ratio))
        return tuple(similar)

    def best(self, text: str) -> Intent | None:
        heard = words(text)
        candidates = {stem(w) for w in heard}
        # Phone STT splits and joins words ("good bye", "a dress"): try adjacent pairs too.
        candidates.update(stem(a + b) for a, b in zip(heard, heard[1:]))
        if not candidates:
            return None
        # Each dialog word's similarity to its closest caller word.
        similarity: dict[str, float] = {}
        for candidate in candidates:
            for word, ratio in self._similar_words(candidate):
                if ratio > similarity.get(word, 0.0):
                    similarity[word] = ratio
        if not similarity:
            return None
        best: Intent | None = None
        best_key = (MATCH_THRESHOLD, 0)
        for intent, phrases in self._table:
            for phrase in phrases:
                score = round(sum(similarity.get(w, 0.0) for w in phrase) / len(phrase), 6)
                key = (score, len(phrase))
                if key > best_key:  # strictly: an equal score keeps the earlier intent
                    best, best_key = intent, key
        return best


class ScriptConversation:
    """Stateless between turns: the call keeps the history, and the script needs none."""

    def __init__(self, dialog: Dialog, matcher: IntentMatcher, variables: dict[str, str] | None = None) -> None:
        self._dialog = dialog
        self._matcher = matcher
        # An outbound call's variables fill the dialog's {name} placeholders (voiced.agent.variables).
        self._variables = variables or {}

    def greeting(self) -> list[str]:
        return [fill(sentence, self._variables) for sentence in self._dialog.greeting]

    def respond(self, request: TurnRequest, sink: ReplySink) -> Deferred[None]:
        return maybeDeferred(self._respond, request, sink)

    def _respond(self, request: TurnRequest, sink: ReplySink) -> None:
        response = self._response(request)
        filled = response.name == "fallback"  # _response filled it (the caller's words are not a template)
        for sentence in response.reply:
            sink.sentence(sentence if filled else fill(sentence, self._variables))
        if response.hang_up:
            sink.action(EndCall())
        elif response.transfer:
            sink.action(TransferCall(response.transfer))

    def _response(self, request: TurnRequest) -> Intent:
        dialog = self._dialog
        if isinstance(request.event, Idle):
            return Intent("idle", (), dialog.idle)
        if isinstance(request.event, Voicemail):
            return Intent("voicemail", (), dialog.voicemail, hang_up=True)
        if isinstance(request.event, Dtmf):
            return dialog.keys.get(request.event.digit) or Intent("dtmf", (), dialog.reprompt)
        said = " ".join(request.text.split()).strip(_TRAILING_PUNCTUATION)
        if not re.search(r"\w", said):
            return Intent("reprompt", (), dialog.reprompt)
        intent = self._matcher.best(said)
        if intent is not None:
            return intent
        # {text} is what the caller said; the call's variables fill the rest.
        values = {**self._variables, "text": said}
        reply = tuple(s.text.format_map(KeepUnknown(values)) if s.templated else s.text for s in dialog.fallback)
        return Intent("fallback", (), reply)


class ScriptAgent:
    name = "script"

    def __init__(self, script_path: str = "", language: str = default("language")) -> None:
        self.dialog = load_dialog(script_path, language)
        self.language = language
        self._matcher = IntentMatcher(self.dialog.intents, language)
        note_construction("agent_script")

    def start_conversation(self, call: CallInfo) -> ScriptConversation:
        return ScriptConversation(self.dialog, self._matcher, call.variables)

    def fixed_phrases(self) -> list[str]:
        d = self.dialog
        phrases = [*d.greeting, *d.reprompt, *d.idle, *d.voicemail]
        for intent in (*d.intents, *d.keys.values()):
            phrases.extend(intent.reply)
        phrases.extend(s.text for s in d.fallback if not s.templated)
        return list(dict.fromkeys(phrases))
