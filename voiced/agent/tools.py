"""Tools the model can call: the built-in call actions, and the application's own.

``end_call`` is always offered, ``transfer_call`` only with the operator's list of
targets to choose from (``VOICED_TRANSFER_TARGETS``); both become call actions. Any
other tool is declared in ``VOICED_TOOLS_FILE``: a JSON list of OpenAI tool objects,
``{"type": "function", "function": {"name", "description", "parameters"}}``, loaded
once at start-up (any mistake is a ``ValueError`` naming the file). A call to one is
POSTed by ``ToolRunner`` to ``VOICED_TOOLS_URL`` as::

    {"call": {"sid", "from", "to", "parameters"}, "tool": "book_appointment",
     "arguments": {"day": "monday"}}

signed like every request voiced sends (``X-Voiced-Signature: sha256=<hex HMAC-SHA256
of the raw body>``, see ``voiced.signing``). The JSON answer, whatever its shape, goes
back to the model. A tool that fails -- an HTTP error, no answer in time, an answer
that is not JSON -- answers ``{"error": "tool failed: ..."}``: the model is told and
can say so, rather than the caller hearing silence.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

import treq.client
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from voiced.agent.base import CallInfo
from voiced.httpbody import BodyTooLarge, cancellable, read_body, read_body_prefix
from voiced.lifecycle import note_construction
from voiced.options import default
from voiced.signing import SIGNATURE_HEADER, sign

log = Logger()

END_CALL = "end_call"
TRANSFER_CALL = "transfer_call"

END_CALL_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": END_CALL,
        "description": "Hang up the phone call once your reply has been spoken. "
        "Use it when the caller is done or says goodbye; say goodbye in the same reply.",
        "parameters": {"type": "object", "properties": {}},
    },
}


def transfer_tool(targets: Sequence[str]) -> dict[str, Any]:
    """``transfer_call``, restricted to ``targets``: a caller can talk a model into
    anything, so the model may only choose among numbers the operator listed (a model
    free to dial any number is a toll-fraud line)."""
    return {
        "type": "function",
        "function": {
            "name": TRANSFER_CALL,
            "description": "Transfer the caller to a person or another number once your "
            "reply has been spoken; tell the caller you are transferring them.",
            "parameters": {
                "type": "object",
                "properties": {"to": {"type": "string", "enum": list(targets),
                                      "description": "Where to transfer the call."}},
                "required": ["to"],
            },
        },
    }


def builtin_tools(transfer_targets: Sequence[str]) -> list[dict[str, Any]]:
    """``end_call`` always; ``transfer_call`` only when there are targets to offer."""
    return [END_CALL_TOOL] + ([transfer_tool(transfer_targets)] if transfer_targets else [])


# OpenAI's rule for function names.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A tool's answer is meant for a prompt: a few KB. Beyond this it is a mistake.
MAX_ANSWER_BYTES = 256 * 1024


def load_tools(path: str) -> list[dict[str, Any]]:
    """The tools declared in ``path`` (validated, built-ins excluded)."""
    try:
        with open(path, encoding="utf-8") as f:
            declared = json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the tools file: {e.strerror or e}") from e
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(declared, list):
        raise ValueError(f"{path}: expected a JSON list of tool objects")
    seen: set[str] = {END_CALL, TRANSFER_CALL}
    tools = []
    for position, tool in enumerate(declared):
        where = f"{path}: tool {position}"
        name = _check_tool(tool, where)
        if name in seen:
            builtin = name in (END_CALL, TRANSFER_CALL)
            raise ValueError(f"{where}: {name!r} is {'a built-in tool' if builtin else 'declared twice'}")
        seen.add(name)
        tools.append(tool)
    return tools


def _check_tool(tool: Any, where: str) -> str:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise ValueError(f'{where}: expected {{"type": "function", "function": {{...}}}}')
    function = tool.get("function")
    if not isinstance(function, dict):
        raise ValueError(f"{where}: 'function' must be an object")
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}: 'name' must be 1-64 letters, digits, '_' or '-'")
    if not isinstance(function.get("description", ""), str):
        raise ValueError(f"{where} ({name}): 'description' must be a string")
    parameters = function.get("parameters", {"type": "object"})
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise ValueError(f"{where} ({name}): 'parameters' must be a JSON Schema object")
    return name


def parse_arguments(raw: str) -> dict[str, Any] | str:
    """A tool call's arguments as the model streamed them: the object, or an error
    message for the model when they are not a JSON object."""
    if not raw.strip():
        return {}  # models often send "" for a tool without parameters
    try:
        arguments = json.loads(raw)
    except ValueError:
        return "the arguments are not valid JSON"
    if not isinstance(arguments, dict):
        return "the arguments must be a JSON object"
    return arguments


def tool_error(message: str) -> dict[str, str]:
    return {"error": f"tool failed: {message}"}


class ToolRunner:
    """Runs the application's tools over HTTP; one per process (shares the HTTP pool)."""

    def __init__(
        self,
        http: treq.client.HTTPClient,
        clock: IReactorTime,
        url: str,
        secret: str,
        timeout_s: float = default("tools_timeout_ms") / 1000,
    ) -> None:
        self._http = http
        self._clock = clock
        self._url = url
        self._secret = secret
        self._timeout_s = timeout_s
        note_construction("tool_runner")

    def run(self, call: CallInfo, name: str, arguments: dict[str, Any]) -> Deferred[dict[str, Any] | str]:
        """The tool's JSON answer (a non-object answer comes as ``{"result": value}``),
        or ``{"error": ...}``; never fails, unless cancelled."""
        body = json.dumps(
            {"call": call.as_json(), "tool": name, "arguments": arguments}, separators=(",", ":")
        ).encode("utf-8")
        d = cancellable(Deferred.fromCoroutine(self._post(body, call, name)))
        d.addTimeout(self._timeout_s, self._clock)
        d.addErrback(self._failed, call, name)
        return d

    async def _post(self, body: bytes, call: CallInfo, name: str) -> dict[str, Any] | str:
        headers = {"Content-Type": ["application/json"], SIGNATURE_HEADER: [sign(self._secret, body)]}
        response = await self._http.post(self._url, data=body, headers=headers, unbuffered=True)
        if not 200 <= response.code < 300:
            await read_body_prefix(response, 4096)  # only the status matters
            return self._answer_error(call, name, f"HTTP {response.code}")
        try:
            answer = json.loads(await read_body(response, MAX_ANSWER_BYTES))
        except BodyTooLarge:
            return self._answer_error(call, name, f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
        except ValueError:
            return self._answer_error(call, name, "the answer is not JSON")
        if isinstance(answer, (dict, str)):
            return answer
        return {"result": answer}

    @staticmethod
    def _answer_error(call: CallInfo, name: str, message: str) -> dict[str, str]:
        log.warn("tool {tool} failed for call {call_id}: {why}", tool=name, call_id=call.call_id, why=message)
        return tool_error(message)

    def _failed(self, failure: Any, call: CallInfo, name: str) -> Any:
        if failure.check(CancelledError):
            return failure  # the reply was abandoned (barge-in): nothing to report
        if failure.check(TimeoutError):
            message = f"no answer within {self._timeout_s:g} s"
        else:
            # The exception's text may be long (a connection error's repr); the
            # model needs only to know that the tool did not work.
            message = "could not reach the tool server"
        log.warn(
            "tool {tool} failed for call {call_id}: {why}",
            tool=name, call_id=call.call_id, why=failure.getErrorMessage(),
        )
        return tool_error(message)

