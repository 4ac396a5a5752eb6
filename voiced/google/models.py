"""Which Google Speech-to-Text (v1) model serves which language on a phone line.

Google's ``phone_call`` model is trained on 8 kHz telephone audio but serves only a few
languages; a stream asking it for any other language (he-IL among them) is refused
with INVALID_ARGUMENT at every call. The ``default`` and ``command_and_search`` models
serve every language Google recognizes (its language-support table says so), so a
language without ``phone_call`` gets ``default``. The table is what Google documents;
it changes, so a pair it does not list is tried, not refused.
"""

from __future__ import annotations

from voiced.language import primary

#: Models Google restricts to a few languages (lower-cased tags).
MODEL_LANGUAGES: dict[str, frozenset[str]] = {
    "phone_call": frozenset({"en-us", "en-gb", "en-au", "en-in", "es-us", "es-es", "fr-fr", "de-de", "ja-jp",
                             "pt-br"}),
    "video": frozenset({"en-us", "en-gb", "es-us", "fr-fr", "de-de", "ja-jp", "pt-br"}),
    "medical_conversation": frozenset({"en-us"}),
    "medical_dictation": frozenset({"en-us"}),
}
#: Every language: what a language without a telephony model gets.
UNIVERSAL_MODEL = "default"


def default_stt_model(language: str) -> str:
    """The model to stream ``language``'s phone audio to when none was chosen."""
    return "phone_call" if language.lower() in MODEL_LANGUAGES["phone_call"] else UNIVERSAL_MODEL


#: (model, primary language) pairs Google refuses with INVALID_ARGUMENT at every call: seen,
#: not inferred (iw-IL, Hebrew's old code, counts as he).
KNOWN_REFUSED = frozenset({("phone_call", "he")})


def refusal(model: str, language: str) -> tuple[bool, str] | None:
    """Whether Google refuses ``model`` for ``language``: (True, why) for a pair known to
    be refused, (False, why) for one its table does not list (it may have grown), None
    for a pair it serves or a model it does not restrict."""
    served = MODEL_LANGUAGES.get(model)
    if served is None or language.lower() in served:
        return None
    known = (model, primary(language)) in KNOWN_REFUSED
    why = (f"Google's {model} model does not serve {language} (it serves {', '.join(sorted(served))})"
           if known else f"Google's {model} model is not listed for {language} (it serves {', '.join(sorted(served))})")
    return known, (f"{why}: every call would be refused; leave VOICED_STT_MODEL unset for "
                   f"{default_stt_model(language)}, or choose latest_long or default")
