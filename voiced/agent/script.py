"""The embedded default agent: a dialog script with forgiving keyword intents.

A script is a small UTF-8 text file (the shipped example is ``front_desk.dialog``)::

    # comment (also ; at the start of a line)
    [greeting]
    say = Hello, thanks for calling. How can I help you?

    [reprompt]
    say = Sorry, I didn't catch that.

    [fallback]
    say = I heard you say: {text}. I can tell you our opening hours.

    [intent hours]
    match = hours, opening hours, what time do you open,
            when are you open
    say = We are open from 8 AM to 6 PM.
    hangup = no

``greeting``, ``reprompt`` and ``fallback`` are required; ``[intent NAME]`` sections
are optional and matched in file order. ``match`` holds comma-separated phrases and
may repeat; an indented line continues the previous value; ``hangup = yes`` ends the
call once the reply has played, ``transfer = +15551234567`` transfers it. ``[idle]``
is said when the caller has been silent for a while; ``[dtmf D]`` answers the key D
(``say``, ``hangup``, ``transfer`` as in an intent). In the fallback, ``{text}`` is what the caller said
(``{{``/``}}`` for literal braces). Any error is a ``ValueError`` naming file and line.

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
import string
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache
from importlib import resources
from typing import Iterable

from twisted.internet.defer import Deferred, maybeDeferred

from voiced.call.control import check_transfer_target
from voiced.agent.base import CallInfo, Dtmf, EndCall, Idle, ReplySink, TransferCall, TurnRequest
from voiced.language import canonical, primary
from voiced.lifecycle import note_construction

DEFAULT_SCRIPT = "front_desk.dialog"

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

_APOSTROPHES = re.compile("['\u2018\u2019`]")
_SEPARATORS = re.compile(r"[\W\d_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])\s+(?![a-z])")
_TRAILING_PUNCTUATION = " \t.,;:!?\u2026"
_SECTION = re.compile(r"\[\s*([A-Za-z]+)(?:\s+(\S.*?))?\s*\]$")


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` without punctuation, apostrophes or digits."""
    return [w for w in _SEPARATORS.split(_APOSTROPHES.sub("", text.lower())) if w]


def stem(word: str) -> str:
    """Strip one common English ending, keeping at least three letters."""
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def split_sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


@dataclass(frozen=True)
class Intent:
    name: str
    phrases: tuple[str, ...]
    reply: tuple[str, ...]  # sentences
    hang_up: bool = False
    transfer: str = ""


@dataclass(frozen=True)
class FallbackSentence:
    text: str  # a str.format template when ``templated``, else final text
    templated: bool


@dataclass(frozen=True)
class Dialog:
    greeting: tuple[str, ...]
    reprompt: tuple[str, ...]
    fallback: tuple[FallbackSentence, ...]
    intents: tuple[Intent, ...]
    idle: tuple[str, ...] = ("Are you still there?",)
    keys: dict[str, Intent] = field(default_factory=dict)  # [dtmf D] sections


@dataclass
class _Section:
    kind: str
    name: str
    line: int
    values: dict[str, list[tuple[int, str]]]


_KEYS = {"greeting": {"say"}, "reprompt": {"say"}, "fallback": {"say"}, "idle": {"say"},
         "intent": {"match", "say", "hangup", "transfer"}, "dtmf": {"say", "hangup", "transfer"}}
_NAMED = {"intent", "dtmf"}
_DTMF_KEYS = frozenset("0123456789*#ABCD")
_REPEATABLE = {"match"}
_YES = {"yes", "true", "on", "1"}
_NO = {"no", "false", "off", "0"}


class _DialogError(ValueError):
    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")


