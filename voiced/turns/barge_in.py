"""Whether caller sound over the bot interrupts it: the one place that is decided.

The call asks ``BargeInPolicy.decide`` on each frame of caller speech while bot audio
plays, once the speech is long enough to be more than a backchannel, and acts on
INTERRUPT (the carrier's clear, a new turn) or IGNORE (the bot goes on). Pure.

- Duration first: the call asks only after ``TurnSettings.barge_in_ms`` of mostly voiced
  speech (a "yeah" or "mm-hm" lasts 0.2-0.35 s and may never get there).
- The echo guard: on a speakerphone line the bot hears itself, at a level well below
  what it sends; "speech" ``echo_margin_db`` or more under the bot's own level of the
  last moments is its echo.
- Background talk (a TV, someone in the room) is quieter than the caller: "speech"
  ``background_margin_db`` or more under this caller's usual level is not theirs.
- Noise: a sound whose spectrum is flat (line noise, crackle) is no voice, whatever the
  VAD says (webrtcvad calls loud noise speech).
- Words: a streaming engine's partial made only of backchannel words is not a turn.
A bot stopped for nothing is resumed later (``voiced.call``: false interruptions).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from voiced.options import default
from voiced.turns.words import only_backchannel


class Action(enum.Enum):
    INTERRUPT = "interrupt"
    IGNORE = "ignore"
    WAIT = "wait"  # not enough yet to say


@dataclass(frozen=True)
class BargeInDecision:
    action: Action
    reason: str  # speech, echo, background, backchannel (metrics); WAIT: ""
    detail: str = ""


@dataclass(frozen=True)
class BargeInSettings:
    echo_margin_db: float = default("echo_guard_db")  # 0 turns the echo guard off
    background_margin_db: float = default("background_margin_db")  # 0 turns the background filter off


@dataclass(frozen=True)
class SoundOverBot:
    sustained: bool  # barge_in_ms of mostly voiced speech, voicing now
    level_db: float  # the sound's level (its voiced frames)
    bot_level_db: float  # the bot's loudest recent frame (-inf: nothing playing)
    caller_level_db: float | None  # this caller's usual level (None: not known yet)
    words: str = ""  # what a streaming engine heard of it so far
    noise: bool = False  # its spectrum is flat: line noise, crackle, a knock (voiced.turns.spectrum)
    #: The whole sound's level (``level_db`` is its last ~100 ms): background talk has louder
    #: moments that must not make it the caller's.
    sound_level_db: float | None = None
    language: str = default("language")


_WAIT = BargeInDecision(Action.WAIT, "")


class BargeInPolicy:
    def __init__(self, settings: BargeInSettings = BargeInSettings()) -> None:
        self.settings = settings

    def decide(self, sound: SoundOverBot) -> BargeInDecision:
        s = self.settings
        if not sound.sustained:
            return _WAIT
        if sound.noise:
            return BargeInDecision(Action.IGNORE, "noise", f"{sound.level_db:.0f} dBFS, a flat spectrum")
        if s.echo_margin_db and sound.bot_level_db > -math.inf \
                and sound.level_db <= sound.bot_level_db - s.echo_margin_db:
            return BargeInDecision(Action.IGNORE, "echo",
                                   f"{sound.level_db:.0f} dBFS, bot {sound.bot_level_db:.0f} dBFS")
        quiet = sound.level_db if sound.sound_level_db is None else min(sound.level_db, sound.sound_level_db)
        if s.background_margin_db and sound.caller_level_db is not None \
                and quiet <= sound.caller_level_db - s.background_margin_db:
            return BargeInDecision(Action.IGNORE, "background",
                                   f"{quiet:.0f} dBFS, caller {sound.caller_level_db:.0f} dBFS")
        if sound.words and only_backchannel(sound.words, sound.language):
            return BargeInDecision(Action.IGNORE, "backchannel", repr(sound.words))
        caller = "unknown" if sound.caller_level_db is None else f"{sound.caller_level_db:.0f} dBFS"
        return BargeInDecision(Action.INTERRUPT, "speech", f"{quiet:.0f} dBFS, caller {caller}")
