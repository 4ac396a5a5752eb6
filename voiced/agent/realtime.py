"""``VOICED_AGENT=realtime``: OpenAI Realtime, a speech-to-speech model, one WebSocket per call.

The agent is built once per process (``voiced.agent.factory``): it holds the settings, the
tool definitions (the text LLM's: the built-in ``end_call`` / ``transfer_call`` and
``VOICED_TOOLS_FILE``'s, run at ``VOICED_TOOLS_URL``) and the ``RealtimeConnector`` (one
client factory, one TLS context); each call's conversation is a ``RealtimeSession`` that
borrows them. The call runs in model mode (``voiced.call.speech_to_speech``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from twisted.internet.interfaces import IReactorTime

from voiced.agent.base import CallInfo
from voiced.agent.realtime_link import RealtimeConnector
from voiced.agent.realtime_session import RealtimeSession
from voiced.agent.realtime_wire import realtime_tools
from voiced.agent.tools import ToolRunner, builtin_tools, load_tools


@dataclass(frozen=True)
class RealtimeSettings:
    url: str
    model: str
    api_key: str = ""
    voice: str = ""
    server_turns: bool = False  # --realtime-turn-detection server: the model's VAD ends turns
    instructions: str = ""
    greeting: str = ""
    transfer_targets: Sequence[str] = ()
    tools_file: str = ""
    connect_timeout_s: float = 10.0
    ga: bool = False  # the GA interface's session shape (else the beta's)


class RealtimeAgent:
    name = "realtime"

    def __init__(self, reactor: Any, settings: RealtimeSettings, tools: ToolRunner | None = None) -> None:
        self.clock: IReactorTime = reactor
        self.settings = settings
        own_tools = load_tools(settings.tools_file) if settings.tools_file else []
        if own_tools and tools is None:
            raise ValueError(f"{settings.tools_file}: declares tools, but no tools URL is set to run them")
        self.tool_runner = tools
        self.tool_names = frozenset(t["function"]["name"] for t in own_tools)
        self.realtime_tools = realtime_tools([*builtin_tools(settings.transfer_targets), *own_tools])
        self.connector = RealtimeConnector(reactor, settings.url, settings.model, settings.api_key,
                                           settings.connect_timeout_s, settings.ga)

    def start_conversation(self, call: CallInfo) -> RealtimeSession:
        return RealtimeSession(self, call)

    def fixed_phrases(self) -> list[str]:
        return []  # the model speaks for itself; voiced's own phrases are cached from the call's settings
