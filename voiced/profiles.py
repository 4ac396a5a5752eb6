"""Named call profiles (``--profiles FILE``): the allow-list a call's language, voice, agent
and engines are chosen from, by the carrier's stream parameters or the number called.

A profiles file is TOML::

    default = "english"

    [profiles.english]
    language = "en-US"

    [profiles.hebrew]
    language = "he-IL"
    voice = "he-IL-Wavenet-A"
    agent = "openai"
    system_prompt_file = "/etc/voiced/hebrew.txt"
    stt = "google"
    tts = "google"
    greeting = "שלום, במה אפשר לעזור?"

    [numbers]
    "+97225550100" = "hebrew"

A profile names only what differs from the daemon's own options; the rest it inherits,
except the options written in one language (the greeting, the phrases, the voice, the
script, the system prompt, the STT model): a profile in another language than
VOICED_LANGUAGE does not inherit those, and gets its language's own.

A call's profile is its stream's ``profile`` parameter (TwiML ``<Parameter name="profile"
value="hebrew"/>``), else the number it called, else the default. A parameter naming a
profile the file does not list, or trying to set the language, voice, agent or an
engine itself, is refused (``PROFILE_REFUSED``): the caller's side may be anyone's, the
profiles are the operator's. Pure: parsing, validation and choosing; the warm-up builds
what each profile names (``voiced.profile_kits``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from twisted.logger import Logger

from voiced.config import ConfigError, Settings
from voiced.options import BY_NAME, PHRASE_OPTIONS

log = Logger(namespace="voiced.service")

#: The stream parameter that names the call's profile.
PROFILE_PARAMETER = "profile"

#: A profile's keys, and the option each one sets.
PROFILE_KEYS: Mapping[str, str] = {
    "language": "language",
    "voice": "tts_voice",
    "agent": "agent",
    "script": "script",
    "system_prompt": "system_prompt",
    "system_prompt_file": "system_prompt_file",
    "webhook_url": "webhook_url",
    "stt": "stt",
    "tts": "tts",
    "greeting": "greeting",
    # The TTS vendors' voices, each its own id space (a profile's "voice" is Google's voice name).
    "elevenlabs_voice_id": "elevenlabs_voice_id",
    "cartesia_voice_id": "cartesia_voice_id",
    "openai_tts_voice": "openai_tts_voice",
}

#: Options written in one language: a profile in another language does not inherit them.
LANGUAGE_BOUND = ("greeting", "phrases_file", *(f"{key}_phrase" for key in PHRASE_OPTIONS), "tts_voice",
                  "elevenlabs_voice_id", "cartesia_voice_id", "openai_tts_voice",
                  "script", "system_prompt", "system_prompt_file", "stt_model")

#: Stream parameters that would choose what only a profile may (the caller's side may be
#: anyone's): refused, never applied.
DIRECT_PARAMETERS = frozenset({*PROFILE_KEYS, *PROFILE_KEYS.values(), "stt_model", "phrases_file"})

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ASKED_MAX = 64  # a refused value goes into a log line: cut, never whole


class ProfileError(ConfigError):
    """A profiles file voiced cannot work with: the message names the file and the profile."""


@dataclass(frozen=True)
class Profile:
    name: str
    #: Option name -> parsed value: what this profile sets over the daemon's options.
    options: Mapping[str, Any]


@dataclass(frozen=True)
class Profiles:
    path: str
    profiles: Mapping[str, Profile]
    default: str
    #: Called number (as normalized by ``number_key``) -> profile name.
    numbers: Mapping[str, str]

    def settings_for(self, base: Settings, name: str) -> Settings:
        return settings_for(base, self.profiles[name])


@dataclass(frozen=True)
class Choice:
    """Which profile a call gets, and why."""

    name: str
    by: str  # "parameter" | "number" | "default"
    refused: tuple[str, ...] = ()  # what the stream asked for and did not get ("profile=nope", "language=fr-FR")


def number_key(number: str) -> str:
    """A phone number as the [numbers] table is looked up: its digits, with a leading + kept
    ("+972 2-555-0100" and "+97225550100" are one number); anything else (a SIP URI) as it is."""
    text = number.strip()
    digits = re.sub(r"[\s().-]", "", text)
    if re.fullmatch(r"\+?[0-9]+", digits):
        return digits
    return text


def load_profiles(path: str) -> Profiles:
    """Read and check a profiles file; ``ProfileError`` names the file and the profile."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ProfileError(f"VOICED_PROFILES: cannot read {path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ProfileError(f"VOICED_PROFILES: {path} is not TOML: {e}") from None
    return parse_profiles(data, path)


def parse_profiles(data: Mapping[str, Any], path: str) -> Profiles:
    where = f"VOICED_PROFILES {path}"
    unknown = sorted(set(data) - {"profiles", "default", "numbers"})
    if unknown:
        raise ProfileError(f"{where}: unknown key {unknown[0]!r} (a file has default, [profiles.NAME] and [numbers])")
    tables = data.get("profiles")
    if not isinstance(tables, dict) or not tables:
        raise ProfileError(f"{where}: no [profiles.NAME] table")
    profiles = {name: _profile(where, name, table) for name, table in tables.items()}
    default = data.get("default")
    if default is None and len(profiles) == 1:
        default = next(iter(profiles))
    if not isinstance(default, str) or default not in profiles:
        raise ProfileError(f"{where}: default = {default!r} must name one of the profiles "
                           f"({', '.join(sorted(profiles))})")
    numbers_table = data.get("numbers", {})
    if not isinstance(numbers_table, dict):
        raise ProfileError(f"{where}: [numbers] must be a table of \"+number\" = \"profile\"")
    numbers: dict[str, str] = {}
    for number, name in numbers_table.items():
        if not isinstance(name, str) or name not in profiles:
            raise ProfileError(f"{where}: [numbers] {number!r} = {name!r} is not one of the profiles "
                               f"({', '.join(sorted(profiles))})")
        key = number_key(number)
        if not key:
            raise ProfileError(f"{where}: [numbers] has an empty number")
        if key in numbers and numbers[key] != name:
            raise ProfileError(f"{where}: [numbers] {number!r} is listed twice")
        numbers[key] = name
    return Profiles(path, profiles, default, numbers)


def _profile(where: str, name: str, table: Any) -> Profile:
    if not _NAME.match(name):
        raise ProfileError(f"{where}: profile {name!r}: a name is letters, digits, '_', '-' and '.' (at most 64)")
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: profile {name!r} must be a table ([profiles.{name}])")
    options: dict[str, Any] = {}
    for key, value in table.items():
        option = PROFILE_KEYS.get(key)
        if option is None:
            raise ProfileError(f"{where}: profile {name!r}: unknown key {key!r} (a profile sets "
                               f"{', '.join(PROFILE_KEYS)})")
        if not isinstance(value, str):
            raise ProfileError(f"{where}: profile {name!r}: {key} must be a string, not {value!r}")
        try:
            options[option] = BY_NAME[option].parse(value)
        except ValueError as e:
            raise ProfileError(f"{where}: profile {name!r}: {key}: {e}") from None
    if "system_prompt" in options and "system_prompt_file" in options:
        raise ProfileError(f"{where}: profile {name!r}: set system_prompt or system_prompt_file, not both")
    return Profile(name, options)


def settings_for(base: Settings, profile: Profile) -> Settings:
    """The daemon's settings as one profile's calls see them (its options over the daemon's).
    Raises ``ConfigError`` for a combination ``Settings`` refuses (agent=webhook with no URL)."""
    values = dict(profile.options)
    language = values.get("language", base.language)
    if language != base.language:
        defaults = {f.name: f.default for f in fields(Settings)}
        for name in LANGUAGE_BOUND:
            values.setdefault(name, defaults[name])
    if "system_prompt" in values:
        values.setdefault("system_prompt_file", "")
    if "system_prompt_file" in values:
        values.setdefault("system_prompt", "")
    settings = replace(base, **values)
    settings.validate()
    return settings


def choose(profiles: Profiles, parameters: Mapping[str, str], to_number: str) -> Choice:
    """A call's profile: its ``profile`` parameter, else the number it called, else the default."""
    refused = [f"{key}={_cut(value)}" for key, value in sorted(parameters.items())
               if key.lower() in DIRECT_PARAMETERS and key != PROFILE_PARAMETER]
    asked = parameters.get(PROFILE_PARAMETER)
    if asked is not None:
        if asked in profiles.profiles:
            return Choice(asked, "parameter", tuple(refused))
        return Choice(profiles.default, "default", (f"{PROFILE_PARAMETER}={_cut(asked)}", *refused))
    by_number = profiles.numbers.get(number_key(to_number)) if to_number else None
    if by_number is not None:
        return Choice(by_number, "number", tuple(refused))
    return Choice(profiles.default, "default", tuple(refused))


def choose_logged(profiles: Profiles, call_id: str, parameters: Mapping[str, str], to_number: str) -> Choice:
    """``choose``, with its one line: PROFILE_REFUSED when the stream asked for what is not allowed."""
    choice = choose(profiles, parameters, to_number)
    if choice.refused:
        log.warn("PROFILE_REFUSED call={call} asked={asked} profile={profile}: not in the allow-list of {path} "
                 "(a stream parameter names a profile; it never sets a language, voice, agent or engine itself)",
                 call=call_id, asked=",".join(choice.refused), profile=choice.name, path=profiles.path)
    return choice


def _cut(value: str) -> str:
    text = "".join(c if c.isprintable() and not c.isspace() else "?" for c in str(value))
    return text if len(text) <= _ASKED_MAX else text[:_ASKED_MAX] + "..."
