"""A call's variables in the agent's words: ``{name}`` placeholders filled from an outbound
call's variables (``POST /calls``' ``"variables"``).

``fill("Hello {name}", {"name": "Dana"})`` is ``"Hello Dana"``: ``str.format_map`` on a
mapping that leaves a name it does not have as it was (``{appointment}`` stays
``{appointment}``), so a prompt or a dialog line written for several campaigns never fails
on a call that lacks one of them; ``{{`` and ``}}`` are literal braces. Only plain
``{name}`` fields are templates: text with anything else in braces (``{0}``, ``{name.attr}``,
``{name!r}``, ``{name:>9}``, a lone ``{``) is used exactly as written, so neither a stray
brace nor a crafted field can reach beyond the variables. Without variables nothing is
changed at all (an inbound call's lines are said as written).
"""

from __future__ import annotations

from string import Formatter
from typing import Mapping


class KeepUnknown(dict):
    """A mapping for ``str.format_map`` that leaves a name it lacks as ``{name}``."""

    def __missing__(self, name: str) -> str:
        return "{" + name + "}"


def is_template(text: str) -> bool:
    """Every field of ``text`` is a plain ``{name}`` (and its braces are balanced)."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in Formatter().parse(text) if name is not None]
    except ValueError:
        return False
    return all(name.isidentifier() and not spec and not conv for name, spec, conv in fields)


def fill(template: str, variables: Mapping[str, str]) -> str:
    if not variables or "{" not in template or not is_template(template):
        return template
    return template.format_map(KeepUnknown(variables))
