"""The process-wide agent ``VOICED_AGENT`` names, built from the settings.

Called once, by ``VoicedService`` at warm-up: the agent borrows the service's HTTP
client and clock, and every call's conversation borrows the agent.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from voiced.agent.base import Agent
from voiced.config import Settings
from voiced.phrases import PhraseCatalog

log = Logger(namespace="voiced.service")



def build_agent(s: Settings, phrases: PhraseCatalog, http: Any, clock: IReactorTime) -> Agent:
    if s.agent == "script":
        from voiced.agent.script import ScriptAgent

        return ScriptAgent(s.script, s.language)
    greeting = [phrases["greeting"]]
    if s.agent == "realtime":
        return _realtime_agent(s, phrases, http, clock)
    if s.agent == "webhook":
        from voiced.agent.webhook import WebhookAgent

        if not s.webhook_secret:
            log.warn("Webhook requests are not signed (no VOICED_WEBHOOK_SECRET): the application cannot "
                     "tell them from anyone else's")
        return WebhookAgent(http, clock, s.webhook_url, s.webhook_secret, s.webhook_timeout_ms / 1000, greeting)
    from voiced.agent.llm import LLMSettings, OpenAIAgent

    llm = LLMSettings(
        base_url=s.openai_base_url.rstrip("/"), model=s.openai_model, api_key=s.openai_api_key,
        system_prompt=_system_prompt(s, phrases), temperature=s.llm_temperature,
        max_tokens=s.llm_max_tokens or None, first_token_timeout_s=s.llm_first_token_timeout_ms / 1000,
        reply_timeout_s=s.llm_reply_timeout_ms / 1000, greeting=greeting, tools_file=s.tools_file,
        transfer_targets=s.transfer_targets, goodbye_phrase=phrases["goodbye"], transfer_phrase=phrases["transfer"],
    )
    return OpenAIAgent(http, clock, llm, _tools(s, http, clock))


def _realtime_agent(s: Settings, phrases: PhraseCatalog, http: Any, clock: IReactorTime) -> Agent:
    """OpenAI Realtime: its connector (client factory, TLS context) is made here, once."""
    from voiced.agent.realtime import RealtimeAgent, RealtimeSettings

    settings = RealtimeSettings(
        url=s.openai_realtime_url, model=s.openai_realtime_model, api_key=s.openai_api_key,
        voice=s.openai_realtime_voice, server_turns=s.realtime_turn_detection == "server",
        instructions=_system_prompt(s, phrases),
        greeting=phrases["greeting"], transfer_targets=s.transfer_targets, tools_file=s.tools_file,
        ga=s.openai_realtime_api == "ga",
    )
    return RealtimeAgent(clock, settings, _tools(s, http, clock))


def _system_prompt(s: Settings, phrases: PhraseCatalog) -> str:
    """The model's instructions: the prompt file's, the option's, or the language's default."""
    from voiced.agent.llm_messages import default_system_prompt

    prompt = s.system_prompt
    if s.system_prompt_file:
        with open(s.system_prompt_file, encoding="utf-8") as f:
            prompt = f.read().strip()
    return prompt or default_system_prompt(s.language, phrases["language_name"])


def _tools(s: Settings, http: Any, clock: IReactorTime) -> Any:
    """The tool runner the model calls through (None without ``--tools-url``)."""
    from voiced.agent.tools import ToolRunner

    return ToolRunner(http, clock, s.tools_url, s.webhook_secret, s.tools_timeout_ms / 1000) if s.tools_url else None
