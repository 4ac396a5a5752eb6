"""Per-turn timings: one TURN log line each, and Prometheus histograms of the same.

Definitions (README repeats them):
- STT_FIRST_PARTIAL_MS: caller speech start -> first partial transcript;
- STT_FINAL_MS: caller speech end -> the turn's final transcript;
- AGENT_FIRST_SENTENCE_MS: the turn handed to the agent -> its first complete sentence;
- TTS_READY_MS: reply text known -> first reply audio ready;
- TOTAL_LATENCY_MS: caller speech end -> first reply audio frame sent;
- PLAYBACK_START_MS: caller speech end -> echo of the reply's first mark (the caller hears it).
"Caller speech end" is the last voiced frame, so the end-of-utterance wait is inside
the total. A value an engine cannot produce is written as "-", never invented.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily

from voiced.lifecycle import construction_counts
from voiced.logging import Logger  # twisted's, cheaper: every turn's TURN line

log = Logger(namespace="voiced.turn")

# The *_created series double the exposition for no use here.
disable_created_metrics()

_BUCKETS_MS = (25, 50, 100, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)
_LAG_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 5000)


@dataclass
class TurnTimes:
    """Clock times (seconds) of one turn's milestones; None = did not happen."""

    speech_start: float | None = None
    speech_end: float | None = None
    first_partial: float | None = None
    final: float | None = None
    agent_asked: float | None = None
    reply_text: float | None = None
    tts_ready: float | None = None
    first_audio_sent: float | None = None
    playback_start: float | None = None

    def intervals_ms(self) -> dict[str, int | None]:
        def span(start: float | None, end: float | None) -> int | None:
            if start is None or end is None:
                return None
            return max(0, round((end - start) * 1000))

        return {
            "STT_FIRST_PARTIAL_MS": span(self.speech_start, self.first_partial),
            "STT_FINAL_MS": span(self.speech_end, self.final),
            "AGENT_FIRST_SENTENCE_MS": span(self.agent_asked, self.reply_text),
            "TTS_READY_MS": span(self.reply_text, self.tts_ready),
            "TOTAL_LATENCY_MS": span(self.speech_end, self.first_audio_sent),
            "PLAYBACK_START_MS": span(self.speech_end, self.playback_start),
        }


def turn_line(call_id: str, turn: int, times: TurnTimes) -> str:
    return _turn_line(call_id, turn, times.intervals_ms())


def _turn_line(call_id: str, turn: int, intervals: dict[str, int | None]) -> str:
    values = " ".join(f"{k}={'-' if v is None else v}" for k, v in intervals.items())
    return f"TURN call={call_id} turn={turn} {values}"


class _ConstructionCollector:
    """Exports voiced.lifecycle counts: they must stay flat however many calls pass."""

    def collect(self):  # type: ignore[no-untyped-def]
        family = CounterMetricFamily(
            "voiced_constructions", "Process-wide objects constructed, by kind", labels=["kind"]
        )
        for kind, count in sorted(construction_counts().items()):
            family.add_metric([kind], count)
        yield family


def multiprocess_dir() -> str:
    """prometheus_client's multiprocess directory, when its values live there (``--workers``):
    decided when prometheus_client was first imported, as prometheus_client does."""
    from prometheus_client import values

    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "") if values.ValueClass is not values.MutexValue else ""


