"""Property-based tests (hypothesis): whatever the carrier sends, the Twilio parser
answers with a message or a ProtocolError, the media socket never raises, and the
turn machine stays in a named state, never plays a cancelled reply after its
``clear``, and never holds more than its bounded buffers."""

import base64
import json
import unittest

import txaio
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests.testing.turn import (
    SILENT, VOICED, VOICED_PCM, FakeSTT, FakeTTS, RecordingMetrics, RecordingTransport, ScriptedConversation,
)

from tests.testing.carriers import HANDSHAKE, RecordingService, client_frame, start_message, twilio_factory

from voiced.agent.base import CallInfo, EndCall
from voiced.turns.eou import EndOfUtterance
from voiced.call.turn import HISTORY_LIMIT, MAX_QUEUED_EVENTS, Call, State, TurnSettings
from voiced.carrier.twilio import wire as twilio
from voiced.tts.speaker import PhraseCache, Speaker

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
events = st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "other"])


@st.composite
def twilio_like(draw):
    """Messages shaped like Twilio's, with any field missing, retyped or garbled."""
    message = {"event": draw(events)}
    for key in draw(st.sets(st.sampled_from(["sequenceNumber", "streamSid", "start", "media", "mark", "dtmf",
                                              "stop"]))):
        message[key] = draw(json_values)
    if message["event"] == "media" and draw(st.booleans()):
        message["media"] = {"payload": base64.b64encode(draw(st.binary(max_size=400))).decode(),
                            "chunk": draw(st.integers(-5, 50) | st.text(max_size=3))}
    return json.dumps(message)


class ParserProperties(unittest.TestCase):
    @FAST
    @given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode) | twilio_like().map(str.encode)
           | json_values.map(lambda v: json.dumps(v).encode()))
    def test_the_parser_returns_a_message_or_a_protocol_error(self, payload):
        try:
            message = twilio.parse_message(payload)
        except twilio.ProtocolError:
            return
        self.assertIsInstance(message, (twilio.Connected, twilio.Start, twilio.Media, twilio.Dtmf, twilio.Mark,
                                        twilio.Stop, twilio.Unknown))

    @FAST
    @given(st.binary(max_size=300) | st.text(max_size=300) | twilio_like() | twilio_like().map(str.encode)
           | json_values.map(json.dumps) | st.text(" \t\n\r{}[]\",:0-9.eE+-nulltruefalse\\u", max_size=40))
    def test_loads_answers_as_json_loads_does(self, text):
        def outcome(fn):
            try:
                return ("value", fn(text))
            except Exception as e:
                return (type(e), str(e))

        self.assertEqual(repr(outcome(twilio.loads)), repr(outcome(json.loads)))

    @FAST
    @given(st.lists(twilio_like() | st.binary(max_size=80).map(lambda b: b.decode("latin-1")), max_size=40))
    def test_the_media_socket_never_raises_and_opens_at_most_one_call(self, messages):
        txaio.config.loop = Clock()
        service = RecordingService()
        proto = twilio_factory(service, Clock()).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        proto.makeConnection(StringTransport())
        proto.dataReceived(HANDSHAKE)
        proto.dataReceived(client_frame(start_message()))
        for text in messages:
            proto.dataReceived(client_frame(text.encode("utf-8")))  # raises if anything escapes
        self.assertLessEqual(len(service.calls), 1)


class TurnMachine(RuleBasedStateMachine):
    """A call driven by any interleaving of caller audio, mark echoes (right or wrong),
    transcripts, DTMF, agent answers and clock advances."""

    def __init__(self):
        super().__init__()
        self.clock = Clock()
        self.clock.advance(1000)
        self.transport = RecordingTransport()
        self.conversation = ScriptedConversation()
        self.pending = []
        eou = EndOfUtterance(self.clock, lambda pcm: pcm == VOICED_PCM, eou_silence_ms=240, min_speech_ms=60)
        self.call = Call(CallInfo("CA1", "MZ1"), self.clock, self.transport, FakeSTT(False),
                         Speaker(FakeTTS(), None, PhraseCache()), self.conversation, eou, RecordingMetrics(),
                         TurnSettings(interim_phrase="Oops.", idle_reprompt_ms=3000, max_call_s=120))
        self.call.start()
        self.cancelled_prefixes = set()

    @rule(pattern=st.text(alphabet="v.", min_size=1, max_size=30))
    def caller_audio(self, pattern):
        for ch in pattern:
            self.clock.advance(0.02)
            self.call.on_media(VOICED if ch == "v" else SILENT)

    @rule(data=st.data())
    def echo_a_sent_mark(self, data):
        marks = self.transport.marks()
        if marks:
            self.call.on_mark(data.draw(st.sampled_from(marks)))

    @rule(name=st.text(max_size=8))
    def echo_a_bogus_mark(self, name):
        self.call.on_mark(name)

    @rule(text=st.sampled_from(["what time do you open", "bye", "", "hello there"]), final=st.booleans())
    def transcript(self, text, final):
        self.call.on_transcript(text, final)

    @rule(digit=st.sampled_from("0123456789*#"))
    def dtmf(self, digit):
        self.call.on_dtmf(digit)

    @rule(kind=st.sampled_from(["slow", "hang-up", "fail"]))
    def queue_an_answer(self, kind):
        if kind == "slow":
            self.conversation.answers.append(lambda sink: self.pending.append(Deferred()) or self.pending[-1])
        elif kind == "hang-up":
            self.conversation.answers.append(lambda sink: (sink.sentence("Goodbye."), sink.action(EndCall())) and None)
        else:
            from twisted.internet.defer import fail

            from voiced.agent.base import AgentError
            self.conversation.answers.append(lambda sink: fail(AgentError("down")))

    @precondition(lambda self: self.pending)
    @rule()
    def slow_answer_arrives(self):
        d = self.pending.pop(0)
        if not d.called:
            d.callback(None)

    @rule(seconds=st.floats(0.01, 10))
    def time_passes(self, seconds):
        self.clock.advance(seconds)

    @rule()
    def carrier_hangs_up(self):
        self.call.close("websocket closed code=1000")

    @invariant()
    def in_a_named_state(self):
        assert isinstance(self.call.state, State)

    @invariant()
    def no_cancelled_reply_plays_after_its_clear(self):
        sent = self.transport.sent
        for i, item in enumerate(sent):
            if item == ("clear",):
                before = {m[1].split(".")[0] for m in sent[:i] if m[0] == "mark"}
                after = {m[1].split(".")[0] for m in sent[i + 1:] if m[0] == "mark"}
                # Twilio dropped everything queued: a reply that had audio out must not go on.
                assert not {p for p in after & before if not p.startswith("p")}, (before, after, sent)

    @invariant()
    def bounded_buffers(self):
        assert len(self.call._answering.events) <= MAX_QUEUED_EVENTS
        assert len(self.call.history) <= HISTORY_LIMIT
        assert len(self.call._playback.replies) <= 4, list(self.call._playback.replies)


TurnMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])


class TurnMachineProperties(TurnMachine.TestCase):
    def test_any_interleaving(self):  # trial collects test_* methods; hypothesis names it runTest
        self.runTest()
