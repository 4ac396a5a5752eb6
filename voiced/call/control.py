"""Acting on the live call through the carrier, beyond the media stream.

The turn machine ends its own part of a call by closing the media WebSocket; a
``CallControl`` (Twilio's REST API today) also hangs the call up or moves it to a
transfer target. Both operations report their outcome and never fail: the carrier
being down must not raise into a call that is already saying goodbye.
"""

from __future__ import annotations

import re
from typing import Protocol

from twisted.internet.defer import Deferred

# E.164: a plus, a non-zero country code digit, at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# A SIP URI as a transfer target: no whitespace, quotes or angle brackets, which have
# no business in one and would only be a way to smuggle markup into TwiML.
_SIP_URI = re.compile(r"sips?:[^\s<>\"'`\\]{1,250}", re.IGNORECASE)


def is_sip_uri(target: str) -> bool:
    return _SIP_URI.fullmatch(target) is not None


def check_transfer_target(target: str) -> str:
    """``target`` if it is an E.164 number (``+14155550100``) or a ``sip:`` URI,
    else ``ValueError``: a transfer target comes from an agent (an LLM, a webhook),
    so it is checked before it reaches the carrier."""
    if not isinstance(target, str) or not (_E164.fullmatch(target) or is_sip_uri(target)):
        raise ValueError(f"transfer target must be an E.164 number (+14155550100) or a sip: URI, got {target!r}")
    return target


class CallControl(Protocol):
    def complete(self, call_sid: str) -> Deferred[bool]:
        """Hang the call up; fires True once the carrier confirmed, False if it could not."""

    def transfer(self, call_sid: str, to: str) -> Deferred[bool]:
        """Move the call to ``to`` (checked with ``check_transfer_target``: raises
        ``ValueError`` at once when it is not a valid target); fires True or False."""
