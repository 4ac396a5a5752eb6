"""Call UUIDs signed with ``audiosocket_secret``: AudioSocket's only credential.

AudioSocket has no authentication of its own; the one thing the dialplan chooses is the
call's UUID, the first frame of every connection. With a secret set, voiced admits a
connection only when that UUID is one the dialplan derived from the secret, and can
make with stock Asterisk functions (no HMAC function exists there; ``SHA1``, ``EPOCH``,
``UUID`` and substrings do):

  nonce = ${EPOCH} (10 decimal digits) + 6 random hex digits (from ${UUID()})
  tag   = the first 16 hex digits of SHA1(secret + nonce)
  UUID  = nonce[0:8]-nonce[8:12]-nonce[12:16]-tag[0:4]-tag[4:16]

in extensions.conf (README has the lines):

  same => n,Set(R=${UUID()})
  same => n,Set(N=${EPOCH}${R:0:6})
  same => n,Set(T=${SHA1(${VOICED_SECRET}${N})})
  same => n,AudioSocket(${N:0:8}-${N:8:4}-${N:12:4}-${T:0:4}-${T:4:12},10.0.0.5:9092)

SHA1 over secret + nonce is not an HMAC, but the nonce has a fixed length and format, so
the length extension that breaks such a prefix MAC gives nothing voiced would accept;
guessing the 64-bit tag online is out of reach. A stolen UUID (the stream is plain TCP)
is refused once its timestamp is more than ``MAX_SKEW_S`` away from voiced's clock, and
at once if it was already used (``ReplayGuard``, per process). Asterisk writes both
digests and UUIDs in lower case, as ``str(uuid.UUID)`` does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from collections import deque

#: How far the UUID's timestamp may be from voiced's clock: the dialplan computes it just
#: before AudioSocket()/Dial(), so this is the machines' clock skew, with room to spare.
MAX_SKEW_S = 120
_STAMP_DIGITS = 10
_LOWER_HEX = frozenset("0123456789abcdef")


def _tag(secret: str, nonce: str) -> str:
    return hashlib.sha1((secret + nonce).encode("utf-8")).hexdigest()[:16]


def issue(secret: str, now: float, random_hex: str | None = None) -> str:
    """A signed call UUID (its string form), as the dialplan above makes it."""
    random_hex = os.urandom(3).hex() if random_hex is None else random_hex
    nonce = f"{int(now):010d}{random_hex}"
    if len(nonce) != 16 or not set(random_hex) <= _LOWER_HEX:
        raise ValueError("the nonce is 10 timestamp digits and 6 lower-case hex digits")
    tag = _tag(secret, nonce)
    return f"{nonce[0:8]}-{nonce[8:12]}-{nonce[12:16]}-{tag[0:4]}-{tag[4:16]}"


def problem(secret: str, call_uuid: uuid.UUID, now: float) -> str | None:
    """Why ``call_uuid`` is not signed with ``secret`` at ``now``; None when it is (constant-time tag check)."""
    digits = call_uuid.hex  # 32 lower-case hex digits
    nonce, tag = digits[:16], digits[16:]
    if not hmac.compare_digest(_tag(secret, nonce), tag):
        return "call UUID not signed with audiosocket_secret"
    stamp = nonce[:_STAMP_DIGITS]
    if not stamp.isdigit():
        return "call UUID has no timestamp"
    age = now - int(stamp)
    if abs(age) > MAX_SKEW_S:
        return f"call UUID issued {int(age)} s ago (at most {MAX_SKEW_S} s either way)"
    return None


class ReplayGuard:
    """The signed UUIDs admitted within the skew window: each is good for one connection.
    Bounded by the legitimate calls of 2 x MAX_SKEW_S (a forged UUID never gets here)."""

    def __init__(self, window_s: float = 2 * MAX_SKEW_S) -> None:
        self.window_s = window_s
        self._seen: set[uuid.UUID] = set()
        self._order: deque[tuple[float, uuid.UUID]] = deque()

    def first_use(self, call_uuid: uuid.UUID, now: float) -> bool:
        """True the first time ``call_uuid`` is presented (and remembers it), False after."""
        order, seen = self._order, self._seen
        while order and order[0][0] <= now - self.window_s:
            seen.discard(order.popleft()[1])
        if call_uuid in seen:
            return False
        seen.add(call_uuid)
        order.append((now, call_uuid))
        return True

    def __len__(self) -> int:
        return len(self._seen)
