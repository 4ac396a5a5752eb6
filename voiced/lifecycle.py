"""Counts of process-wide constructions (engines, clients, credentials, pools).

Every expensive object records its construction here. The counts are exported on
/metrics (``voiced_constructions_total``) so an operator, or a test, can see that
they stay at one however many calls and turns pass: the incident that started
this project was a client re-created inside every turn.
"""

from __future__ import annotations

import threading
from collections import Counter

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def note_construction(kind: str) -> None:
    with _lock:
        _counts[kind] += 1


def construction_counts() -> dict[str, int]:
    with _lock:
        return dict(_counts)
