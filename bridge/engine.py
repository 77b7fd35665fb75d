"""The engine: input queue → control thread → generation worker → scheduler → MIDI/OSC out.

The MIDI callback (``bridge.midi_in``) puts ``(t, message)`` into :attr:`Engine.input_queue`; the
control thread drains it: MIDI clock and transport go to the :class:`~bridge.clock.TempoTracker`,
the trigger CC / note and CC bindings act on the settings, everything else goes to the
:class:`~bridge.phrase.PhraseCapture` (and straight out when ``passthrough`` is on).  It decides
when to answer — after ``silence_beats`` of silence (mode ``call``), on :meth:`Engine.trigger`
or the trigger CC/note (``call`` and ``trigger``), never (``listen``) — and interrupts a playing
answer as soon as the musician plays.  An answer is an :class:`~bridge.generate.AnswerJob` for
the generation worker, which streams notes into the :class:`~bridge.schedule.Scheduler`.

:class:`Engine` also implements ``bridge.protocols.Controller``, the protocol the OSC thread
calls.  One log line per answer: call events, answer events, milliseconds from the phrase
end to the first note out.

A key whose note-off never arrives (lost on the wire, a port unplugged mid-note) would hold the
phrase open for ever: once every key still down was pressed at least ``stuck_hold_s`` ago and the
input has been silent for the phrase-ending silence, the engine takes them as released, counts
them (``stuck_input_notes``) and logs it.

Cancelling answers — an interrupt, ``/antiphon/stop``, panic, a model swap — is one mechanism,
keyed by answer id.  The engine numbers answers in increasing order; to cancel everything so far
it takes ``before`` = the next id it will give and (1) cancels the generation worker
(:meth:`~bridge.generate.AnswerGenerator.cancel`: the waiting job is dropped, the running one's
id joins the worker's cancelled set, so it stops at its next token and reports ``cancelled``);
(2) calls :meth:`~bridge.schedule.Scheduler.cancel_all` with ``before``: open answers end their
sounding notes and drop what is queued, and the scheduler's floor rises to ``before``, so an
answer with an older id still being generated can never open afterwards.  The next answer's id
is ``before`` or higher: nothing of it is touched.  The worker cancels its own answer alone
(:meth:`~bridge.schedule.Scheduler.cancel_answer`) when generation fails.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Full, Queue
from typing import Any, cast

import mido

from bridge.clock import Clock, TempoTracker, resolve_start
from bridge.config import Settings, SettingsBox, cc_to_value
from bridge.errors import ConfigError, ModelError
from bridge.follow import AUTO, Follower
from bridge.generate import (
    MAX_CALL_EVENTS,
    AnswerGenerator,
    AnswerJob,
    AnswerReport,
    SamplingParams,
    answer_rng,
)
from bridge.midi_out import MidiSink
from bridge.model import LstmModel, load_model, resolve_model
from bridge.phrase import PhraseCapture, quantize_call
from bridge.protocols import AnswerEvents
from bridge.sampling import mask_table
from bridge.schedule import Playback, Scheduler, Wait, condition_wait
from bridge.tokens import Note
from bridge.worker import Worker

__all__ = ["Engine"]

log = logging.getLogger(__name__)


HEARD_RETRY_S = 0.001
"""How soon the control thread looks again when a phrase's silence is over in the clock but the
MIDI input has not delivered everything played up to then."""

STUCK_HOLD_S = 10.0
"""Keys down this long are taken as released after a silence (their note-off was lost)."""


class _Marker:
    """An input-queue entry that is not MIDI: wakes the control thread (re-check commands and
    deadlines)."""


_WAKE = _Marker()


class _Flush(_Marker):
    """Queue marker: set once everything queued before it has been handled."""

    def __init__(self) -> None:
        self.done = threading.Event()


@dataclass
class _Record:
    """One answer's bookkeeping until its log line is written."""

    phrase_end: float
    model: str = ""  # the model that answers and the key it answers in, for the log line
    key: str | None = None
    report: AnswerReport | None = None
    playback: Playback | None = None


