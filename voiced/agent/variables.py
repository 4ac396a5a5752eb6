"""A call's variables in the agent's words: ``{name}`` placeholders filled from an outbound
call's variables (``POST /calls``' ``"variables"``).

``fill("Hello {name}", {"name": "Dana"})`` is ``"Hello Dana"``: ``str.format_map`` on a
mapping that leaves a name it does not have as it was (``{appointment}`` stays
``{appointment}``), so a prompt or a dialog line written for several campaigns never fails
on a call that lacks one of them. Text that is not a valid format string (a lone ``{``)
is used as it is. Without variables nothing is changed at all (an inbound call's ``{{``
stays ``{{``).
"""

from __future__ import annotations

from typing import Mapping


class KeepUnknown(dict):
    """A mapping for ``str.format_map`` that leaves a name it lacks as ``{name}``."""

    def __missing__(self, name: str) -> str:
        return "{" + name + "}"


def fill(template: str, variables: Mapping[str, str]) -> str:
    if not variables or "{" not in template:
        return template
    try:
        return template.format_map(KeepUnknown(variables))
    except (ValueError, IndexError, KeyError, AttributeError, TypeError):
        return template  # "{0}", "{name.attr}", "{name:>x}" on a str...: not a template of ours
