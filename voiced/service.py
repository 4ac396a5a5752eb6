"""VoicedService: the one owner of everything process-wide.

Engines, models, gRPC channels, credentials, thread pools, the HTTP connection
pool, the agent, the journal, the phrase cache and the metrics registry are created
here, in ``startService`` (after twistd has forked), and released in ``stopService``.
A call only borrows references: this file (with ``voiced/warmup.py``, the warm-up
``startService`` begins, which builds the engines, ``voiced/profile_kits.py``, which
builds what each call profile names, ``voiced/agent/factory.py``, which only the
warm-up calls, ``voiced/service_records.py``, the journal and the recordings, and
``voiced/service_outbound.py``, the dialer and the campaigns) is the only place that
constructs them, so the rule
"nothing process-wide per call or per turn" can be checked by reading it. Health
reports are in ``voiced/health.py``. The service knows nothing of HTTP or of any
carrier: ``voiced/app.py`` gives it its web face and its carriers, which start calls
through ``admit`` and ``new_call``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized
from twisted.python.threadpool import ThreadPool

from voiced import __version__
from voiced.agent.base import Agent, CallInfo
from voiced.turns.barge_in import BargeInPolicy, BargeInSettings
from voiced.turns.detection import TurnDetection
from voiced.turns.eou import EndOfUtterance
from voiced.turns.policy import EndOfTurnSettings, TurnEndPolicy
from voiced.turns.vad import VoiceActivity, WebRtcVoiceActivity
from voiced.call.control import CallControl
from voiced.call_counts import CallCounts
from voiced.call.record import CallHub
from voiced.call.turn import Call, CallTransport, TurnSettings
from voiced.carrier.base import CallStart, Refused
from voiced.config import Settings
from voiced.drain import Drain
from voiced.health import HealthReports
from voiced.interpreter import hand_over_the_gil_promptly
from voiced.lag import LagMonitor
from voiced.lifecycle import note_construction
from voiced.metrics import Metrics
from voiced.outbound.dialer import call_direction
from voiced.profiles import load_profiles
from voiced.service_outbound import OutboundSide
from voiced.service_records import CallRecords
from voiced.signals import SignalHandlers
from voiced.stt.base import STTEngine, stt_input
from voiced.tts.speaker import Speaker
from voiced.warmup import WarmUp

log = Logger(namespace="voiced.service")


DAEMON_LOG_FILE = "voiced.log"
# Agent, tool and REST requests in flight at once per host; more wait for a connection.
HTTP_CONNECTIONS_PER_HOST = 64
CLOSE_WAIT_S = 2.0  # how long stopping waits for callers' sockets to close


def _stdout_is_devnull() -> bool:
    try:
        out, null = os.fstat(1), os.stat(os.devnull)
    except OSError:
        return False
    return (out.st_dev, out.st_ino) == (null.st_dev, null.st_ino)


class VoicedService(MultiService, HealthReports, WarmUp, CallRecords, OutboundSide):
    name = "voiced"

    def __init__(self, settings: Settings, reactor: Any = None, startup_warnings: Any = (),
                 worker: Any = None) -> None:
        super().__init__()
        self.worker = worker  # voiced.worker_spec.WorkerSpec under --workers N, else None
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self.settings = settings
        self.clock = reactor
        self.startup_warnings = list(startup_warnings)
        # Pure-Python objects, safe to build before twistd forks.
        self.metrics = Metrics()
        self.phrases = settings.phrase_catalog()
        self.turn_settings = TurnSettings(
            barge_in_ms=settings.barge_in_ms,
            final_timeout_ms=settings.stt_final_timeout_ms,
            fallback_timeout_ms=settings.stt_fallback_timeout_ms,
            interim_phrase=self.phrases["interim"],
            interim_wait_phrase=self.phrases["interim_wait"],
            ask_again_phrase=self.phrases["ask_again"],
            filler_ms=settings.agent_filler_ms,
            filler_phrase=self.phrases["filler"],
            apology_phrase=self.phrases["apology"],
            idle_reprompt_ms=settings.idle_reprompt_ms,
            idle_max_reprompts=settings.idle_max_reprompts,
            idle_goodbye_phrase=self.phrases["idle_goodbye"],
            max_call_s=settings.max_call_s,
            time_limit_phrase=self.phrases["time_limit"],
            drain_goodbye_phrase=self.phrases["drain_goodbye"],
            false_interruption_ms=settings.false_interruption_ms,
            outbound_hello_timeout_ms=settings.outbound_hello_timeout_ms,
            announcement_phrase=settings.recording_announcement if settings.recordings else "",
        )
        # Turn-taking: the policies are pure and shared by every call; a model-based VAD
        # or turn model replaces these in the warm-up (a model loads after the fork).
        self.voice_activity: VoiceActivity = WebRtcVoiceActivity(settings.vad_aggressiveness)
        self.turn_detection = TurnDetection(
            end=TurnEndPolicy(EndOfTurnSettings(hold_ms=settings.turn_hold_ms,
                                                model_threshold=settings.turn_model_threshold)),
            barge_in=BargeInPolicy(BargeInSettings(echo_margin_db=settings.echo_guard_db,
                                                   background_margin_db=settings.background_margin_db)),
            adaptive=settings.turn_adaptive,
        )
        self.ready = False
        self.stopping = False
        self.started_at: float | None = None
        self._switch_interval_before: float | None = None  # the GIL switch interval to restore at stop
        self.engine_warmup_ms: dict[str, int] = {}
        self.tts_warmup_ms: int | None = None
        self.warmup_error: str | None = None  # the last warm-up failure (retried unless fatal)
        self.warmup_fatal = False  # a failure no retry can fix: /health says unhealthy
        self._started_clock: float | None = None
        self._signals = SignalHandlers(reactor, self._reopen_logs, self._stop_signal)
        # Built once by the warm-up; a retried warm-up keeps what it already has.
        self._whisper: Any = None
        self._espeak: Any = None
        self._google: Any = None
        self.calls: set[Call] = set()
        # SIGTERM/SIGINT drain: stop taking calls, let those in progress end, then stop.
        self.drain = Drain(self.calls, reactor, settings.drain_timeout_s, stop=self._stop_reactor)
        # Under --workers, every worker's calls in progress (max_calls is the daemon's total).
        self._call_counts: CallCounts | None = None
        self._lag: LagMonitor | None = None
        self._refusing = False  # at max_calls: logged once per episode
        self.call_hub = CallHub()  # every call's events: the journal and live viewers subscribe
        # Per-call profiles (--profiles, checked at start-up): the warm-up builds their kits.
        self.profiles = load_profiles(settings.profiles) if settings.profiles else None
        self.kits: dict[str, Any] = {}
        self._profile_parts: dict[Any, Any] = {}
        # Created in startService.
        self.stt_engine: STTEngine | None = None
        self.speaker: Speaker | None = None
        self.agent: Agent | None = None
        self.http: Any = None  # the treq HTTPClient over the service's connection pool
        self.journal: Any = None  # voiced.journal.writer.JournalWriter, with VOICED_JOURNAL
        self.outbox: Any = None  # voiced.journal.outbox.Outbox, with VOICED_CALL_WEBHOOK_URL
        self.dialer: Any = None  # voiced.outbound.dialer.Dialer, with Twilio's REST credentials
        self.recordings: Any = None  # voiced.recording.recordings.Recordings, with VOICED_RECORDINGS
        self.campaigns: Any = None  # voiced.outbound.campaigns.Campaigns: journal, dialer, one worker
        self._pools: list[ThreadPool] = []
        self._closers: list[Any] = []
        self._warming: Deferred[None] | None = None
        self._log_observer: Any = None
        self._drained: Deferred[None] | None = None

        # Given by the composition root (voiced.app): the carriers' REST controls (made once
        # the HTTP client exists, by carrier name), their modes and start-up warnings.
        self.control_factories: dict[str, Any] = {}
        self.call_controls: dict[str, CallControl] = {}
        self.carrier_warnings: list[str] = []
        self.carrier_modes = ""  # "twilio=signed telnyx=open ...", logged at start

    @property
    def ready(self) -> bool:
        """This process takes calls (warmed up, not stopping)."""
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value
        if self.worker is not None:
            self.worker.publish_ready(value)  # /health/ready on any worker reads every worker's

    # ---- twistd integration ---------------------------------------------------------------
    def setServiceParent(self, parent: Any) -> None:
        """Give the twistd application our non-blocking log observer: twistd starts
        logging with the application's ILogObserver component, if it has one."""
        if isinstance(parent, Componentized) and parent.getComponent(ILogObserver, None) is None:
            from voiced.logging import make_observer

            self._log_observer = make_observer(self.settings.log_format, self.settings.log_level,
                                               path=self.settings.log_file)
            parent.setComponent(ILogObserver, self._log_observer)
        super().setServiceParent(parent)

    # ---- lifecycle -------------------------------------------------------------------------
    def privilegedStartService(self) -> None:
        if self._log_observer is not None and self._log_observer.path is None and _stdout_is_devnull():
            # A daemonized tac file (the plugin names the file before the fork): twistd pointed
            # stdout at /dev/null; keep the logs, a failed listen below included.
            self._log_observer.log_to_file(os.path.abspath(DAEMON_LOG_FILE))
        super().privilegedStartService()  # the listeners

    def startService(self) -> None:
        self.started_at = time.time()
        self._started_clock = self.clock.seconds()
        worker = "" if self.worker is None else f" worker={self.worker.index}/{self.worker.count}"
        log.info("APP_START pid={pid}{worker} version={version} {summary}", pid=os.getpid(), worker=worker,
                 version=__version__, summary=self.settings.summary())
        for warning in self.startup_warnings:
            log.warn("CONFIG_WARNING {warning}", warning=warning)
        self._switch_interval_before = hand_over_the_gil_promptly()
        import autobahn
        from autobahn.websocket import USES_NVX

        # NVX (C UTF-8 validator and masker) serves Autobahn's path: control frames, fragments;
        # whole inbound data frames are decoded by voiced.carrier.websocket itself.
        log.info("WEBSOCKET autobahn={version} nvx={nvx}", version=autobahn.__version__,
                 nvx="on" if USES_NVX else "off (pip install 'autobahn[accelerate]')")
        if self._log_observer is not None:
            self._signals.install()  # we own the process's logging: SIGUSR1/SIGHUP reopen it
        if self.carrier_modes:
            log.info("CARRIERS {modes} (open: no secret, loopback only; off: refused until configured)",
                     modes=self.carrier_modes)
        for warning in self.carrier_warnings:
            log.warn("{warning}", warning=warning)
        # ~0.3 s of one core per utterance; by default one at a time, leaving a core to the reactor.
        self.whisper_pool = self._pool("voiced-whisper", self.settings.whisper_workers)
        # Google's streams and syntheses all run on one event loop, which holds this pool's thread.
        self.stt_pool = self._pool("voiced-stt", 1)
        self.tts_pool = self._pool("voiced-tts", 16)
        # The turn-taking models, one batch at a time across calls each (voiced.turns.batching);
        # apart, so that a 45 ms turn verdict never holds up the VAD's 32 ms windows.
        self.vad_pool = self._pool("voiced-vad", 1)
        self.turn_pool = self._pool("voiced-turn-model", 1)
        self._start_http()
        self._start_journal()  # (voiced.service_records)
        self._start_outbound()  # the dialer and campaigns (voiced.service_outbound), with the journal
        self._start_recordings()
        if self.worker is not None:
            self._call_counts = counts = self.worker.open_call_counts()
            counts.publish(self.worker.index, 0)  # a restarted worker's predecessor's calls are gone
        self._lag = LagMonitor(self.clock, self.metrics.observe_lag, self._speech_loop_round_trip)
        self._lag.start()
        super().startService()  # the listeners: /health answers while engines warm up
        self._warming = self._start_warm_up()

    def _stop_signal(self, signal_name: str) -> None:
        if not self.drain.draining:
            self.stopping = True
            self.ready = False  # /health/ready 503 and /media upgrades 503 from now on
        self.drain.on_signal(signal_name)

    def _stop_reactor(self) -> None:
        from twisted.internet.error import ReactorNotRunning

        try:
            self.clock.stop()  # twistd runs stopService, then exits 0
        except ReactorNotRunning:
            pass  # already stopping

    def _reopen_logs(self, signal_name: str) -> None:
        observer = self._log_observer
        if observer is not None and observer.reopen():
            # Queued after the reopening: this line is the new file's first.
            log.info("LOG_REOPENED signal={signal} file={file}", signal=signal_name, file=observer.path)
        else:
            log.info("LOG_REOPENED signal={signal}: logging to stdout, nothing to reopen", signal=signal_name)

    def _start_http(self) -> None:
        """One persistent HTTP connection pool for every agent, tool and REST request:
        a reply's request reuses a warm TLS connection instead of opening one."""
        from treq.client import HTTPClient
        from twisted.web.client import Agent as WebAgent, HTTPConnectionPool

        pool = HTTPConnectionPool(self.clock, persistent=True)
        pool.maxPersistentPerHost = HTTP_CONNECTIONS_PER_HOST
        # The default HTTPS policy verifies certificates and host names (service-identity).
        self.http = HTTPClient(WebAgent(self.clock, pool=pool))
        self._closers.append(pool.closeCachedConnections)
        note_construction("http_pool")
        self.call_controls = {name: make(self.http, self.clock) for name, make in self.control_factories.items()}

    def _pool(self, name: str, size: int) -> ThreadPool:
        pool = ThreadPool(minthreads=0, maxthreads=size, name=name)
        pool.start()
        self._pools.append(pool)
        return pool

    def stopService(self) -> Deferred[None]:
        self.stopping = True
        self.ready = False
        self._signals.uninstall()
        if self.speaker is not None:
            self.speaker.stop_recovery()
        log.info("APP_STOP active_calls={active_calls}", active_calls=len(self.calls))
        if self._switch_interval_before is not None:
            sys.setswitchinterval(self._switch_interval_before)
        if self._lag is not None:
            self._lag.stop()
        stopped = super().stopService()  # stop listening first
        if self._warming is not None:
            self._warming.cancel()
        if self.outbox is not None:
            self.outbox.stop()
        self._stop_outbound()
        # Each call's socket gets a proper close (1000); the engines go only once the
        # closes are out, or after a bound if a peer does not answer.
        drained: Deferred[None] = Deferred()
        self._drained = drained
        for call in list(self.calls):
            call.transport.hang_up()
            call.close(reason="service stopping")
        if not self.calls:
            drained.callback(None)
        drained.addTimeout(CLOSE_WAIT_S, self.clock, onTimeoutCancel=lambda *_: None)
        # The calls just closed are committed before the journal closes.
        return (gatherResults([stopped, drained]).addBoth(self._close_journal).addBoth(self._close_recordings)
                .addBoth(self._release))

    def _release(self, _: object) -> None:
        self.calls.clear()
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                log.failure("Error releasing a process-wide resource")
        for pool in self._pools:
            pool.stop()
        self._pools.clear()
        if self._call_counts is not None:
            self._call_counts.close()
            self._call_counts = None
        if self._log_observer is not None:
            self.clock.addSystemEventTrigger("after", "shutdown", self._log_observer.stop)

    def _speech_loop_round_trip(self, done: Any) -> bool:
        loop = self._google.speech_loop if self._google is not None else None
        if loop is None or not loop.running:
            return False
        loop.call_soon(self.clock.callFromThread, done)
        return True

    # ---- calls ---------------------------------------------------------------------------------
    def _active_calls(self) -> int:
        """The daemon's calls in progress: this process's, and under --workers the others' too."""
        others = self._call_counts.others(self.worker.index) if self._call_counts and self.worker else 0
        return len(self.calls) + others

    def _calls_changed(self) -> None:
        self.metrics.calls_active.set(len(self.calls))
        if self._call_counts is not None and self.worker is not None:
            self._call_counts.publish(self.worker.index, len(self.calls))

    def admit(self) -> None:
        """Called for every carrier's new stream, before any call state exists: raises
        ``Refused`` while not ready or at max_calls."""
        if not self.ready:
            raise Refused(503, "voiced is draining" if self.drain.draining else "voiced is not ready")
        limit = self.settings.call_limit
        active = self._active_calls()
        if active >= limit:
            # Refused is recoverable (the carrier's fallback URL, another instance); a call
            # accepted beyond what the machine carries would be late or deaf.
            self.metrics.calls_refused_total.inc()
            if not self._refusing:
                log.warn("CALLS_FULL active_calls={active} max_calls={limit}: refusing new calls with 503",
                         active=active, limit=limit)
            self._refusing = True
            raise Refused(503, "voiced is at max_calls")
        if self._refusing:
            self._refusing = False
            log.info("CALLS_ACCEPTED active_calls={active}: accepting calls again", active=active)

    def new_call(self, start: CallStart, transport: CallTransport, playout: str = "carrier") -> Call:
        # No STT engine when the agent hears the caller itself (VOICED_AGENT=realtime: the call's ModelEar).
        assert self.speaker is not None and self.agent is not None
        kit = self.kit_for(start)  # the call's profile (--profiles), else the daemon's own engines
        info = CallInfo(
            call_id=start.call_id,
            stream_id=start.stream_id,
            from_number=start.from_number,
            to_number=start.to_number,
            custom_parameters=start.custom_parameters,
            language=kit.settings.language,
            carrier=start.carrier,
            **call_direction(self.dialer, start),
        )
        s = self.settings
        eou = EndOfUtterance(self.clock, self.voice_activity, s.eou_silence_ms, s.min_speech_ms, info.call_id)
        call = Call(
            info, self.clock, transport, kit.stt, kit.speaker, kit.agent.start_conversation(info), eou,
            self.metrics, kit.turn_settings, self.call_controls.get(start.carrier), self.call_hub, playout,
            stt_audio=stt_input(start.audio, kit.stt.formats if kit.stt else ()), turns=self.turn_detection, amd=s.amd,
        )
        call.record.profile = kit.name  # before call.start() tells the journal and the console
        if self.worker is not None:
            self.worker.call_started(info.call_id)  # CALL_WORKER: which worker process carries it
        self.calls.add(call)
        self.metrics.calls_total.inc()
        self._calls_changed()
        return call

    def call_by_id(self, call_id: str) -> Call | None:
        """The live call whose carrier call id is ``call_id`` (Twilio's CallSid), if this process carries it."""
        for call in self.calls:
            if call.call_id == call_id:
                return call
        return None

    def call_ended(self, call: Call) -> None:
        self.calls.discard(call)
        self._calls_changed()
        self.drain.call_ended()
        if self.stopping and not self.calls and self._drained is not None and not self._drained.called:
            self._drained.callback(None)
