"""Transfer targets: what an agent may move a call to, checked before any carrier sees it.

Agents (an LLM, a webhook, a dialog file), the option table and every carrier's transfer
depend on this one check, so it lives beside none of them.
"""

from __future__ import annotations

import re

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
