"""Which Google Speech-to-Text (v1) model serves which language on a phone line.

Google's ``phone_call`` model is trained on 8 kHz telephone audio but serves only a few
languages; a stream asking it for any other language (he-IL among them) is refused
with INVALID_ARGUMENT at every call. The ``default`` and ``command_and_search`` models
serve every language Google recognizes (its language-support table says so), so a
language without ``phone_call`` gets ``default``. The table is what Google documents;
it changes, so a pair it does not list is tried, not refused.
"""

from __future__ import annotations

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


def refusal(model: str, language: str) -> str | None:
    """Why Google would refuse ``model`` for ``language`` (None: it serves it, or we do not know)."""
    served = MODEL_LANGUAGES.get(model)
    if served is None or language.lower() in served:
        return None
    return (f"Google's {model} model does not serve {language} (it serves {', '.join(sorted(served))}): "
            f"every call would be refused; leave VOICED_STT_MODEL unset for {default_stt_model(language)}, "
            "or choose latest_long or default")