def parse_dialog(text: str, source: str) -> Dialog:
    """Parse and validate a dialog script; ``source`` names it in error messages."""
    sections: list[_Section] = []
    last: tuple[_Section, str, int] | None = None  # where a continuation line goes
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if raw[0] in " \t":
            if last is None:
                raise _DialogError(source, number, "indented line continues no value")
            section, key, index = last
            line, value = section.values[key][index]
            section.values[key][index] = (line, f"{value} {stripped}".strip())
            continue
        if stripped.startswith("["):
            sections.append(_open_section(stripped, source, number, sections))
            last = None
            continue
        if not sections:
            raise _DialogError(source, number, "setting outside a [section]")
        key, sep, value = stripped.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise _DialogError(source, number, f"expected 'key = value', got {stripped!r}")
        section = sections[-1]
        if key not in _KEYS[section.kind]:
            allowed = ", ".join(sorted(_KEYS[section.kind]))
            raise _DialogError(source, number, f"unknown key {key!r} in [{section.kind}] (allowed: {allowed})")
        entries = section.values.setdefault(key, [])
        if entries and key not in _REPEATABLE:
            raise _DialogError(source, number, f"{key!r} set twice in [{section.kind}] (first on line {entries[0][0]})")
        entries.append((number, value.strip()))
        last = (section, key, len(entries) - 1)
    return _build(sections, source, len(text.splitlines()) or 1)


def _open_section(header: str, source: str, number: int, sections: list[_Section]) -> _Section:
    m = _SECTION.match(header)
    kind = m.group(1).lower() if m else ""
    name = (m.group(2) or "") if m else ""
    if kind not in _KEYS:
        raise _DialogError(
            source, number, f"unknown section {header!r} (expected [greeting], [reprompt], [fallback], [idle], "
            "[intent NAME] or [dtmf KEY])"
        )
    if kind == "intent" and not name:
        raise _DialogError(source, number, "[intent] needs a name: [intent NAME]")
    if kind == "dtmf" and name not in _DTMF_KEYS:
        raise _DialogError(source, number, "[dtmf] needs one key: 0-9, *, # or A-D, as in [dtmf 0]")
    if kind not in _NAMED and name:
        raise _DialogError(source, number, f"[{kind}] takes no name")
    for other in sections:
        if (other.kind, other.name) == (kind, name):
            raise _DialogError(source, number, f"section {header!r} repeats line {other.line}")
    return _Section(kind, name, number, {})


def _build(sections: list[_Section], source: str, last_line: int) -> Dialog:
    singles: dict[str, tuple[str, ...]] = {}
    fallback: tuple[FallbackSentence, ...] = ()
    intents: list[Intent] = []
    keys: dict[str, Intent] = {}
    for section in sections:
        say_line, say = _required(section, "say", source)
        sentences = split_sentences(say)
        if section.kind == "fallback":
            fallback = tuple(_fallback_sentence(s, source, say_line) for s in sentences)
        elif section.kind == "intent":
            intents.append(_intent(section, sentences, source))
        elif section.kind == "dtmf":
            keys[section.name] = _response(section, (), sentences, source)
        else:
            singles[section.kind] = tuple(sentences)
    for kind in ("greeting", "reprompt"):
        if kind not in singles:
            raise _DialogError(source, last_line, f"missing required section [{kind}]")
    if not fallback:
        raise _DialogError(source, last_line, "missing required section [fallback]")
    idle = singles.get("idle", Dialog.idle)
    return Dialog(singles["greeting"], singles["reprompt"], fallback, tuple(intents), idle, keys)


def _required(section: _Section, key: str, source: str) -> tuple[int, str]:
    entries = section.values.get(key)
    if not entries or not entries[0][1]:
        line = entries[0][0] if entries else section.line
        label = f"[{section.kind} {section.name}]" if section.kind in _NAMED else f"[{section.kind}]"
        raise _DialogError(source, line, f"{label} needs a non-empty {key!r}")
    return entries[0]


def _fallback_sentence(sentence: str, source: str, line: int) -> FallbackSentence:
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(sentence) if f is not None]
    except ValueError as e:
        raise _DialogError(source, line, f"bad braces in fallback ({e}); write {{{{ and }}}} for literal braces")
    for name, spec, conv in fields:
        if name != "text" or spec or conv:
            raise _DialogError(source, line, f"fallback may only use {{text}}, not {{{name}}}")
    if fields:
        return FallbackSentence(sentence, True)
    return FallbackSentence(sentence.format(), False)


