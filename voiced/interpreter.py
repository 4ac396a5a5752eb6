"""What a voiced process sets in the Python interpreter for the reactor's latency.

- The GIL's switch interval: the reactor and the speech loop's thread (every Google
  stream's requests and responses, ``voiced.google.aio_loop``) share the GIL. A request or
  response that is ready waits until the busy thread lets go of it, up to the switch
  interval: 5 ms by default, paid on each of the four hand-offs of a turn. At 1 ms the
  500-call p99 (``bench/scale.py``) beat the release before it in 14 of 24 alternating runs
  instead of losing 15 of 16, at the same CPU (README, Performance).
- A frozen start-up heap: what start-up built (modules, engines, clients, the phrase cache)
  lives as long as the process, so full collections skip it (``gc.freeze``). Walking it
  took 40-110 ms on the reactor, mid-call, at 500 calls.
"""

from __future__ import annotations

import gc
import sys

GIL_SWITCH_INTERVAL_S = 0.001


def hand_over_the_gil_promptly() -> float:
    """Set the switch interval; returns the one it replaces (to put back at stop)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    return previous


def freeze_start_up() -> None:
    """Collect once, then keep everything alive now out of every later collection."""
    gc.collect()
    gc.freeze()