class LabelledCounts:
    """A labelled counter's children, each bound on first use: ``labels()`` checks its
    arguments and takes a lock on every call, and a call counts several decisions a turn.
    The label values are fixed words (verdicts, reasons), so the children are few."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[tuple[str, ...], Counter] = {}

    def inc(self, *values: str) -> None:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._counter.labels(*values)
        child.inc()


class Metrics:
    """The process's metrics registry (owned by the service).

    Under ``--workers`` (prometheus_client's multiprocess mode) the metrics write to the
    shared directory and ``registry`` (what /metrics serves) collects every worker's;
    ``voiced_constructions`` is per process and left out there."""

    def __init__(self) -> None:
        shared = multiprocess_dir()
        # Under --workers the served registry holds only the collector of the shared files, and
        # must not collect while registering it: a worker starting beside another would read
        # that one's metrics file while it is still empty (prometheus_client fails on it, and
        # the worker exited at start-up).
        self.registry = CollectorRegistry(auto_describe=not shared)
        if shared:
            from prometheus_client.multiprocess import MultiProcessCollector

            MultiProcessCollector(self.registry, path=shared)
            self._own = CollectorRegistry(auto_describe=True)  # the metrics' home; not served
        else:
            self._own = self.registry
        own = self._own
        self._turn_histograms = {
            name: Histogram(
                f"voiced_{name.lower()}".removesuffix("_ms") + "_milliseconds",
                f"Per-turn {name}",
                buckets=_BUCKETS_MS,
                registry=own,
            )
            for name in TurnTimes().intervals_ms()
        }
        # voiced.lag: how late the reactor runs, and a hop through the speech loop and back.
        self._lag_histograms = {
            "reactor": Histogram("voiced_reactor_lag_milliseconds", "How late a 100 ms reactor timer fired",
                                 buckets=_LAG_BUCKETS_MS, registry=own),
            "speech_loop": Histogram("voiced_speech_loop_round_trip_milliseconds",
                                     "Reactor -> Google speech loop -> reactor, for a no-op",
                                     buckets=_LAG_BUCKETS_MS, registry=own),
        }
        self.calls_total = Counter("voiced_calls", "Calls started", registry=own)
        self.calls_active = Gauge("voiced_calls_active", "Calls in progress", registry=own,
                                  multiprocess_mode="livesum")
        self.calls_refused_total = Counter("voiced_calls_refused", "WebSocket upgrades refused with 503 at max_calls",
                                           registry=own)
        self.turns_total = Counter("voiced_turns", "Caller turns answered", registry=own)
        self.barge_ins_total = Counter("voiced_barge_ins", "Replies interrupted by the caller", registry=own)
        # issue 22: which engine of a VOICED_STT fallback chain transcribed the callers.
        self.stt_engine_served_total = Counter("voiced_stt_engine_served", "Finals with words, by the STT engine "
                                               "of the fallback chain that transcribed them", labelnames=["engine"],
                                               registry=own)
        self.stt_failures_total = Counter(
            "voiced_stt_failures", "Utterances where STT gave up (interim phrase played)", registry=own
        )
        self.unheard_turns_total = Counter(
            "voiced_unheard_turns", "Utterances nothing could transcribe, answered by an interim or ask-again phrase",
            registry=own,
        )
        self.stt_retries_total = Counter(
            "voiced_stt_retries", "STT stream retries (a 503 or reset retried on that call's stream)",
            registry=own,
        )
        # issue 22: which TTS engine (a chain's link, local, cache excluded) spoke each sentence.
        self.tts_engine_served_total = Counter("voiced_tts_engine_served", "Sentences spoken, by the TTS engine "
                                               "that spoke them", labelnames=["engine"], registry=own)
        self.tts_fallbacks_total = Counter(
            "voiced_tts_fallbacks", "Sentences spoken by the fallback TTS engine", registry=own
        )
        self.fillers_total = Counter(
            "voiced_agent_fillers", "Fillers played because the agent's first sentence was late", registry=own
        )
        self.agent_failures_total = Counter(
            "voiced_agent_failures", "Failed agent replies (an apology played)", registry=own
        )
        self.turn_end_decisions_total = Counter(
            "voiced_turn_end_decisions", "End-of-turn decisions, by verdict (finish, wait, keep_listening) and reason",
            ["decision", "reason"], registry=own,
        )
        self.barge_in_decisions_total = Counter(
            "voiced_barge_in_decisions", "Caller sound over the bot, by decision (interrupt, ignore, resume) and reason",
            ["decision", "reason"], registry=own,
        )
        # What the calls count by (decision, reason), children bound once per process.
        self.turn_end_decisions = LabelledCounts(self.turn_end_decisions_total)
        self.barge_in_decisions = LabelledCounts(self.barge_in_decisions_total)
        self.protocol_errors_total = Counter(
            "voiced_protocol_errors", "Malformed carrier messages", registry=own
        )
        self.answered_by_total = Counter(
            "voiced_answered_by", "Outbound calls by who answered (human, machine, unknown) and who said so "
            "(voiced, carrier)", ["answered_by", "source"], registry=own,
        )
        if not shared:
            self.registry.register(_ConstructionCollector())

    def observe_lag(self, kind: str, ms: float) -> None:
        self._lag_histograms[kind].observe(ms)

    def record_turn(self, call_id: str, turn: int, times: TurnTimes) -> dict[str, int | None]:
        """Log the TURN line and observe the histograms; returns the line's values."""
        intervals = times.intervals_ms()
        log.info("{line}", line=_turn_line(call_id, turn, intervals), call=call_id, turn=turn, **intervals)
        self.turns_total.inc()
        for name, value in intervals.items():
            if value is not None:
                self._turn_histograms[name].observe(value)
        return intervals
