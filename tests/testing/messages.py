"""Carrier messages for property tests: shaped like Exotel's or Telnyx's, with any field missing,
retyped or garbled; FAST, the hypothesis settings they run under."""

from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, settings, strategies as st


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


exotel_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)


@st.composite
def exotel_like(draw):
    """Messages shaped like Exotel's, with any field missing, retyped or garbled."""
    message = {"event": draw(st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "x"]))}
    for key in draw(st.sets(st.sampled_from(["sequence_number", "stream_sid", "streamSid", "start", "media",
                                              "mark", "dtmf", "stop"]))):
        message[key] = draw(exotel_json_values)
    if message["event"] == "start" and draw(st.booleans()):
        message["start"] = {"call_sid": draw(exotel_json_values), "media_format": {
            k: draw(exotel_json_values) for k in draw(st.sets(st.sampled_from(["encoding", "sample_rate", "bit_rate"])))},
            "custom_parameters": draw(exotel_json_values)}
    if message["event"] == "media" and draw(st.booleans()):
        message["media"] = {"payload": base64.b64encode(draw(st.binary(max_size=400))).decode(),
                            "chunk": draw(exotel_json_values)}
    return json.dumps(message)


telnyx_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)


@st.composite
def telnyx_like(draw):
    """Messages shaped like Telnyx's, with any field missing, retyped or garbled."""
    message = {"event": draw(st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "error",
                                              "other"]))}
    for key in draw(st.sets(st.sampled_from(["sequence_number", "stream_id", "start", "media", "mark", "dtmf",
                                              "stop", "payload"]))):
        message[key] = draw(telnyx_json_values)
    if message["event"] == "media" and draw(st.booleans()):
        message["media"] = {"payload": base64.b64encode(draw(st.binary(max_size=400))).decode(),
                            "chunk": draw(st.integers(-5, 50) | st.text(max_size=3) | telnyx_json_values)}
    if message["event"] == "start" and draw(st.booleans()):
        message["start"] = {"call_control_id": draw(telnyx_json_values), "media_format": draw(telnyx_json_values),
                            "custom_parameters": draw(telnyx_json_values)}
    return json.dumps(message)
