"""OpenAI Realtime's event model: the client events voiced sends and the server events it reads.

Pure: JSON in and out, no sockets. The session (``voiced.agent.realtime_session``) builds
its messages here and hands every text frame to ``parse``, which returns one of the small
event classes below (``Other`` for a type voiced has no use for) or raises ``WireError``
for a frame that is not a Realtime event at all.

Both names of the audio events are read: the beta's ``response.audio.delta`` /
``response.audio_transcript.*`` and GA's ``response.output_audio.delta`` /
``response.output_audio_transcript.*`` (the same payloads). Audio is 8 kHz mu-law both
ways (``g711_ulaw``): 8 bytes are one millisecond, so the position the caller heard in a
reply's audio is its byte count over 8 (``audio_end_ms``).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

from voiced.agent.base import Said

#: g711_ulaw: 8000 one-byte samples a second.
ULAW_BYTES_PER_MS = 8
#: The turn detection the model runs in "server" mode: its defaults but for the reply, which
#: it starts itself (create_response), and the barge-in, which voiced reacts to (speech_started).
SERVER_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
              "create_response": True, "interrupt_response": True}


class WireError(ValueError):
    """A frame that is not a Realtime server event."""


def audio_end_ms(heard_bytes: int) -> int:
    """``conversation.item.truncate``'s position for ``heard_bytes`` of g711_ulaw audio heard."""
    return max(0, heard_bytes) // ULAW_BYTES_PER_MS


# ---- client events ---------------------------------------------------------------------------

def _dump(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def realtime_tools(chat_tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The text LLM's tool objects (``{"type": "function", "function": {...}}``, as
    ``voiced.agent.tools`` loads them) in Realtime's flat shape (``{"type", "name", ...}``)."""
    flat = []
    for tool in chat_tools:
        function = tool["function"]
        flat.append({"type": "function", "name": function["name"],
                     "description": function.get("description", ""),
                     "parameters": function.get("parameters", {"type": "object", "properties": {}})})
    return flat


def session_update(instructions: str, voice: str, server_turns: bool, tools: Sequence[dict[str, Any]],
                   transcription_model: str = "whisper-1", ga: bool = False) -> bytes:
    """The session's configuration, in the beta's shape or (``ga``) the GA interface's."""
    if ga:
        return _dump({"type": "session.update", "session": _ga_session(instructions, voice, server_turns, tools,
                                                                         transcription_model)})
    session: dict[str, Any] = {
        "modalities": ["audio", "text"],
        "instructions": instructions,
        "input_audio_format": "g711_ulaw",
        "output_audio_format": "g711_ulaw",
        # The caller's words as text, for the CALLER lines and the record (the model hears the audio).
        "input_audio_transcription": {"model": transcription_model},
        "turn_detection": dict(SERVER_VAD) if server_turns else None,
        "tools": list(tools),
        "tool_choice": "auto" if tools else "none",
    }
    if voice:
        session["voice"] = voice
    return _dump({"type": "session.update", "session": session})


def _ga_session(instructions: str, voice: str, server_turns: bool, tools: Sequence[dict[str, Any]],
                transcription_model: str) -> dict[str, Any]:
    output: dict[str, Any] = {"format": {"type": "audio/pcmu"}}
    if voice:
        output["voice"] = voice
    return {
        "type": "realtime",
        "instructions": instructions,
        "output_modalities": ["audio"],
        "audio": {"input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": transcription_model},
                            "turn_detection": dict(SERVER_VAD) if server_turns else None},
                  "output": output},
        "tools": list(tools),
        "tool_choice": "auto" if tools else "none",
    }


def append_audio(ulaw: bytes) -> bytes:
    return _dump({"type": "input_audio_buffer.append", "audio": base64.b64encode(ulaw).decode("ascii")})


def commit_audio() -> bytes:
    return _dump({"type": "input_audio_buffer.commit"})


def clear_audio() -> bytes:
    return _dump({"type": "input_audio_buffer.clear"})


def response_create(instructions: str = "") -> bytes:
    event: dict[str, Any] = {"type": "response.create"}
    if instructions:
        event["response"] = {"instructions": instructions}
    return _dump(event)


def response_cancel() -> bytes:
    return _dump({"type": "response.cancel"})


def truncate(item_id: str, end_ms: int) -> bytes:
    return _dump({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
                  "audio_end_ms": end_ms})


def function_output(call_id: str, output: Any) -> bytes:
    text = output if isinstance(output, str) else json.dumps(output, separators=(",", ":"), ensure_ascii=False)
    return _dump({"type": "conversation.item.create",
                  "item": {"type": "function_call_output", "call_id": call_id, "output": text}})


