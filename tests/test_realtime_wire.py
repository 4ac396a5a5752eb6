"""OpenAI Realtime's event model (``voiced.agent.realtime_wire``) and the heard position of a
streamed reply (``voiced.call.streamed_reply``): pure, no sockets."""

from __future__ import annotations

import base64
import json

from twisted.trial.unittest import SynchronousTestCase

from voiced.agent import realtime_wire as wire
from voiced.agent.base import Said
from voiced.agent.tools import builtin_tools


def event(**fields) -> bytes:
    return json.dumps(fields).encode()


class ClientEventTests(SynchronousTestCase):
    def test_session_update_asks_for_g711_ulaw_both_ways_and_the_callers_transcript(self):
        tools = wire.realtime_tools(builtin_tools(["+15550100"]))
        sent = json.loads(wire.session_update("Be brief.", "marin", server_turns=False, tools=tools))
        session = sent["session"]
        self.assertEqual(sent["type"], "session.update")
        self.assertEqual((session["input_audio_format"], session["output_audio_format"]), ("g711_ulaw", "g711_ulaw"))
        self.assertIsNone(session["turn_detection"], "voiced's end of turn: the client commits")
        self.assertEqual(session["input_audio_transcription"], {"model": "whisper-1"})
        self.assertEqual((session["instructions"], session["voice"]), ("Be brief.", "marin"))
        self.assertEqual([t["name"] for t in session["tools"]], ["end_call", "transfer_call"])
        self.assertEqual(session["tools"][1]["parameters"]["properties"]["to"]["enum"], ["+15550100"])
        self.assertNotIn("function", session["tools"][0], "Realtime's tools are flat")

    def test_the_ga_shape(self):
        session = json.loads(wire.session_update("Be brief.", "marin", server_turns=True, tools=[], ga=True))["session"]
        self.assertEqual(session["type"], "realtime")
        self.assertEqual(session["audio"]["input"]["format"], {"type": "audio/pcmu"})
        self.assertEqual(session["audio"]["output"], {"format": {"type": "audio/pcmu"}, "voice": "marin"})
        self.assertEqual(session["audio"]["input"]["turn_detection"]["type"], "server_vad")
        self.assertNotIn("input_audio_format", session)
        bot = json.loads(wire.history_item(Said("bot", "Hello"), ga=True))["item"]
        self.assertEqual(bot["content"][0]["type"], "output_text")

    def test_server_turns_ask_for_server_vad(self):
        session = json.loads(wire.session_update("", "", server_turns=True, tools=[]))["session"]
        self.assertEqual(session["turn_detection"]["type"], "server_vad")
        self.assertNotIn("voice", session)
        self.assertEqual(session["tool_choice"], "none")

    def test_audio_is_base64(self):
        sent = json.loads(wire.append_audio(b"\xff\x00\x7f"))
        self.assertEqual(base64.b64decode(sent["audio"]), b"\xff\x00\x7f")

    def test_truncate_and_function_output(self):
        self.assertEqual(json.loads(wire.truncate("item_1", 1234)),
                         {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0,
                          "audio_end_ms": 1234})
        output = json.loads(wire.function_output("call_1", {"open": "9-5"}))
        self.assertEqual(output["item"], {"type": "function_call_output", "call_id": "call_1",
                                          "output": '{"open":"9-5"}'})

    def test_history_items_for_a_resumed_session(self):
        caller = json.loads(wire.history_item(Said("caller", "hi")))["item"]
        bot = json.loads(wire.history_item(Said("bot", "Hello, how", interrupted=True)))["item"]
        self.assertEqual((caller["role"], caller["content"][0]), ("user", {"type": "input_text", "text": "hi"}))
        self.assertEqual((bot["role"], bot["content"][0]), ("assistant", {"type": "text", "text": "Hello, how"}))

    def test_audio_end_ms_is_bytes_over_eight(self):
        self.assertEqual(wire.audio_end_ms(8000), 1000)
        self.assertEqual(wire.audio_end_ms(7), 0)
        self.assertEqual(wire.audio_end_ms(-5), 0)


class ServerEventTests(SynchronousTestCase):
    def test_audio_delta_in_both_names(self):
        for name in ("response.audio.delta", "response.output_audio.delta"):
            parsed = wire.parse(event(type=name, response_id="r", item_id="i", delta=base64.b64encode(b"ab").decode()))
            self.assertEqual(parsed, wire.AudioDelta("r", "i", b"ab"))

    def test_transcripts_of_both_sides(self):
        self.assertEqual(wire.parse(event(type="response.audio_transcript.delta", response_id="r", item_id="i",
                                          delta="Hel")), wire.TranscriptDelta("r", "i", "Hel"))
        self.assertEqual(wire.parse(event(type="response.output_audio_transcript.done", response_id="r",
                                          item_id="i", transcript="Hello")), wire.TranscriptDone("r", "i", "Hello"))
        self.assertEqual(wire.parse(event(type="conversation.item.input_audio_transcription.completed",
                                          item_id="c", content_index=0, transcript="hi")),
                         wire.CallerTranscript("c", "hi"))

    def test_responses_and_tools(self):
        self.assertEqual(wire.parse(event(type="response.created", response={"id": "r1", "status": "in_progress"})),
                         wire.ResponseCreated("r1"))
        self.assertEqual(wire.parse(event(type="response.done", response={
            "id": "r1", "status": "cancelled", "status_details": {"reason": "turn_detected"}})),
            wire.ResponseDone("r1", "cancelled", "turn_detected"))
        self.assertEqual(wire.parse(event(type="response.function_call_arguments.done", response_id="r1",
                                          item_id="i", call_id="c1", name="hours", arguments="{}")),
                         wire.FunctionCall("r1", "c1", "hours", "{}"))

    def test_speech_and_commits(self):
        self.assertEqual(wire.parse(event(type="input_audio_buffer.speech_started", item_id="c", audio_start_ms=300)),
                         wire.SpeechStarted("c", 300))
        self.assertEqual(wire.parse(event(type="input_audio_buffer.committed", item_id="c", previous_item_id=None)),
                         wire.Committed("c"))

    def test_errors_say_whose_fault(self):
        refused = wire.parse(event(type="error", error={"type": "invalid_request_error",
                                                        "code": "response_cancel_not_active", "message": "no"}))
        self.assertTrue(refused.the_clients_fault)
        broken = wire.parse(event(type="error", error={"type": "server_error", "code": None, "message": "oops"}))
        self.assertEqual(broken, wire.ServerError("server_error", "", "oops"))
        self.assertFalse(broken.the_clients_fault)

    def test_unknown_events_are_other(self):
        self.assertEqual(wire.parse(event(type="rate_limits.updated", rate_limits=[])).type, "rate_limits.updated")

    def test_malformed_frames_are_wire_errors(self):
        for frame in (b"not json", b"[]", event(kind="x"), event(type="response.audio.delta", delta="!!!",
                                                                 response_id="r", item_id="i"),
                      event(type="response.created"), event(type="error", error="x"),
                      event(type="response.audio_transcript.delta", response_id="r", item_id="i", delta=5)):
            with self.assertRaises(wire.WireError, msg=frame):
                wire.parse(frame)
