"""Turn-taking: when the caller starts and stops speaking, when their turn is over, and
whether sound over the bot is an interruption.

- ``vad``: the voice-activity port (a 20 ms frame in, a speech probability out) and
  webrtcvad behind it; ``silero`` is the other detector behind the same port.
- ``eou``: frames and probabilities to speech-start and speech-end events, in audio time.
- ``semantic``: the port of a model that hears an utterance and says whether it is
  complete; ``smart_turn`` is one.
- ``policy``: the one place the end of a turn is decided.
Nothing here knows which carrier, STT engine or agent a call uses.
"""
