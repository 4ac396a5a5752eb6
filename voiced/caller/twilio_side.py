"""Where ``TwilioStream`` and ``Playback`` used to live, kept for older imports (bench/frame_cost.py):
they are ``voiced.caller.carriers.twilio.TwilioStream`` and ``voiced.caller.playback.Playback`` now."""

from voiced.caller.carriers.twilio import TwilioStream
from voiced.caller.playback import EPSILON_S, Playback

__all__ = ["EPSILON_S", "Playback", "TwilioStream"]
