"""What an OpenAI-compatible model is told for one turn: the chat messages.

What the model is given, per turn: one system message (the system prompt, a template
whose ``{name}``s an outbound call's variables fill, then the call's context: the
caller's and the called number, the stream's custom parameters, and on a call voiced
placed that it placed it and its variables), then the history -- the caller as ``user``, the bot as ``assistant``,
each bot entry holding only what the caller heard -- then the caller's new words, or
a bracketed note for an event ("[The caller pressed 5]"; an answering machine's
``VOICEMAIL_NOTE``). A bot reply the caller
cut off ends with " —" (an em dash), and the system message says what that means;
the note is not put in the assistant text, where the model would learn to imitate it.
An empty interrupted entry (nothing heard) is left out, and consecutive entries of
one role are merged, because several servers' chat templates insist that user and
assistant alternate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voiced.agent.base import CallInfo, Dtmf, Idle, Said, TurnRequest, Voicemail
from voiced.agent.variables import fill

if TYPE_CHECKING:
    from voiced.agent.llm import LLMSettings

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly, concise voice assistant answering a phone call. Your words are "
    "spoken aloud by text-to-speech: answer in short plain sentences, without lists, "
    "markdown, emoji or URLs, and ask one question at a time."
)


def default_system_prompt(language: str, language_name: str = "") -> str:
    """The default prompt, naming the language to answer in (a model answers in the
    language it is addressed in, and this prompt is English)."""
    name = language_name or language
    return f"{DEFAULT_SYSTEM_PROMPT} The caller speaks {name} ({language}): always answer in {name}."


INTERRUPTED_NOTE = (
    "An assistant message ending with \" —\" was interrupted by the caller: they heard "
    "it only up to that point."
)


#: An outbound call reached voicemail, past the beep: what the model is asked for instead of a reply.
VOICEMAIL_NOTE = (
    "[You reached the callee's voicemail and the beep has sounded: nobody will answer. Leave a short "
    "message now, in two or three sentences: who is calling, why, and how to call back. It is recorded, "
    "and the call ends after it.]"
)


def call_context(call: CallInfo) -> str:
    """What the model is told of the call after its prompt: who placed it, the numbers, the
    carrier's parameters and an outbound call's variables (the Realtime agent's too)."""
    context = []
    if call.direction == "outbound":
        context.append("You placed this call: the person answering did not call you.")
    if call.from_number:
        context.append(f"The caller's number is {call.from_number}.")
    if call.to_number:
        context.append(f"They called {call.to_number}.")
    if call.custom_parameters:
        pairs = ", ".join(f"{k}={v}" for k, v in sorted(call.custom_parameters.items()))
        context.append(f"Call parameters: {pairs}.")
    if call.variables:
        pairs = ", ".join(f"{k}={v}" for k, v in sorted(call.variables.items()))
        context.append(f"Call variables: {pairs}.")
    return " ".join(context)


def build_messages(settings: LLMSettings, call: CallInfo, request: TurnRequest) -> list[dict[str, Any]]:
    """The chat messages for one turn (see the module docstring)."""
    # The prompt is a template: an outbound call's variables fill its {name}s (voiced.agent.variables).
    system = [fill(settings.system_prompt, call.variables).strip(), call_context(call)]
    system.append(INTERRUPTED_NOTE)
    messages: list[dict[str, Any]] = [{"role": "system", "content": "\n\n".join(s for s in system if s)}]
    turns = [_history_message(said) for said in request.history]
    turns.append({"role": "user", "content": _new_user_text(request)})
    for message in turns:
        if message is None:
            continue
        if messages[-1]["role"] == message["role"]:
            messages[-1] = {**messages[-1], "content": messages[-1]["content"] + "\n" + message["content"]}
        else:
            messages.append(message)
    return messages


def _history_message(said: Said) -> dict[str, str] | None:
    text = said.text.strip()
    if said.role == "caller":
        return {"role": "user", "content": text} if text else None
    if not text:
        return None
    return {"role": "assistant", "content": text + " —" if said.interrupted else text}


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _new_user_text(request: TurnRequest) -> str:
    event = request.event
    if isinstance(event, Dtmf):
        note = f"[The caller pressed {event.digit}]"
    elif isinstance(event, Idle):
        again = f" ({_ordinal(event.count)} time)" if event.count > 1 else ""
        note = f"[The caller has been silent for a while{again}]"
    elif isinstance(event, Voicemail):
        note = VOICEMAIL_NOTE
    else:
        return request.text
    return f"{request.text} {note}" if request.text else note
