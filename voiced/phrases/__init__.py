"""The phrases voiced speaks itself, one catalog per language.

A caller hears these when no agent is answering: the greeting of the LLM and webhook
agents, the filler while an agent is slow, the apology when it fails, the interim
phrase when speech recognition gives up, the ask-again for an utterance nobody could
transcribe, and the goodbyes (idle, time limit, drain, an LLM's wordless hang-up).

A catalog is a UTF-8 file of ``key = text`` lines (``#`` starts a comment), named by
its language: ``he.txt`` serves every ``he-*`` tag, and ``pt-BR.txt`` would serve
``pt-BR`` ahead of ``pt.txt``. Adding a language is adding its file here (or pointing
``VOICED_PHRASES_FILE`` at one). A key a catalog leaves out is taken from English, and
start-up says which. Pure: no clock, no I/O beyond reading the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Mapping

from voiced.language import canonical, primary

#: Every key, in the order a catalog file lists them.
PHRASE_KEYS = (
    "language_name", "greeting", "filler", "apology", "interim", "interim_wait", "ask_again",
    "idle_goodbye", "time_limit", "drain_goodbye", "goodbye", "transfer",
)
FALLBACK_LANGUAGE = "en"


class CatalogError(ValueError):
    pass


@dataclass(frozen=True)
class PhraseCatalog:
    language: str  # the BCP-47 tag asked for (he-IL)
    source: str  # the catalog that served it ("he", a file path, or "en" when none did)
    phrases: Mapping[str, str]
    #: Keys the language's catalog lacks, spoken in English: start-up names them.
    from_fallback: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> str:
        return self.phrases[key]


def parse_catalog(text: str, source: str) -> dict[str, str]:
    phrases: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in PHRASE_KEYS:
            raise CatalogError(f"{source}:{number}: expected 'key = text' with a key among "
                               f"{', '.join(PHRASE_KEYS)}, not {line[:60]!r}")
        if not value:
            raise CatalogError(f"{source}:{number}: {key} is empty")
        if key in phrases:
            raise CatalogError(f"{source}:{number}: {key} is set twice")
        phrases[key] = value
    return phrases


@lru_cache(maxsize=None)
def builtin(name: str) -> dict[str, str] | None:
    """The shipped catalog ``name`` (``he``, ``pt-BR``), or None."""
    resource = resources.files("voiced.phrases").joinpath(f"{name}.txt")
    if not resource.is_file():
        return None
    return parse_catalog(resource.read_text(encoding="utf-8"), f"voiced/phrases/{name}.txt")


def builtin_name(language: str) -> str | None:
    """Which shipped catalog serves ``language``: its full tag, else its primary subtag."""
    for name in (canonical(language), primary(language)):
        if builtin(name) is not None:
            return name
    return None


def load_catalog(language: str, path: str = "", overrides: Mapping[str, str] | None = None) -> PhraseCatalog:
    """The phrases for ``language``: ``overrides`` (options) over the file at ``path``
    over the shipped catalog of the language over English."""
    english = builtin(FALLBACK_LANGUAGE)
    assert english is not None and set(english) == set(PHRASE_KEYS), "the English catalog must be complete"
    name = builtin_name(language)
    own = dict(builtin(name) or {}) if name else {}
    source = name or FALLBACK_LANGUAGE
    if path:
        try:
            with open(path, encoding="utf-8-sig") as f:
                own.update(parse_catalog(f.read(), path))
        except (OSError, UnicodeDecodeError) as e:
            raise CatalogError(f"{path}: cannot read the phrase catalog: {e}") from None
        source = path
    missing = tuple(k for k in PHRASE_KEYS if k not in own) if own else ()
    phrases = {**english, **own, **{k: v for k, v in (overrides or {}).items() if v}}
    if "language_name" not in own and primary(language) != FALLBACK_LANGUAGE:
        phrases["language_name"] = language  # a model knows the tag; "English" would be wrong
    return PhraseCatalog(language, source, phrases, missing)


def english() -> dict[str, str]:
    """The English catalog: the defaults of code that has no settings (tests, tools)."""
    phrases = builtin(FALLBACK_LANGUAGE)
    assert phrases is not None
    return phrases
