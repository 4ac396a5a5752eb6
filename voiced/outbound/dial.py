"""One dial: what was asked, through which carrier, its status and its history. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voiced.outbound.request import DIAL_STATUSES, FINAL_STATUSES, DialRequest

_RANK = {status: rank for rank, status in enumerate(DIAL_STATUSES)}


@dataclass
class Dial:
    dial_id: str
    request: DialRequest
    carrier: str
    from_number: str
    created_at: float
    call_sid: str = ""
    status: str = "queued"
    accepted: bool = False
    connected: bool = False
    answered_by: str = ""
    history: list[tuple[str, float, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.dial_id, "direction": "outbound", "carrier": self.carrier, "to": self.request.to,
                "from": self.from_number, "call_sid": self.call_sid, "status": self.status,
                "variables": dict(self.request.variables), "campaign_id": self.request.campaign_id,
                "answered_by": self.answered_by,
                "history": [{"status": s, "at": at, "detail": d} for s, at, d in self.history]}


def moves_to(current: str, status: str) -> bool:
    """Whether ``status`` replaces ``current`` as the dial's status."""
    if current in FINAL_STATUSES:
        return False
    return status in FINAL_STATUSES or _RANK.get(status, -1) > _RANK.get(current, -1)

