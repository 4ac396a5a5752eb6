"""A call's account of itself: its record (``voiced.call.record``), the events its
observer hears (the journal, live viewers), the TURN metrics and the counters. The
turn machine hands it facts; it decides nothing and never raises into the call."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from voiced.agent.base import Said
from voiced.call.model import Turn
from voiced.call.record import CallObserver, CallRecord, TurnRecord
from voiced.call.reply import Reply, ReplyKind
from voiced.metrics import Metrics

log = Logger(namespace="voiced.call")


class Chronicle:
    def __init__(self, record: CallRecord, observer: CallObserver | None, metrics: Metrics,
                 clock: IReactorTime) -> None:
        self.record = record
        self.observer = observer
        self.metrics = metrics
        self._clock = clock
        self.call_id = record.call_sid

    def tell(self, kind: str, data: dict[str, Any]) -> None:
        if self.observer is None:
            return
        try:
            self.observer.call_event(self.record, kind, data)
        except Exception:  # an observer's bug must never reach the call
            log.failure("Call observer failed on {kind} call={call}", kind=kind, call=self.call_id)

    def asked(self, turn: Turn, again: bool) -> None:
        """The agent is asked ``turn`` (``again``: a late final answers a turn recorded as unheard)."""
        assert turn.number is not None
        if again:  # one turn, not two
            self.record.turns = [t for t in self.record.turns if t.number != turn.number]
        event = turn.event.as_json() if turn.event is not None else None
        began = turn.times.speech_start if turn.times.speech_start is not None else self._clock.seconds()
        self.record.turns.append(TurnRecord(turn.number, turn.text, event, caller_at_s=self._since_start(began)))
        self.tell("caller", {"turn": turn.number, "text": turn.text, "event": event})

    def asked_by_voice(self, turn: Turn) -> None:
        """A speech-to-speech model is asked ``turn`` as audio: its words come later
        (``caller_transcript``), often while it is being answered."""
        assert turn.number is not None
        event = turn.event.as_json() if turn.event is not None else None
        self.record.turns.append(TurnRecord(turn.number, turn.text, event))
        if event is not None:
            self.tell("caller", {"turn": turn.number, "text": "", "event": event})

    def caller_transcript(self, turn: Turn, text: str) -> None:
        """The model's transcript of what the caller said in ``turn``."""
        if (record := self.record.turn(turn.number)) is not None:
            record.caller_text = text
        self.tell("caller", {"turn": turn.number, "text": text, "event": None})

    def withdrawn(self, turn: Turn) -> None:
        """``turn`` was asked too soon (the caller went on): it is asked again, whole, under its number."""
        self.record.turns = [t for t in self.record.turns if t.number != turn.number]

    def unheard(self, turn: Turn, reason: str, said: str) -> None:
        assert turn.number is not None
        self.metrics.unheard_turns_total.inc()
        log.info("UNHEARD call={call} turn={turn} reason={reason}", call=self.call_id, turn=turn.number,
                 reason=reason)
        self.record.turns.append(TurnRecord(turn.number, "", {"unheard": reason}, reply_text=said))
        self.tell("caller", {"turn": turn.number, "text": "", "event": {"unheard": reason}})
        self.tell("bot", {"turn": turn.number, "text": said, "heard": "", "interrupted": False})

    def reply_plays_at(self, turn: Turn, at: float) -> None:
        """The first sentence of ``turn``'s reply starts playing at clock time ``at``."""
        if turn.number is None:
            return
        if (record := self.record.turn(turn.number)) is not None and record.bot_at_s is None:
            record.bot_at_s = self._since_start(at)

    def _since_start(self, at: float) -> float:
        return round(max(0.0, at - self.record.started_at), 3)

    def agent_failed(self, turn: Turn | None, error: str) -> None:
        self.metrics.agent_failures_total.inc()
        if turn is not None and (record := self.record.turn(turn.number)) is not None:
            record.agent_error = error

    def filler(self, turn: Turn | None) -> None:
        self.metrics.fillers_total.inc()
        if turn is not None and (record := self.record.turn(turn.number)) is not None:
            record.filler = True

    def phrase(self, kind: str, text: str) -> None:
        """Every phrase voiced says itself, by its catalog key and in the words played."""
        log.info("PHRASE call={call} kind={kind} text={text!r}", call=self.call_id, kind=kind, text=text)

    def reply_sent(self, reply: Reply) -> None:
        """All of a reply's audio is out (the BOT line): viewers see its text while it plays."""
        if reply.kind is not ReplyKind.PROMPT and reply.spoken_text:
            self.tell("reply", {"turn": reply.turn.number if reply.turn is not None else None,
                                "text": reply.spoken_text})

    def reply_ended(self, reply: Reply, heard: Said | None, cut: bool) -> None:
        """A reply played out or was cut: what the caller heard of it."""
        if reply.kind is ReplyKind.PROMPT or not (reply.spoken_text or heard):
            return  # an interim prompt is not conversation
        record = self.record.turn(reply.turn.number) if reply.turn is not None else None
        heard_text = heard.text if heard is not None else ""
        interrupted = cut and heard_text != reply.spoken_text
        if record is not None:
            record.reply_text, record.heard_text, record.interrupted = reply.spoken_text, heard_text, interrupted
            record.actions = [type(a).__name__ for a in reply.actions]
        self.tell("bot", {"turn": reply.turn.number if reply.turn is not None else None,
                          "text": reply.spoken_text, "heard": heard_text, "interrupted": interrupted})

    def measured(self, turn: Turn) -> None:
        """The turn's timings are known (its first sentence played, or it ended without)."""
        if turn.reported or turn.number is None:
            return
        turn.reported = True
        intervals = self.metrics.record_turn(self.call_id, turn.number, turn.times)
        if (record := self.record.turn(turn.number)) is not None:
            record.metrics = intervals
        self.tell("turn", {"turn": turn.number, "metrics": intervals})

    def barge_in(self, decision: str, reason: str) -> None:
        self.metrics.barge_in_decisions.inc(decision, reason)
        self.record.barge_ins.append({"at_s": round(self._clock.seconds() - self.record.started_at, 3),
                                      "decision": decision, "reason": reason})

    def stt_retry(self) -> None:
        self.record.stt_retries += 1
        self.metrics.stt_retries_total.inc()

    def stt_failure(self, reason: str) -> None:
        self.metrics.stt_failures_total.inc()
        self.record.stt_failures.append(reason)

    def ended(self, reason: str) -> None:
        self.record.ended_at = self._clock.seconds()
        self.record.end_reason = reason or "-"
        self.tell("end", {})
