"""BCP-47 language tags as the catalogs, dialogs and engines look them up, and the
marks that lay out right-to-left text."""

from __future__ import annotations

#: Unicode's directional marks and embeddings: they place text on a screen and say nothing.
BIDI_MARKS = "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

#: Codes ISO 639 retired that carriers and Google still send.
_RETIRED = {"iw": "he", "in": "id", "ji": "yi"}


def primary(tag: str) -> str:
    """The language subtag, lower case, current: "he" for he-IL and for iw-IL."""
    code = tag.split("-")[0].lower()
    return _RETIRED.get(code, code)


def canonical(tag: str) -> str:
    """The tag as files are named: pt-br -> pt-BR, iw-IL -> he-IL, zh-hant-tw -> zh-Hant-TW."""
    parts = tag.split("-")
    out = [primary(tag)]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            out.append(part.title())  # a script
        elif len(part) in (2, 3):
            out.append(part.upper())  # a region
        else:
            out.append(part.lower())
    return "-".join(out)
