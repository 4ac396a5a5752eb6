"""How calls decide turns, built once by the service and shared by every call: the
end-of-turn policy, the barge-in policy, the semantic model (if any) and adaptive timing."""

from __future__ import annotations

from dataclasses import dataclass, field

from voiced.turns.barge_in import BargeInPolicy
from voiced.turns.policy import TurnEndPolicy
from voiced.turns.semantic import TurnModel


@dataclass(frozen=True)
class TurnDetection:
    end: TurnEndPolicy = field(default_factory=TurnEndPolicy)
    barge_in: BargeInPolicy = field(default_factory=BargeInPolicy)
    model: TurnModel | None = None
    #: A caller who pauses long mid-turn gets a longer wait (voiced.turns.end_of_turn).
    adaptive: bool = False
