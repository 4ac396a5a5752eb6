"""The script agent's dialog files: their format, and reading one.

A script is a small UTF-8 text file (the shipped examples are ``front_desk.dialog`` and,
for he-*, ``front_desk.he.dialog``)::

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

    [voicemail]
    say = Hello, this is the Riverside Clinic. Please call us back at 555 0100. Goodbye.

``greeting``, ``reprompt`` and ``fallback`` are required; ``[intent NAME]`` sections
are optional and matched in file order. ``match`` holds comma-separated phrases and
may repeat; an indented line continues the previous value; ``hangup = yes`` ends the
call once the reply has played, ``transfer = +15551234567`` transfers it. ``[idle]``
is said when the caller has been silent for a while; ``[dtmf D]`` answers the key D
(``say``, ``hangup``, ``transfer`` as in an intent). ``[voicemail]`` is the message left on an
answering machine that took an outbound call (the call hangs up after it). In the fallback,
``{text}`` is what the caller said (``{{``/``}}`` for literal braces). Any line may name an
outbound call's variables, ``{name}`` (``POST /calls``' ``"variables"``): filled in as the line
is said (``voiced.agent.variables``); a name the call lacks stays as written. Any error is a
``ValueError`` naming file and line.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from importlib import resources

from voiced.language import canonical, primary
from voiced.options import default
from voiced.transfer import check_transfer_target

DEFAULT_SCRIPT = "front_desk.dialog"

_APOSTROPHES = re.compile("['\u2018\u2019`]")
_SEPARATORS = re.compile(r"[\W\d_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])\s+(?![a-z])")
_SECTION = re.compile(r"\[\s*([A-Za-z]+)(?:\s+(\S.*?))?\s*\]$")


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` without punctuation, apostrophes or digits."""
    return [w for w in _SEPARATORS.split(_APOSTROPHES.sub("", text.lower())) if w]


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
    voicemail: tuple[str, ...] = ("Sorry we missed you. Please call us back when you can. Goodbye.",)


@dataclass
class _Section:
    kind: str
    name: str
    line: int
    values: dict[str, list[tuple[int, str]]]


_KEYS = {"greeting": {"say"}, "reprompt": {"say"}, "fallback": {"say"}, "idle": {"say"}, "voicemail": {"say"},
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
            "[voicemail], [intent NAME] or [dtmf KEY])"
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
    voicemail = singles.get("voicemail", Dialog.voicemail)
    return Dialog(singles["greeting"], singles["reprompt"], fallback, tuple(intents), idle, keys, voicemail)


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
        if not name.isidentifier() or spec or conv:
            raise _DialogError(source, line, f"fallback may only use {{text}} and the call's {{variables}}, "
                                             f"not {{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}")
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


def load_dialog(path: str = "", language: str = default("language")) -> Dialog:
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

