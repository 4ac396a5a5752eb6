"""Acting on the live call through the carrier, beyond the media stream.

The turn machine ends its own part of a call by closing the media WebSocket; a
``CallControl`` (Twilio's REST API today) also hangs the call up or moves it to a
transfer target. Both operations report their outcome and never fail: the carrier
being down must not raise into a call that is already saying goodbye.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred

# The check lives in voiced.transfer (agents use it too); named here as well because
# CallControl.transfer promises it, for carriers written against this contract.
from voiced.transfer import check_transfer_target, is_sip_uri

__all__ = ["CallControl", "check_transfer_target", "is_sip_uri"]


class CallControl(Protocol):
    def complete(self, call_sid: str) -> Deferred[bool]:
        """Hang the call up; fires True once the carrier confirmed, False if it could not."""

    def transfer(self, call_sid: str, to: str) -> Deferred[bool]:
        """Move the call to ``to`` (checked with ``check_transfer_target``: raises
        ``ValueError`` at once when it is not a valid target); fires True or False."""
