"""Number profiles: a two-language profiles file, written where the test cleans up, and Settings from env."""

from __future__ import annotations

import os
import tempfile

from voiced.config import Settings


TWO_LANGUAGES = """
default = "english"

[profiles.english]
language = "en-US"

[profiles.hebrew]
language = "he-IL"
voice = "he-IL-Wavenet-A"
greeting = "שלום!"

[numbers]
"+972 2-555-0100" = "hebrew"
"""


def write(test, text: str, name: str = "profiles.toml") -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="voiced-profiles-"), name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def settings(**env: str) -> Settings:
    return Settings.load({}, {"VOICED_LISTEN": "tcp:0:interface=127.0.0.1", **env})
