"""What a campaign is told: its limits, calling window and retry policy (``CampaignSettings``),
and its rows (``CampaignRow``), each checked with an error a person can act on.

Pure: no clock, no I/O. The calling window is local time in the callee's zone (``zoneinfo``),
so "09:00-20:00" means nine in the morning wherever the callee is, DST included.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Row states. A row is committed ``dialling`` (with its attempt number) before its call is
# requested, ``active`` once the carrier accepted it (its dial id known), ``done`` with an outcome.
PENDING, DIALLING, ACTIVE, DONE = "pending", "dialling", "active", "done"
ROW_STATES = (PENDING, DIALLING, ACTIVE, DONE)
# Campaign states: ``loading`` takes more rows (and dials those it has); ``running`` has them all.
LOADING, RUNNING, FINISHED, CANCELLED = "loading", "running", "done", "cancelled"
# A row's final outcome. ``skipped``: the campaign was cancelled before the row was dialled.
OUTCOMES = ("answered", "voicemail", "busy", "no-answer", "failed", "canceled", "skipped")
RETRYABLE_OUTCOMES = ("busy", "no-answer", "failed")

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MAX_VARIABLES = 64
MAX_VARIABLE_CHARS = 2000
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class CampaignError(ValueError):
    """A campaign's settings or a row is not acceptable; the message says which and why."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CampaignError(f"unknown time zone {name!r} (an IANA name such as Asia/Jerusalem)") from None


@dataclass(frozen=True)
class CallingWindow:
    """Calls start only between ``start`` (included) and ``end`` (excluded), local time; an
    ``end`` before ``start`` spans midnight (20:00-08:00). A call in progress is not cut."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> "CallingWindow | None":
        """``"09:00-20:00"``; empty: no window (any time)."""
        if not text.strip():
            return None
        m = _WINDOW.match(text)
        if m is None:
            raise CampaignError(f"window {text!r} is not HH:MM-HH:MM (e.g. 09:00-20:00)")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise CampaignError(f"window {text!r} has a time that does not exist")
        if (h1, m1, h2) == (0, 0, 24):
            return None  # the whole day
        start, end = time(h1, m1), time(0, 0) if h2 == 24 else time(h2, m2)
        if start == end:
            raise CampaignError(f"window {text!r} is empty (use no window to call at any time)")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def _contains(self, tod: time) -> bool:
        if self.start < self.end:
            return self.start <= tod < self.end
        return tod >= self.start or tod < self.end

    def is_open(self, at: float, tz: ZoneInfo) -> bool:
        return self._contains(datetime.fromtimestamp(at, tz).time())

    def next_opening(self, at: float, tz: ZoneInfo) -> float:
        """``at`` if the window is open then, else the instant it next opens (computed, so a
        waiting row sleeps until then instead of polling)."""
        if self.is_open(at, tz):
            return at
        today = datetime.fromtimestamp(at, tz).date()
        # A start inside a DST gap that day maps past it (fold=0): the is_open check keeps
        # only an instant that is really in the window; some day within four always is.
        for days in range(4):
            candidate = datetime.combine(today + timedelta(days=days), self.start, tzinfo=tz).timestamp()
            if candidate > at and self.is_open(candidate, tz):
                return candidate
        raise AssertionError(f"window {self} never opens")  # unreachable: start != end


def _number(value: Any, name: str, low: float, high: float, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise CampaignError(f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}")
    if not (low <= value <= high) or not math.isfinite(value):
        raise CampaignError(f"{name} must be between {low:g} and {high:g}, not {value!r}")
    return value


@dataclass(frozen=True)
class CampaignSettings:
    concurrency: int = 1  # calls in flight (requested and not ended) at most
    cps: float = 1.0  # new calls per second at most (in any 1/cps-long stretch: the carrier's limit)
    window: str = ""  # "HH:MM-HH:MM" in the callee's zone; "" any time
    tz: str = "UTC"  # the zone of a row that names none
    retries: int = 1  # extra attempts of a row whose outcome is in retry_on
    retry_delay_s: float = 300.0  # before the first retry; each later one waits retry_backoff times longer
    retry_backoff: float = 2.0
    retry_on: tuple[str, ...] = ("busy", "no-answer")
    machine_detection: bool = False
    from_number: str = ""
    calling_window: CallingWindow | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _number(self.concurrency, "concurrency", 1, 1000, integer=True)
        _number(self.cps, "cps", 0.001, 1000)
        _number(self.retries, "retries", 0, 20, integer=True)
        _number(self.retry_delay_s, "retry_delay_s", 0, 7 * 86400)
        _number(self.retry_backoff, "retry_backoff", 1, 10)
        zone(self.tz)
        for outcome in self.retry_on:
            if outcome not in RETRYABLE_OUTCOMES:
                raise CampaignError(f"retry_on: {outcome!r} cannot be retried (only {', '.join(RETRYABLE_OUTCOMES)})")
        if self.from_number and not E164.match(self.from_number):
            raise CampaignError(f"from_number {self.from_number!r} is not an E.164 number (+ and 7 to 15 digits)")
        object.__setattr__(self, "calling_window", CallingWindow.parse(self.window))

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def retry_delay(self, attempts_made: int) -> float:
        return self.retry_delay_s * self.retry_backoff ** max(0, attempts_made - 1)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["calling_window"]
        data["retry_on"] = list(self.retry_on)
        return data

    @classmethod
    def from_json(cls, data: Any) -> "CampaignSettings":
        if not isinstance(data, dict):
            raise CampaignError("settings must be a JSON object")
        known = {f for f in cls.__dataclass_fields__ if f != "calling_window"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CampaignError(f"unknown setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        values = dict(data)
        if "retry_on" in values:
            if not isinstance(values["retry_on"], list) or not all(isinstance(v, str) for v in values["retry_on"]):
                raise CampaignError("retry_on must be a list of outcomes")
            values["retry_on"] = tuple(values["retry_on"])
        for name in ("window", "tz", "from_number"):
            if name in values and not isinstance(values[name], str):
                raise CampaignError(f"{name} must be a string")
        if "machine_detection" in values and not isinstance(values["machine_detection"], bool):
            raise CampaignError("machine_detection must be true or false")
        return cls(**values)


@dataclass
class CampaignRow:
    """One callee. ``attempts`` counts the calls requested for it (the one in flight included);
    ``outcome`` is the last attempt's while it waits for a retry, the final one when ``done``."""

    row_no: int
    number: str
    variables: dict[str, str]
    tz: str = ""
    state: str = PENDING
    attempts: int = 0
    next_at: float = 0.0
    dial_id: str = ""
    outcome: str = ""
    # Not stored: what the current attempt has heard so far (a restart asks the dialer).
    answered: bool = field(default=False, compare=False)
    answered_by: str = field(default="", compare=False)