def user_text(text: str) -> bytes:
    """A text item from the caller's side: an event told to the model (a key pressed, a silence)."""
    return _dump({"type": "conversation.item.create",
                  "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})


def history_item(said: Said, ga: bool = False) -> bytes:
    """One line of the call so far, re-sent to a new session after a reconnect (the bot's as heard)."""
    if said.role == "caller":
        return user_text(said.text)
    content = {"type": "output_text" if ga else "text", "text": said.text}
    return _dump({"type": "conversation.item.create",
                  "item": {"type": "message", "role": "assistant", "content": [content]}})


# ---- server events ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionReady:
    """``session.created`` / ``session.updated``."""
    updated: bool


@dataclass(frozen=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    item_id: str


@dataclass(frozen=True)
class Committed:
    """The caller's audio so far became a user item (``input_audio_buffer.committed``)."""
    item_id: str


@dataclass(frozen=True)
class CallerTranscript:
    item_id: str
    transcript: str


@dataclass(frozen=True)
class ResponseCreated:
    response_id: str


@dataclass(frozen=True)
class AudioDelta:
    response_id: str
    item_id: str
    audio: bytes


@dataclass(frozen=True)
class TranscriptDelta:
    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True)
class TranscriptDone:
    response_id: str
    item_id: str
    transcript: str


@dataclass(frozen=True)
class FunctionCall:
    response_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ResponseDone:
    response_id: str
    status: str  # completed, cancelled, incomplete, failed
    reason: str = ""


@dataclass(frozen=True)
class ServerError:
    kind: str  # invalid_request_error, server_error, ...
    code: str
    message: str

    @property
    def the_clients_fault(self) -> bool:
        """A client event the server refused (cancel with nothing to cancel, a truncate past
        the audio): the session goes on. Anything else is the server's, and the session is lost."""
        return self.kind == "invalid_request_error"


@dataclass(frozen=True)
class Other:
    type: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


Event = Union[SessionReady, SpeechStarted, SpeechStopped, Committed, CallerTranscript, ResponseCreated, AudioDelta,
              TranscriptDelta, TranscriptDone, FunctionCall, ResponseDone, ServerError, Other]

_AUDIO_DELTA = {"response.audio.delta", "response.output_audio.delta"}
_TRANSCRIPT_DELTA = {"response.audio_transcript.delta", "response.output_audio_transcript.delta"}
_TRANSCRIPT_DONE = {"response.audio_transcript.done", "response.output_audio_transcript.done"}


def _text(event: dict[str, Any], name: str) -> str:
    value = event.get(name, "")
    if not isinstance(value, str):
        raise WireError(f"{event.get('type')}: {name!r} is not a string")
    return value


def parse(frame: bytes | str) -> Event:
    """One server event from a text frame."""
    try:
        event = json.loads(frame)
    except ValueError as e:
        raise WireError(f"not JSON: {e}") from e
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise WireError("not an event (no 'type')")
    kind = event["type"]
    if kind in _AUDIO_DELTA:
        try:
            audio = base64.b64decode(_text(event, "delta"), validate=True)
        except (binascii.Error, ValueError) as e:
            raise WireError(f"{kind}: the audio is not base64") from e
        return AudioDelta(_text(event, "response_id"), _text(event, "item_id"), audio)
    if kind in _TRANSCRIPT_DELTA:
        return TranscriptDelta(_text(event, "response_id"), _text(event, "item_id"), _text(event, "delta"))
    if kind in _TRANSCRIPT_DONE:
        return TranscriptDone(_text(event, "response_id"), _text(event, "item_id"), _text(event, "transcript"))
    if kind in ("session.created", "session.updated"):
        return SessionReady(kind == "session.updated")
    if kind == "input_audio_buffer.speech_started":
        start = event.get("audio_start_ms", 0)
        return SpeechStarted(_text(event, "item_id"), start if isinstance(start, int) else 0)
    if kind == "input_audio_buffer.speech_stopped":
        return SpeechStopped(_text(event, "item_id"))
    if kind == "input_audio_buffer.committed":
        return Committed(_text(event, "item_id"))
    if kind == "conversation.item.input_audio_transcription.completed":
        return CallerTranscript(_text(event, "item_id"), _text(event, "transcript"))
    if kind in ("response.created", "response.done"):
        response = event.get("response")
        if not isinstance(response, dict):
            raise WireError(f"{kind}: no 'response' object")
        response_id = _text(response, "id")
        if kind == "response.created":
            return ResponseCreated(response_id)
        details = response.get("status_details") or {}
        reason = details.get("reason", "") if isinstance(details, dict) else ""
        return ResponseDone(response_id, _text(response, "status") or "completed",
                            reason if isinstance(reason, str) else "")
    if kind == "response.function_call_arguments.done":
        return FunctionCall(_text(event, "response_id"), _text(event, "call_id"), _text(event, "name"),
                            _text(event, "arguments"))
    if kind == "error":
        error = event.get("error")
        if not isinstance(error, dict):
            raise WireError("error: no 'error' object")
        code = error.get("code") or ""
        return ServerError(str(error.get("type") or ""), str(code), str(error.get("message") or ""))
    return Other(kind, event)
