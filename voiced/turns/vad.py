"""The voice-activity port: a 20 ms frame of 8 kHz PCM16 in, a speech probability out.

A detector (``VoiceActivity``) is process-wide: the service creates it once, with its
model, and each call opens a ``VoiceStream`` of its own (a model's per-call state). A
stream answers each frame either at once (webrtcvad: microseconds, on the reactor) or
later, through the ``deliver`` callback it was opened with (a model batched across calls
off the reactor); either way every frame gets exactly one probability, in frame order.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Protocol

from voiced.audio import SAMPLE_RATE

#: Called with each frame's speech probability (0..1), in frame order, on the reactor thread.
Deliver = Callable[[float], None]


class VoiceStream(Protocol):
    def push(self, pcm16: bytes) -> float | None:
        """One 20 ms frame; its speech probability now, or None when it comes through ``deliver``."""

    def close(self) -> None:
        """The call is over: drop pending work; ``deliver`` is not called again."""


class VoiceActivity(Protocol):
    name: str
    #: Probability at or above which a frame is speech.
    threshold: float

    def open(self, deliver: Deliver, call_id: str | None = None) -> VoiceStream:
        """``call_id`` names the call in a detector's log lines."""


class _WebRtcStream:
    __slots__ = ("push",)

    def __init__(self, classify: Callable[[bytes], float]) -> None:
        self.push = classify

    def close(self) -> None:
        pass


class WebRtcVoiceActivity:
    """webrtcvad on 20 ms frames (about 1-2 us per frame, on the reactor): it says voiced
    or not, so its probability is 1.0 or 0.0."""

    name = "webrtc"
    threshold = 0.5

    def __init__(self, aggressiveness: int) -> None:
        import _webrtcvad  # the C module under webrtcvad-wheels
        import webrtcvad

        self._aggressiveness = aggressiveness
        self._new_vad = webrtcvad.Vad
        self._process = _webrtcvad.process

    def open(self, deliver: Deliver, call_id: str | None = None) -> VoiceStream:
        # A Vad per call: it adapts to its line frame by frame. Its C call, without
        # Vad.is_speech's Python frame and length checks (~0.5 us of a ~2 us frame).
        process = partial(self._process, self._new_vad(self._aggressiveness)._vad, SAMPLE_RATE)

        def classify(pcm16: bytes) -> float:
            return 1.0 if process(pcm16, len(pcm16) >> 1) else 0.0

        return _WebRtcStream(classify)