def check_row(row_no: int, data: Any) -> CampaignRow:
    """A row as a client sent it (``{"number", "variables", "tz"}``), checked."""
    where = f"row {row_no}"
    if not isinstance(data, dict):
        raise CampaignError(f"{where}: must be a JSON object with a number")
    unknown = sorted(set(data) - {"number", "variables", "tz"})
    if unknown:
        raise CampaignError(f"{where}: unknown field(s) {', '.join(unknown)} (known: number, variables, tz)")
    number = data.get("number")
    if not isinstance(number, str) or not E164.match(number.strip()):
        raise CampaignError(f"{where}: number {number!r} is not an E.164 number (+ and 7 to 15 digits)")
    tz = data.get("tz", "") or ""
    if not isinstance(tz, str):
        raise CampaignError(f"{where}: tz must be a string")
    if tz:
        try:
            zone(tz)
        except CampaignError as e:
            raise CampaignError(f"{where}: {e}") from None
    return CampaignRow(row_no, number.strip(), check_variables(where, data.get("variables", {})), tz)


def check_variables(where: str, variables: Any) -> dict[str, str]:
    if not isinstance(variables, dict):
        raise CampaignError(f"{where}: variables must be a JSON object of names to strings")
    if len(variables) > MAX_VARIABLES:
        raise CampaignError(f"{where}: {len(variables)} variables, at most {MAX_VARIABLES}")
    checked: dict[str, str] = {}
    for name, value in variables.items():
        if not isinstance(name, str) or not name.strip():
            raise CampaignError(f"{where}: a variable needs a name")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise CampaignError(f"{where}: variable {name!r} must be a string")
        text = str(value)
        if len(text) > MAX_VARIABLE_CHARS:
            raise CampaignError(f"{where}: variable {name!r} is longer than {MAX_VARIABLE_CHARS} characters")
        checked[name] = text
    return checked