class Engine:
    """Runs the bridge's threads around one model; see the module docstring.

    ``clock`` and ``wait`` are injected (tests use a fake clock); ``model_dirs`` are the only
    places :meth:`swap_model` may load from; ``stuck_hold_s`` is how long a key may stay down
    before a silence counts as the phrase's end anyway (see the module docstring);
    ``output_lookahead_s`` is how early the scheduler hands notes to a sink that places them at
    their due time (the native JACK backend's; see :class:`~bridge.schedule.Scheduler`);
    ``output_earliest(t)`` the earliest time a note handed over at ``t`` lands on exactly (where
    an answer that starts "now" is anchored; see :class:`~bridge.generate.AnswerGenerator`).
    """

    def __init__(
        self,
        model: LstmModel,
        settings: SettingsBox,
        sink: MidiSink,
        events: AnswerEvents,
        *,
        clock: Clock = time.monotonic,
        wait: Wait = condition_wait,
        model_dirs: Iterable[str | Path] = (),
        input_queue_size: int = 4096,
        lookahead_beats: float = 4.0,
        stuck_hold_s: float = STUCK_HOLD_S,
        output_lookahead_s: float = 0.0,
        output_earliest: Callable[[float], float] | None = None,
        heard_until: Clock | None = None,
        follower: Follower | None = None,
        auto: bool = False,
    ) -> None:
        if not (math.isfinite(stuck_hold_s) and stuck_hold_s > 0):
            raise ValueError(f"stuck_hold_s must be > 0, got {stuck_hold_s}")
        self.stuck_hold_s = float(stuck_hold_s)
        self._model = model
        mask_table(model.scheme)  # built now, not in the first answer
        # Following the call (bridge.follow): None = the one model, no key or register bias.
        self._follower = follower
        self._auto = auto and follower is not None  # model "auto": chosen per answer
        self._settled = 0  # settled notes of the call last handed over for priming
        if follower is not None:
            for chosen in follower.models:
                mask_table(chosen.scheme)
        self.heard_key: str | None = None  # the key of the last call (status)
        self.answer_model: str | None = None  # the model of the last answer (status)
        self._settings = settings
        self._clock = clock
        # Every message played before heard_until() is in the input queue (the MIDI input's
        # watermark; without one, everything played so far is taken as delivered).
        self._heard_until = heard_until or clock
        self.model_dirs = [Path(d) for d in model_dirs]
        first = settings.get()
        self.tempo = TempoTracker(first.bpm, clock, first.beats_per_bar)
        self.scheduler = Scheduler(
            sink,
            self.tempo,
            events,
            clock,
            wait=wait,
            on_answer_end=self._on_played,
            lookahead_s=output_lookahead_s,
        )
        self.generator = AnswerGenerator(
            self.scheduler,
            self.tempo,
            clock=clock,
            wait=wait,
            lookahead_beats=lookahead_beats,
            on_report=self._on_generated,
            earliest=output_earliest,
        )
        self.capture = PhraseCapture(first.chord_window_ms / 1000.0, first.in_channel)
        # The control thread reads MIDI messages and markers; the inputs (MIDI, audio) put MIDI
        # messages only, so they get the same queue typed as theirs.
        self._inbox: Queue[tuple[float, mido.Message | _Marker]] = Queue(input_queue_size)
        self.input_queue = cast("Queue[tuple[float, mido.Message]]", self._inbox)
        self._applied = first
        self._commands: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()  # model, answer ids, records
        self._ids = itertools.count(1)
        self._next_id = 1
        self._answers_started = 0
        self._records: dict[int, _Record] = {}
        self._last_call: tuple[Note, ...] = ()
        self.worker = Worker("antiphon-control", self._run, wake=self.wake)
        self._started = False
        # Counted by the input callback (dropped), the control thread, the generation worker and
        # OSC/supervisor threads (interrupts): every update and the copy in stats() hold
        # _counts_lock, for one addition only (Queue.put_nowait in feed takes a lock as short).
        self._counts_lock = threading.Lock()
        self.counters = {
            "messages": 0,
            "dropped": 0,
            "bad_messages": 0,
            "answers": 0,
            "interrupts": 0,
            "generation_errors": 0,
            "triggers_ignored": 0,
            "cc_changes": 0,
            "stuck_input_notes": 0,
            "transport_stops": 0,
        }
        self._status_sources: list[Callable[[], Mapping[str, object]]] = []
        self.last_latency_ms: float | None = None

    # ----- lifecycle (main thread) ----------------------------------------------------------------
    def start(self) -> None:
        """Start the scheduler, the generation worker and the control thread."""
        if self._started:
            return
        self._started = True
        self.scheduler.start()
        self.generator.start()
        self.worker.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every thread (joined) and send the note-off of everything still sounding."""
        self.worker.stop(timeout)  # the control thread first: it submits to the other two
        self.generator.stop(timeout)
        self.scheduler.stop(timeout)

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def feed(self, msg: mido.Message, t: float | None = None) -> bool:
        """Queue one input message (any thread, never blocks); False and counted if full."""
        try:
            self.input_queue.put_nowait((self._clock() if t is None else t, msg))
            return True
        except Full:
            self._count("dropped")
            return False

    def wake(self) -> None:
        """Make the control thread re-check deadlines and commands now (any thread)."""
        with contextlib.suppress(Full):  # a full queue wakes it anyway
            self._inbox.put_nowait((math.nan, _WAKE))
        self.scheduler.wake()
        self.generator.wake()

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until the control thread has handled everything queued so far, including the
        phrase-end check that follows (tests step a fake clock with it).  False on timeout."""
        marker = _Flush()
        try:
            self._inbox.put((math.nan, marker), timeout=timeout)
        except Full:
            return False
        return marker.done.wait(timeout)

    @property
    def model(self) -> LstmModel:
        return self._model

    # ----- Controller (OSC thread, control thread) ------------------------------------------------
    def update_settings(self, **changes: Any) -> Settings:
        """Validate and apply ``changes`` (ConfigError: nothing changes)."""
        old = self._settings.get()
        new = self._settings.update(**changes)
        if new.bpm != old.bpm:
            self.tempo.set_bpm(new.bpm)
        if new.beats_per_bar != old.beats_per_bar:
            self.tempo.set_beats_per_bar(new.beats_per_bar)
        self.wake()
        return new

    def trigger(self) -> None:
        """Answer now (the phrase so far, or the last one again); ignored in ``listen`` mode."""
        t = self._clock()
        self._post(lambda: self._trigger(t))

    def stop_answer(self) -> None:
        """Silence the answer that plays and stop generating it."""
        self._interrupt()

    def panic(self) -> None:
        """Stop the answer, end every note, All Notes Off on all channels."""
        with self._lock:
            before = self._next_id
        self.generator.cancel()
        self.scheduler.panic(before=before)

    def swap_model(self, name: str) -> str:
        """Load model ``name`` from the model directories and use it from the next answer on.

        The answer that plays is stopped (its notes get note-offs).  ModelError if the name is not
        allowed, not found or not a valid model; the old model then stays.  ``auto``: choose per
        answer from the call (needs a follower).
        """
        if name == AUTO:
            if self._follower is None:
                raise ModelError("model auto needs the shipped models (start without --model)")
            with self._lock:
                self._auto = True
            self._interrupt()
            log.info("model: auto")
            return AUTO
        model = load_model(resolve_model(name, self.model_dirs))
        mask_table(model.scheme)
        with self._lock:
            self._model = model
            self._auto = False
        self._interrupt()
        log.info("model swapped to %s", model.name)
        return model.name

    def status(self) -> dict[str, object]:
        """Every setting plus the live state (tempo, clock, model, answering, counters) and what
        each :meth:`add_status` source reports (ports, MIDI in/out counters)."""
        data: dict[str, object] = dict(self._settings.get().to_dict())
        data.update(self.stats())
        for source in list(self._status_sources):
            try:
                data.update(source())
            except Exception:  # a status source must not break /antiphon/status
                log.exception("status source failed")
        return data

    def add_status(self, source: Callable[[], Mapping[str, object]]) -> None:
        """Merge ``source()`` into every :meth:`status` (main thread, before OSC starts)."""
        self._status_sources.append(source)

    def ports_lost(self) -> None:
        """The MIDI ports died (JACK server gone; the supervisor thread calls this): end the
        answer and reset the note bookkeeping — the note-offs go nowhere, the sink is already
        offline — and forget held keys."""
        self.panic()
        self.reset_input()

    def reset_input(self) -> None:
        """Forget the phrase being played, held keys and pedals (any thread): the input port was
        lost, so their note-offs will never come.  Runs on the control thread."""
        self._post(self.capture.reset)

    def stats(self) -> dict[str, object]:
        """Counters and live state (any thread)."""
        return {
            "model": AUTO if self._auto else self._model.name,
            "answer_model": self.answer_model,
            "heard_key": self.heard_key,
            "tempo_bpm": round(self.tempo.bpm, 2),
            "beat": round(self.tempo.beat_at(self._clock()), 3),
            "clock_running": self.tempo.clock_running,
            "clock_ticks_lost": self.tempo.ticks_lost,
            "clock_timeline_shifts": self.tempo.timeline_shifts,
            "answering": bool(self.scheduler.active_answers) or self.generator.busy,
            "sounding": len(self.scheduler.sounding()),
            "last_latency_ms": (
                None if self.last_latency_ms is None else round(self.last_latency_ms, 2)
            ),
            "queue": self.input_queue.qsize(),
            "late_notes": self.scheduler.late_notes,
            **self._counts(),
        }

    def _count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (any thread)."""
        with self._counts_lock:
            self.counters[name] += n

    def _counts(self) -> dict[str, int]:
        """A consistent copy of the counters (any thread)."""
        with self._counts_lock:
            return dict(self.counters)

    # ----- control thread -------------------------------------------------------------------------
    def _post(self, command: Callable[[], None]) -> None:
        self._commands.append(command)
        self.wake()

    def _run(self) -> None:
        while not self.worker.stopping.is_set():
            try:
                t, msg = self._inbox.get(timeout=self._timeout())
            except Empty:
                msg = None
            try:
                while self._commands:
                    self._commands.popleft()()
                if isinstance(msg, _Flush):
                    try:
                        self._check_phrase_end()
                    finally:
                        msg.done.set()
                elif msg is not None and not isinstance(msg, _Marker):
                    try:
                        self._handle(msg, t)
                    finally:
                        self._count("messages")
                if self.input_queue.empty():  # judge silence only once the input is drained
                    self._check_phrase_end()
            except Exception:  # one bad message or command must not stop the bridge
                self._count("bad_messages")
                log.exception("control thread: could not handle %s", msg)

    def _silence_s(self, settings: Settings) -> float:
        return settings.silence_beats * self.tempo.seconds_per_beat()

    def _timeout(self) -> float | None:
        """Seconds until the phrase could end (None: nothing to wait for but input)."""
        settings = self._settings.get()
        capture = self.capture
        if not capture.has_notes or capture.last_activity is None:
            return None
        if capture.is_playing:
            deadline = self._stuck_deadline(settings)
        elif settings.mode == "trigger":
            return None
        else:
            deadline = capture.last_activity + self._silence_s(settings)
            if self._heard() >= deadline:
                return 0.0
            # the silence is over but the input has not been drained that far yet: look again
            return max(HEARD_RETRY_S, deadline - self._clock())
        return None if deadline is None else max(0.0, deadline - self._clock())

    def _heard(self) -> float:
        """Up to when the input has been heard: the phrase end is judged on when notes were
        played, not on when a late JACK cycle or a busy drain thread delivered them."""
        return min(self._clock(), self._heard_until())

    def _stuck_deadline(self, settings: Settings) -> float | None:
        """When the keys still down count as stuck: each pressed ``stuck_hold_s`` ago, and the
        phrase-ending silence since the last input (None: no key is down)."""
        newest = self.capture.held_since()
        last = self.capture.last_activity
        if newest is None or last is None:
            return None
        return max(newest + self.stuck_hold_s, last + self._silence_s(settings))

    def _refresh(self, settings: Settings) -> None:
        if settings is not self._applied:
            self.capture.configure(settings.chord_window_ms / 1000.0, settings.in_channel)
            self._applied = settings

    def _handle(self, msg: mido.Message, t: float) -> None:
        if self.tempo.on_message(msg, t):
            if msg.type == "stop" and (self.generator.busy or self.scheduler.active_answers):
                # The DAW's transport stopped: the answer stops with it (note-offs sent), as a
                # track does; the call being played, if any, is kept.
                log.info("MIDI Stop: answer ended")
                self._interrupt()
                self._count("transport_stops")
            return
        settings = self._settings.get()
        self._refresh(settings)
        if not self.capture.accepts(msg):
            return
        if self._control(msg, t, settings):
            return
        if (
            settings.mode != "call"
            and msg.type == "note_on"
            and msg.velocity > 0
            and self.capture.ended(t, self._silence_s(settings))
        ):
            self.capture.clear()  # a new phrase after a silence replaces the old one
        played = self.capture.feed(msg, t)
        if played:
            self._interrupt()
        if settings.mode != "listen":
            self._prime_settled()
        if settings.passthrough and hasattr(msg, "channel"):
            self.scheduler.passthrough(msg)

    def _control(self, msg: mido.Message, t: float, settings: Settings) -> bool:
        """Trigger note / CC and CC bindings; True if ``msg`` was consumed."""
        if (
            settings.trigger_note is not None
            and msg.type in ("note_on", "note_off")
            and msg.note == settings.trigger_note
        ):
            if msg.type == "note_on" and msg.velocity > 0:
                self._trigger(t)
            return True
        if msg.type != "control_change":
            return False
        if settings.trigger_cc is not None and msg.control == settings.trigger_cc:
            if msg.value >= 64:
                self._trigger(t)
            return True
        target = settings.cc_targets().get(msg.control)
        if target is None:
            return False
        try:
            self.update_settings(**{target: cc_to_value(target, msg.value)})
            self._count("cc_changes")
        except ConfigError as exc:
            self._count("bad_messages")
            log.warning("CC %d → %s refused: %s", msg.control, target, exc)
        return True

    def _prime_settled(self) -> None:
        """Hand the settled part of the call being played to the generation worker, to prime
        the model the answer will likely use while the musician is still playing."""
        settled = self.capture.settled()
        if len(settled) == self._settled:
            return
        self._settled = len(settled)
        if not settled or len({n.onset_s for n in settled}) > MAX_CALL_EVENTS:
            return  # beyond the model's window every new event slides it: nothing to reuse
        with self._lock:
            model, auto = self._model, self._auto
        call = quantize_call(settled, model.scheme, self.tempo)
        if auto and self._follower is not None:
            model = self._follower.choose(call)[0]
        self.generator.prime(model, call)

    def _check_phrase_end(self) -> None:
        settings = self._settings.get()
        now = self._clock()
        silence = self._silence_s(settings)
        stuck_at = self._stuck_deadline(settings) if self.capture.is_playing else None
        if stuck_at is not None and now >= stuck_at:
            released = self.capture.release_held(now)
            self._count("stuck_input_notes", released)
            log.warning(
                "%d key(s) down for over %.0f s without a note-off: taking them as released",
                released,
                self.stuck_hold_s,
            )
        else:
            stuck_at = None
        if settings.mode == "trigger" or not self.capture.ended(self._heard(), silence):
            return
        assert self.capture.last_activity is not None
        phrase_end = self.capture.last_activity + silence if stuck_at is None else stuck_at
        notes = self.capture.take(now)
        if settings.mode == "listen":
            return
        self._answer(quantize_call(notes, self._model.scheme, self.tempo), phrase_end)

    def _trigger(self, t: float) -> None:
        if self._settings.get().mode == "listen":
            self._count("triggers_ignored")
            log.info("trigger ignored: mode is listen")
            return
        call = list(self._last_call)
        if self.capture.has_notes:
            call = quantize_call(self.capture.take(t), self._model.scheme, self.tempo)
        self._answer(call, t)

    def _answer(self, call: list[Note], phrase_end: float) -> None:
        settings = self._settings.get()
        self._interrupt()
        with self._lock:
            answer_id = next(self._ids)
            self._next_id = answer_id + 1
            number = self._answers_started
            self._answers_started += 1
            record = self._records[answer_id] = _Record(phrase_end)
            model = self._model
            auto = self._auto
        bias = None
        if self._follower is not None:
            plan = self._follower.plan(
                call, None if auto else model, settings.key, settings.key_lock
            )
            model, bias = plan.model, plan.bias
            self.heard_key = None if plan.key is None else str(plan.key)
            record.key = self.heard_key
        self.answer_model = record.model = model.name
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "answer %d: call (onset/pitch/duration/velocity in grid steps) %s",
                answer_id,
                " ".join(f"{n.onset}/{n.pitch}/{n.duration}/{n.velocity}" for n in call),
            )
        self._last_call = tuple(call)
        self._count("answers")
        self.generator.submit(
            AnswerJob(
                answer_id=answer_id,
                model=model,
                call=tuple(call),
                length=settings.length,
                length_unit=settings.length_unit,
                beats_per_bar=settings.beats_per_bar,
                params=SamplingParams(settings.temperature, settings.top_k, settings.top_p),
                rng=answer_rng(settings.seed, number),
                start=resolve_start(settings.start, self.tempo),
                channel=settings.out_channel,
                bias=bias,
            )
        )

    def _interrupt(self) -> None:
        """Stop every answer being generated or played (any thread)."""
        with self._lock:
            before = self._next_id
        busy = self.generator.busy or bool(self.scheduler.active_answers)
        self.generator.cancel()
        self.scheduler.cancel_all(before=before)
        if busy:
            self._count("interrupts")

    # ----- reports (generation worker, scheduler thread) ------------------------------------------
    def _on_generated(self, report: AnswerReport) -> None:
        if report.error is not None:
            self._count("generation_errors")
        with self._lock:
            record = self._records.get(report.answer_id)
            if record is None:
                return
            record.report = report
        self._maybe_log(report.answer_id)

    def _on_played(self, playback: Playback) -> None:
        with self._lock:
            record = self._records.get(playback.answer_id)
            if record is None:
                return
            record.playback = playback
            if playback.first_note_at is not None:
                self.last_latency_ms = (playback.first_note_at - record.phrase_end) * 1e3
        self._maybe_log(playback.answer_id)

    def _maybe_log(self, answer_id: int) -> None:
        with self._lock:
            record = self._records.get(answer_id)
            if record is None or record.report is None:
                return
            report, playback = record.report, record.playback
            if playback is None and report.notes > 0 and report.error is None:
                return  # still playing; the scheduler reports when it ends
            del self._records[answer_id]
        latency = "no note out"
        if playback is not None and playback.first_note_at is not None:
            latency = f"{(playback.first_note_at - record.phrase_end) * 1e3:.1f} ms"
        how = ""
        if report.error is not None:
            how = f", failed: {report.error}"
        elif report.cancelled or (playback is not None and playback.cancelled):
            how = ", interrupted"
        log.info(
            "answer %d: call %d events, answer %d events (%d notes) by %s%s, phrase end → first "
            "note %s (prime %.1f ms, %d of %d events primed while playing, compute %.1f ms)%s",
            answer_id,
            report.call_events,
            report.answer_events,
            report.notes,
            record.model,
            "" if record.key is None else f" in {record.key}",
            latency,
            report.prime_ms,
            report.primed_events,
            report.call_events,
            report.generate_ms,
            how,
        )
