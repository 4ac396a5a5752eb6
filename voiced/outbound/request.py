"""What to dial (``DialRequest``) and the statuses a dial goes through. Pure: no I/O.

A request comes from outside (``POST /calls``, ``voiced-dial``, a campaign's CSV row), so
``DialRequest.parse`` checks every field and says what is wrong in words, never with a
traceback: the number is E.164, the variables are a flat object of short strings.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

#: What a dial's history may hold, in the order a call lives them ("answered" is Twilio's
#: in-progress: the callee picked up).
DIAL_STATUSES = ("queued", "initiated", "ringing", "answered", "busy", "no-answer", "failed", "canceled", "completed")
FINAL_STATUSES = frozenset({"busy", "no-answer", "failed", "canceled", "completed"})

_E164 = re.compile(r"\+[1-9]\d{6,14}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_VARIABLES = 50
MAX_VARIABLE_CHARS = 500
DIAL_ID_PATTERN = re.compile(r"d-[0-9a-f]{16}")


class BadDialRequest(ValueError):
    """A request voiced will not dial; the message says why, for the client."""


def new_dial_id() -> str:
    return "d-" + os.urandom(8).hex()


def is_dial_id(value: str) -> bool:
    return isinstance(value, str) and DIAL_ID_PATTERN.fullmatch(value) is not None


def check_number(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _E164.fullmatch(value.strip()):
        raise BadDialRequest(f"{what} must be an E.164 number like +14155550100, got {value!r}")
    return value.strip()


def check_variables(value: Any) -> dict[str, str]:
    """A flat object of names to strings (numbers are taken as their text)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadDialRequest("variables must be an object of names to strings")
    if len(value) > MAX_VARIABLES:
        raise BadDialRequest(f"at most {MAX_VARIABLES} variables, got {len(value)}")
    checked: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _VARIABLE_NAME.fullmatch(name):
            raise BadDialRequest(f"variable name {name!r} is not a name (letters, digits and _; not starting "
                                 "with a digit)")
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise BadDialRequest(f"variable {name!r} must be a string or a number")
        text = str(text)
        if len(text) > MAX_VARIABLE_CHARS:
            raise BadDialRequest(f"variable {name!r} is longer than {MAX_VARIABLE_CHARS} characters")
        checked[name] = text
    return checked


@dataclass(frozen=True)
class DialRequest:
    to: str  # E.164, checked
    variables: dict[str, str] = field(default_factory=dict)  # reach the agent
    from_number: str = ""  # default: --dial-from
    # Ask the carrier's answering-machine detection (Twilio: DetectMessageEnd, asynchronous).
    machine_detection: bool = False
    campaign_id: str = ""  # set by campaigns
    carrier: str = ""  # twilio, telnyx, plivo, vonage; empty: the daemon's --dial-carrier

    @classmethod
    def parse(cls, body: Any) -> "DialRequest":
        """The request ``POST /calls`` was given (its JSON), checked."""
        if not isinstance(body, Mapping):
            raise BadDialRequest('the body must be a JSON object like {"to": "+14155550100", "variables": {}}')
        unknown = sorted(set(body) - {"to", "from", "variables", "machine_detection", "carrier"})
        if unknown:
            raise BadDialRequest(f"unknown field(s): {', '.join(map(str, unknown))}")
        if "to" not in body:
            raise BadDialRequest('"to" is required (an E.164 number)')
        from_number = body.get("from") or ""
        machine_detection = body.get("machine_detection", False)
        if not isinstance(machine_detection, bool):
            raise BadDialRequest('"machine_detection" must be true or false')
        carrier = body.get("carrier") or ""
        if carrier not in ("", "twilio", "telnyx", "plivo", "vonage"):
            raise BadDialRequest('"carrier" must be one of twilio, telnyx, plivo, vonage')
        return cls(check_number(body["to"], '"to"'), check_variables(body.get("variables")),
                   check_number(from_number, '"from"') if from_number else "", machine_detection, carrier=carrier)


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES
