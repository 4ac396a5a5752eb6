"""What /console/calls lists: the live calls and the recent ones.

Live calls come from the hub; recent ones from a ``RecentCalls`` source. Today that
is the hub's in-memory ring of the last 200 ended calls (``HubRecentCalls``); a
journal, once configured, is another ``RecentCalls`` and replaces it without the
console changing.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol
from urllib.parse import quote

from voiced.call.record import CallHub, CallRecord


class RecentCalls(Protocol):
    """Ended calls, newest first."""

    def recent_calls(self, limit: int) -> list[CallRecord]: ...

    def find(self, call_sid: str) -> CallRecord | None: ...


class HubRecentCalls:
    """The hub's ring of ended calls (no journal configured)."""

    def __init__(self, hub: CallHub) -> None:
        self.hub = hub

    def recent_calls(self, limit: int) -> list[CallRecord]:
        return list(reversed(self.hub.recent))[:limit]

    def find(self, call_sid: str) -> CallRecord | None:
        for record in reversed(self.hub.recent):
            if record.call_sid == call_sid:
                return record
        return None


def summary(record: CallRecord, now: float, state: str) -> dict[str, Any]:
    """One row of the calls table: small, so the page can poll it every two seconds."""
    end = record.ended_at if record.ended_at is not None else now
    last = record.turns[-1] if record.turns else None
    return {
        "call_sid": record.call_sid,  # the carrier's own call id
        "carrier": record.carrier,
        "playout": record.playout,
        "direction": record.direction,  # "outbound": a call voiced placed (its dial: record.dial_id)
        "from": record.from_number,
        "to": record.to_number,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "duration_s": round(max(0.0, end - record.started_at), 1),
        "state": state,
        "end_reason": record.end_reason,
        "turns": len(record.turns),
        "last_caller_text": last.caller_text if last else "",
    }


class CallsView:
    """Answers the console's JSON: the table, and one call's whole record with the
    language its words are in (the page marks them up with it)."""

    def __init__(self, hub: CallHub, recent: RecentCalls, live_states: Callable[[], dict[str, str]],
                 clock: Callable[[], float], language: str = "",
                 dial_of: Callable[[str], dict[str, Any] | None] = lambda dial_id: None) -> None:
        self.hub = hub
        self.recent = recent
        self.live_states = live_states  # {CallSid: the turn machine's state ("listening", ...)}, once per answer
        self.clock = clock
        self.language = language  # BCP-47, the daemon's: every call speaks it
        self.dial_of = dial_of  # an outbound call's dial and its status history (voiced.outbound.dialer)

    def table(self, limit: int = 200) -> dict[str, Any]:
        now = self.clock()
        live = sorted(self.hub.live.values(), key=lambda r: r.started_at, reverse=True)
        states = self.live_states() if live else {}
        return {
            "now": now,
            "live": [summary(r, now, states.get(r.call_sid, "starting")) for r in live],
            "recent": [summary(r, now, "ended") for r in self.recent.recent_calls(limit)],
        }

    def record(self, call_sid: str) -> CallRecord | None:
        """A live call's record, else a recent one's."""
        return self.hub.live.get(call_sid) or self.recent.find(call_sid)

    def call(self, call_sid: str) -> dict[str, Any] | None:
        record = self.hub.live.get(call_sid)
        live = record is not None
        if record is None:
            record = self.recent.find(call_sid)
        if record is None:
            return None
        state = self.live_states().get(call_sid, "starting") if live else "ended"
        dial = self.dial_of(record.dial_id) if record.dial_id else None
        # The page plays it and seeks to each line's time in it (record.turns' caller_at_s, bot_at_s).
        recording_url = f"/console/api/calls/{quote(call_sid, safe='')}/recording" if record.recording else None
        return {"summary": summary(record, self.clock(), state), "live": live, "language": self.language,
                "record": record.as_json(), "dial": dial, "recording_url": recording_url}
