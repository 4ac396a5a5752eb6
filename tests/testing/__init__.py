"""Test doubles and helpers shared by several test modules (as txacme's ``testing.py``), one
module per area: a test module imports what it shares from here, naming the module
(``from tests.testing.turn import FakeSTT``), never from another ``test_*`` module
(tests/test_layers.py checks). Nothing is re-exported here, so a test loads only its area's
dependencies (google-cloud-*, grpc and espeak are imported where used).

agents     the OpenAI agent on its loopback fake; reply sinks
caller     voiced-call's side: tones, FakeLink, ScriptedBot (a stand-in daemon)
campaigns  campaigns over a real journal: Harness (Clock), AdminServer (loopback)
carriers   carrier sockets in process: Twilio's wire, RecordingService, a socket Harness
console    the operator console over a service made of its parts
deepgram   Deepgram STT against its loopback fake
emulator   the Google emulator through the real google-cloud-speech client
google     Google STT against the loopback emulator (GoogleEmulatorCase)
journal    journal files: records, paths, a schema-1 journal
machine    an outbound call with answering-machine detection (OutboundCall)
messages   carrier messages for property tests (hypothesis strategies)
network    MemoryNetwork: connections in memory on a Clock
outbound   outbound dialing: a carrier dialer the test answers
profiles   number profiles files and settings
recording  recordings read back: channels, where sound starts and ends
rest       carrier REST clients without a network
threads    thread pools on a Clock
turn       the call core's engines and transport, recorded (FakeSTT, FakeTTS, ...)

Loopback fakes that speak a real protocol over sockets live in ``tests/fakes/``; the
turn-taking harness in ``tests/turn_harness.py``; e2e processes in ``tests/e2e/daemon.py``.
"""