def _intent(section: _Section, reply: list[str], source: str) -> Intent:
    phrases: list[str] = []
    for line, value in section.values.get("match", []):
        for phrase in (p.strip() for p in value.split(",")):
            if not phrase:
                continue
            if not words(phrase):
                raise _DialogError(source, line, f"phrase {phrase!r} has no words (digits and punctuation are ignored)")
            phrases.append(phrase)
    if not phrases:
        raise _DialogError(source, section.line, f"[intent {section.name}] needs at least one 'match' phrase")
    return _response(section, tuple(phrases), reply, source)


def _response(section: _Section, phrases: tuple[str, ...], reply: list[str], source: str) -> Intent:
    hang_up = False
    for line, value in section.values.get("hangup", []):
        if value.lower() not in _YES | _NO:
            raise _DialogError(source, line, f"hangup must be yes or no, not {value!r}")
        hang_up = value.lower() in _YES
    transfer = ""
    for line, value in section.values.get("transfer", []):
        try:
            check_transfer_target(value)
        except ValueError as e:
            raise _DialogError(source, line, str(e)) from None
        if hang_up:
            raise _DialogError(source, line, "a reply cannot both hang up and transfer")
        transfer = value
    return Intent(section.name, phrases, tuple(reply), hang_up, transfer)


def builtin_dialog_name(language: str) -> str | None:
    """The shipped front desk in ``language`` (``front_desk.he.dialog`` for he-IL), or None."""
    if primary(language) == "en":
        return DEFAULT_SCRIPT
    for tag in (canonical(language), primary(language)):
        name = f"front_desk.{tag}.dialog"
        if resources.files("voiced.agent").joinpath(name).is_file():
            return name
    return None


def load_dialog(path: str = "", language: str = "en-US") -> Dialog:
    """Read a script file; ``""`` is the shipped front desk in ``language`` (English when
    there is none in it)."""
    if path:
        source = path
        try:
            with open(path, encoding="utf-8-sig") as f:  # tolerate an editor's BOM
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: cannot read dialog script: {e}") from e
    else:
        resource = resources.files("voiced.agent").joinpath(builtin_dialog_name(language) or DEFAULT_SCRIPT)
        source = str(resource)
        text = resource.read_text(encoding="utf-8")
    return parse_dialog(text, source)


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

    def __init__(self, dialog: Dialog, matcher: IntentMatcher) -> None:
        self._dialog = dialog
        self._matcher = matcher

    def greeting(self) -> list[str]:
        return list(self._dialog.greeting)

    def respond(self, request: TurnRequest, sink: ReplySink) -> Deferred[None]:
        return maybeDeferred(self._respond, request, sink)

    def _respond(self, request: TurnRequest, sink: ReplySink) -> None:
        response = self._response(request)
        for sentence in response.reply:
            sink.sentence(sentence)
        if response.hang_up:
            sink.action(EndCall())
        elif response.transfer:
            sink.action(TransferCall(response.transfer))

    def _response(self, request: TurnRequest) -> Intent:
        dialog = self._dialog
        if isinstance(request.event, Idle):
            return Intent("idle", (), dialog.idle)
        if isinstance(request.event, Dtmf):
            return dialog.keys.get(request.event.digit) or Intent("dtmf", (), dialog.reprompt)
        said = " ".join(request.text.split()).strip(_TRAILING_PUNCTUATION)
        if not re.search(r"\w", said):
            return Intent("reprompt", (), dialog.reprompt)
        intent = self._matcher.best(said)
        if intent is not None:
            return intent
        reply = tuple(s.text.format(text=said) if s.templated else s.text for s in dialog.fallback)
        return Intent("fallback", (), reply)


class ScriptAgent:
    name = "script"

    def __init__(self, script_path: str = "", language: str = "en-US") -> None:
        self.dialog = load_dialog(script_path, language)
        self.language = language
        self._matcher = IntentMatcher(self.dialog.intents, language)
        note_construction("agent_script")

    def start_conversation(self, call: CallInfo) -> ScriptConversation:
        return ScriptConversation(self.dialog, self._matcher)

    def fixed_phrases(self) -> list[str]:
        d = self.dialog
        phrases = [*d.greeting, *d.reprompt, *d.idle]
        for intent in (*d.intents, *d.keys.values()):
            phrases.extend(intent.reply)
        phrases.extend(s.text for s in d.fallback if not s.templated)
        return list(dict.fromkeys(phrases))
