"""Words that tell something about a turn, per language (the primary subtag).

- Continuation words: a transcript that ends with one is a turn the caller has not
  finished ("my number is ... and", "I'd like to book the"). A final ending so is held.
- Backchannel words: said over the bot, they tell it to go on, not to stop ("yeah",
  "mm-hm"; Hebrew "כן", "אהה"). A barge-in whose only words are these is no interruption.
"""

from __future__ import annotations

import re

from voiced.language import BIDI_MARKS, primary

CONTINUATION = {
    "en": frozenset(
        "and or but so because cause if when while than that which who whose where the a an to of for "
        "with from at in on by my your our their his her its is are was were am be i'm it's "
        "um uh er like".split()),
    "he": frozenset(
        "ו או אבל כי אם כש ש של את עם על אל מ ב ל ה זה הוא היא אני אנחנו כמו אז "
        "אה אמ".split()),
}

BACKCHANNEL = {
    "en": frozenset(
        "yeah yes yep yup ok okay right sure mm mhm mm-hm mmhmm uh-huh uhhuh huh hmm aha ah oh "
        "alright got it i see cool great fine".split()),
    "he": frozenset("כן אהה אה אהא נכון בסדר אוקיי אוקי יופי טוב ממ הממ אמ ברור סבבה".split()),
}

_NO_BIDI_MARKS = dict.fromkeys(map(ord, BIDI_MARKS))
_TRAILING_NUMBER = re.compile(r"\d[\d -]*\d$")
_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*", re.UNICODE)
#: A phone number is this long at the least (Israel's 9-10, NANP's 10); a run of digits
#: shorter than it at the end of a turn is a number still being said.
MIN_NUMBER_DIGITS = 7


def words(text: str) -> list[str]:
    return _WORD.findall(text.translate(_NO_BIDI_MARKS).lower())


def unfinished(text: str, language: str) -> str:
    """Why ``text`` reads as a turn the caller has not finished ("" if it does not): it
    trails off ("...", a comma), ends with a continuation word, or with a digit string
    shorter than a phone number."""
    stripped = text.translate(_NO_BIDI_MARKS).rstrip()
    if stripped.endswith(("...", "\u2026", ",", "-")):
        return "trails off"  # how Whisper writes a sentence cut short
    if not stripped or stripped[-1] in ".?!":
        return ""  # an engine that punctuates said the sentence ended
    tokens = words(stripped)
    if not tokens:
        return ""
    last = tokens[-1]
    if last in CONTINUATION.get(primary(language), ()):
        return f"ends with {last!r}"
    number = _TRAILING_NUMBER.search(stripped)
    if number is not None:
        count = sum(c.isdigit() for c in number.group())
        # Grouped digits ("054 12", "555-01") are a number being dictated; "room 101" is not.
        if count < MIN_NUMBER_DIGITS and any(c in " -" for c in number.group()):
            return f"ends in {count} digits"
    return ""


def only_backchannel(text: str, language: str) -> bool:
    """Every word of ``text`` is a backchannel (and there is at least one)."""
    tokens = words(text)
    known = BACKCHANNEL.get(primary(language), frozenset())
    return bool(tokens) and len(tokens) <= 3 and all(token in known for token in tokens)
