"""Continue a phrase: prime the LSTM with the call once, then sample one event at a time.

:class:`EventStream` is the core (any thread, one user at a time): the call's tokens go through the
model in ONE run, then each token is sampled under the grammar mask and fed back, and
:class:`~bridge.tokens.Decoder` turns tokens into events.  :func:`answer_events` cuts the stream
to a length in events, beats or bars.  :func:`continue_notes` runs it synchronously (offline
``antiphon continue``); :class:`AnswerGenerator` runs it on the generation worker thread and hands
notes to the :class:`~bridge.schedule.Scheduler` as soon as they exist, staying at most
``lookahead_beats`` ahead of the playhead, cancellable per answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from bridge.clock import Clock, TempoTracker
from bridge.config import LENGTH_UNITS
from bridge.model import LstmModel
from bridge.prime import PrimedStates
from bridge.sampling import check_sampling, mask_table, sample
from bridge.schedule import PlannedNote, Scheduler, Wait, condition_wait
from bridge.tokens import Event, Note, TokenScheme, close_gaps
from bridge.worker import Worker

__all__ = [
    "FLUSH_MARGIN_S",
    "LENGTH_UNITS",
    "MAX_CALL_EVENTS",
    "AnswerGenerator",
    "AnswerJob",
    "AnswerReport",
    "EventStream",
    "SamplingParams",
    "answer_events",
    "answer_rng",
    "call_chunks",
    "call_tokens",
    "continue_notes",
]

log = logging.getLogger(__name__)

MAX_CALL_EVENTS = 64
"""A longer phrase primes with its last 64 events."""

FLUSH_MARGIN_S = 0.05
"""Generated notes due sooner than this go to the scheduler at once, not with the next batch."""


@dataclass(frozen=True)
class SamplingParams:
    """Temperature > 0, top_k ≥ 0 (0 = off), top_p in (0, 1]; checked when built."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        check_sampling(self.temperature, self.top_k, self.top_p)


def answer_rng(seed: int | None, answer_number: int = 0) -> np.random.Generator:
    """The sampling rng: fresh entropy without a seed; with one, a pure function of
    ``(seed, answer_number)`` so a session replays exactly and successive answers differ."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, answer_number])


def call_chunks(
    scheme: TokenScheme,
    call: Sequence[Note],
    max_events: int = MAX_CALL_EVENTS,
    *,
    first: bool = False,
) -> tuple[list[tuple[int, ...]], int]:
    """The BOS and the tokens of each of the call's last ``max_events`` events (``first``: its
    first ones), one tuple each (how :class:`~bridge.prime.PrimedStates` runs them); also returns
    the event count.

    When the first events are dropped the first one kept starts the phrase (shift 0).  Silences
    longer than ``max_events`` full shifts are shortened to that first: the last ``max_events``
    events stay exactly the same, but a file with a 2^28-beat silence no longer becomes tens of
    millions of rest events (``antiphon continue`` took minutes on a 40-byte file).
    """
    # Gaps beyond ``max_events`` full shifts lose whole shifts: the shift of the note after the
    # gap and the ``max_events`` rests before it come out the same.
    events = scheme.events_from_notes(
        close_gaps(call, max_events * scheme.max_shift, quantum=scheme.max_shift)
    )
    if first:
        events = events[:max_events]
    elif len(events) > max_events:
        events = events[-max_events:]
        head = events[0]
        events[0] = Event(0, head.pitches, head.duration, head.velocity_bucket)
    chunks = [(scheme.bos,), *(tuple(scheme.event_tokens(event)) for event in events)]
    return chunks, len(events)


def call_tokens(
    scheme: TokenScheme, call: Sequence[Note], max_events: int = MAX_CALL_EVENTS
) -> tuple[list[int], int]:
    """BOS + the tokens of the call's last ``max_events`` events (:func:`call_chunks` in one
    list); also returns the event count."""
    chunks, events = call_chunks(scheme, call, max_events)
    return [token for chunk in chunks for token in chunk], events


class EventStream:
    """Primes ``model`` with the ``call`` and then yields sampled events one by one.

    ``primed`` keeps the states of calls primed before (the live path primes while the call is
    played); without it the call is primed from the start, event by event all the same.
    """

    def __init__(
        self,
        model: LstmModel,
        call: Sequence[Note],
        params: SamplingParams,
        rng: np.random.Generator,
        *,
        max_call_events: int = MAX_CALL_EVENTS,
        bias: np.ndarray | None = None,
        primed: PrimedStates | None = None,
    ) -> None:
        from bridge.tokens import Decoder

        if bias is not None and bias.shape != (model.vocab_size,):
            raise ValueError(f"bias has shape {bias.shape}, the vocabulary {model.vocab_size}")
        self.bias = bias  # added to every step's logits (key lock, register; bridge.follow)

        self.model = model
        self.scheme = model.scheme
        self.params = params
        self.rng = rng
        chunks, self.call_events = call_chunks(self.scheme, call, max_call_events)
        # The call ends on an event boundary, where the grammar state is the same as right after
        # BOS (a SHIFT comes next), so the decoder needs only that, not the whole call.
        self._decoder = Decoder(self.scheme)
        self._decoder.feed(self.scheme.bos)
        result = (primed if primed is not None else PrimedStates()).prime(model, chunks)
        self.prime_seconds = result.seconds
        self.primed_events = max(0, result.reused - 1)  # primed before: events, not the BOS
        self._logits, self._state = result.logits, result.state
        self.tokens_sampled = 0
        self.step_seconds = 0.0
        self._masks = mask_table(self.scheme)

    def next_event(self) -> Event:
        """Sample tokens until one event is complete (2 tokens for a rest, 4 for notes)."""
        while True:
            last = self._decoder.last
            token = sample(
                self._logits if self.bias is None else self._logits + self.bias,
                self._masks[last] if last is not None else self.scheme.allowed(None),
                temperature=self.params.temperature,
                top_k=self.params.top_k,
                top_p=self.params.top_p,
                rng=self.rng,
            )
            event = self._decoder.feed(token)
            started = time.perf_counter()
            logits, self._state = self.model.run([token], self._state)
            self.step_seconds += time.perf_counter() - started
            self._logits = logits[-1]
            self.tokens_sampled += 1
            if event is not None:
                return event


def answer_events(
    stream: EventStream, length: int, unit: str = "events", *, beats_per_bar: int = 4
) -> Iterator[tuple[int, Event]]:
    """``(position, event)`` for each note event of the answer, ``position`` in grid steps from
    the call's last onset.  Leading rests are skipped (their time still counts in ``position``).

    A pitch the model strikes again at the same onset is dropped (MIDI cannot sound one key
    twice at once).  ``events``: stops after ``length`` note events; ``beats`` / ``bars``: stops
    before the first event starting ``length`` beats / bars after the first note.  A model that
    only rests is cut off after a bounded number of events.
    """
    if unit not in LENGTH_UNITS:
        raise ValueError(f"length unit must be one of {LENGTH_UNITS}, got {unit!r}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be an int >= 1, got {length!r}")
    steps_per_beat = stream.scheme.steps_per_beat
    limit_steps = length * steps_per_beat * (beats_per_bar if unit == "bars" else 1)
    budget = 4 * length + 64 if unit == "events" else 4 * limit_steps + 64
    position, first, notes = 0, None, 0
    struck: set[int] = set()  # pitches already started at ``position``
    for _ in range(budget):
        event = stream.next_event()
        if event.shift:
            struck.clear()
        position += event.shift
        if event.is_rest:
            continue
        fresh = tuple(p for p in event.pitches if p not in struck)
        if not fresh:
            continue  # the same key struck twice at once is one note (the first one wins)
        if len(fresh) < len(event.pitches):
            event = replace(event, pitches=fresh)
        struck.update(fresh)
        if first is None:
            first = position
        if unit != "events" and position - first >= limit_steps:
            return
        yield position, event
        notes += 1
        if unit == "events" and notes >= length:
            return


def continue_notes(
    model: LstmModel,
    phrase: Sequence[Note],
    /,
    *,
    length: int = 32,
    length_unit: str = "events",
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    beats_per_bar: int = 4,
    bias: np.ndarray | None = None,
) -> list[Note]:
    """Continue ``phrase`` (the call's notes, positional) synchronously, for offline use.

    Returns grid notes whose onsets count from the phrase's last onset, so the first sits at the
    shift the model chose; add the phrase's last onset to place them after it.  ``seed=N`` makes
    the result reproducible; ``bias`` is added to the logits (see :mod:`bridge.follow`).
    """
    stream = EventStream(
        model, phrase, SamplingParams(temperature, top_k, top_p), answer_rng(seed), bias=bias
    )
    scheme = model.scheme
    notes: set[Note] = set()
    for position, event in answer_events(stream, length, length_unit, beats_per_bar=beats_per_bar):
        velocity = scheme.bucket_velocity(event.velocity_bucket)
        for pitch in event.pitches:
            notes.add(Note(position, pitch, event.duration, velocity))
    return sorted(notes)


# ----- the generation worker ---------------------------------------------------------------------
@dataclass(frozen=True)
class AnswerJob:
    """Everything one live answer needs, snapshotted when the engine asks for it."""

    answer_id: int
    model: LstmModel
    call: tuple[Note, ...]
    length: int = 32
    length_unit: str = "events"
    beats_per_bar: int = 4
    params: SamplingParams = SamplingParams()
    rng: np.random.Generator = field(default_factory=np.random.default_rng, compare=False)
    start: str = "now"  # now | beat | bar (resolved, not "auto")
    channel: int = 1  # 1..16
    bias: np.ndarray | None = field(default=None, compare=False)  # logit bias (bridge.follow)


@dataclass
class AnswerReport:
    """How generating one answer went (given to ``on_report`` by the worker thread)."""

    answer_id: int
    call_events: int = 0
    answer_events: int = 0
    notes: int = 0
    prime_ms: float = 0.0  # priming at the phrase end (what was not primed while playing)
    primed_events: int = 0  # events of the call primed while it was played
    generate_ms: float = 0.0  # priming + sampling + inference, without the lookahead waits
    cancelled: bool = False
    error: str | None = None


class AnswerGenerator:
    """The generation worker thread: runs one :class:`AnswerJob` at a time into the scheduler.

    ``submit`` replaces (cancels) the job in progress; ``cancel`` stops it (how cancelling works
    across the engine, this worker and the scheduler: :mod:`bridge.engine`).  ``prime`` asks the
    idle worker to run the settled part of a call still being played through the model
    (:mod:`bridge.prime`), so the answer starts from there.  The first note is
    anchored on the next ``job.start`` boundary after ``earliest(now)`` once its onset is
    complete (``earliest``: the output's first exact time, e.g. the native JACK backend's next
    period; by default now), so it is on time like the rest; later notes are generated while
    they are at most ``lookahead_beats`` ahead of the playhead.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        tempo: TempoTracker,
        *,
        clock: Clock = time.monotonic,
        wait: Wait = condition_wait,
        lookahead_beats: float = 4.0,
        on_report: Callable[[AnswerReport], None] | None = None,
        earliest: Callable[[float], float] | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._earliest = earliest
        self._tempo = tempo
        self._clock = clock
        self._wait = wait
        self.lookahead_beats = lookahead_beats
        self.playhead_waits = 0  # wake-ups while waiting for the playhead (tests step by it)
        self._on_report = on_report
        self._cond = threading.Condition()
        self._pending: AnswerJob | None = None
        self._prime: tuple[LstmModel, tuple[Note, ...]] | None = None
        self.primed = PrimedStates()
        self.primes = 0  # prime requests run
        self._priming = False
        self._current: AnswerJob | None = None
        self._cancelled: set[int] = set()
        self._waiting = False
        self._waited = 0.0  # seconds the current job slept for the playhead
        self.worker = Worker("antiphon-generate", self._run, wake=self._wake_to_stop)
        self.errors = 0

    def start(self) -> None:
        """Start the worker thread (main thread; idempotent)."""
        self.worker.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Drop the waiting job, cancel the current one, join the worker (idempotent)."""
        self.worker.stop(timeout)

    def _wake_to_stop(self) -> None:
        with self._cond:
            self._pending = None
            if self._current is not None:
                self._cancelled.add(self._current.answer_id)
            self._cond.notify_all()

    def submit(self, job: AnswerJob) -> None:
        """Generate ``job`` next, cancelling whatever is in progress or waiting."""
        with self._cond:
            self._cancel_locked()
            self._pending = job
            self._prime = None  # the call is complete: the job primes what is left
            self._cond.notify_all()

    def prime(self, model: LstmModel, call: Sequence[Note]) -> None:
        """Prime ``model`` with ``call`` (quantized, the settled part of the call being played)
        when the worker has nothing else to do; a newer request replaces a waiting one.  The
        engine's control thread; never blocks on the model."""
        with self._cond:
            self._prime = (model, tuple(call))
            self._cond.notify_all()

    def cancel(self) -> None:
        """Stop generating the current answer and forget the waiting one."""
        with self._cond:
            self._cancel_locked()
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        """An answer is waiting or being generated."""
        with self._cond:
            return self._pending is not None or self._current is not None

    @property
    def priming(self) -> bool:
        """A prime request is waiting or running (tests wait for it)."""
        with self._cond:
            return self._prime is not None or self._priming

    @property
    def waiting(self) -> bool:
        """The current answer is far enough ahead of the playhead: the worker sleeps."""
        with self._cond:
            return self._waiting and self._pending is None

    def _cancel_locked(self) -> None:
        if self._pending is not None:
            self._cancelled.add(self._pending.answer_id)
            self._pending = None
        if self._current is not None:
            self._cancelled.add(self._current.answer_id)

    def _is_cancelled(self, job: AnswerJob) -> bool:
        return self.worker.stopping.is_set() or job.answer_id in self._cancelled

    def _run(self) -> None:
        while True:
            with self._cond:
                while (
                    self._pending is None
                    and self._prime is None
                    and not self.worker.stopping.is_set()
                ):
                    self._wait(self._cond, None)
                if self.worker.stopping.is_set():
                    return
                job, request = self._pending, None
                if job is None:
                    request, self._prime = self._prime, None
                    self._priming = True
                else:
                    self._pending, self._current = None, job
            if job is None:
                assert request is not None
                self._run_prime(*request)
                continue
            report = AnswerReport(job.answer_id)
            try:
                self._generate(job, report)
            except Exception as exc:  # a model failure must not kill the worker
                self.errors += 1
                report.error = f"{type(exc).__name__}: {exc}"
                log.exception("answer %d: generation failed", job.answer_id)
                self._scheduler.cancel_answer(job.answer_id)
            finally:
                with self._cond:
                    report.cancelled = report.cancelled or job.answer_id in self._cancelled
                    self._cancelled.discard(job.answer_id)
                    self._current = None
            if self._on_report is not None:
                try:
                    self._on_report(report)
                except Exception:
                    log.exception("on_report failed")

    def _run_prime(self, model: LstmModel, call: tuple[Note, ...]) -> None:
        try:
            chunks, _ = call_chunks(model.scheme, call)
            self.primed.prime(model, chunks)
        except Exception as exc:  # the answer will prime from scratch (and say what fails)
            log.debug("priming while the call is played failed: %s", exc)
        with self._cond:
            self.primes += 1
            self._priming = False
            self._cond.notify_all()

    def _generate(self, job: AnswerJob, report: AnswerReport) -> None:
        """Stream one answer into the scheduler.  Notes go over in batches of whole onsets (a
        chord's notes leave together, in one JACK period): the first onset as soon as it is
        complete (the next event starts later), then whatever was generated before the worker
        sleeps for the playhead, or sooner if the batch's first note is due within
        :data:`FLUSH_MARGIN_S`."""
        started = time.perf_counter()
        self._waited = 0.0
        stream = EventStream(
            job.model, job.call, job.params, job.rng, bias=job.bias, primed=self.primed
        )
        report.primed_events = stream.primed_events
        report.call_events = stream.call_events
        report.prime_ms = stream.prime_seconds * 1e3
        scheme = job.model.scheme
        steps_per_beat = scheme.steps_per_beat
        first: int | None = None
        onset: int | None = None  # the position of the onset the batch ends with
        flushed = False
        opened = False
        batch: list[PlannedNote] = []

        def flush() -> bool:
            nonlocal flushed, opened
            if batch and not opened:  # the first onset is complete: anchor the answer now
                now = self._clock()
                if self._earliest is not None:
                    now = self._earliest(now)
                when = self._tempo.next_boundary(now, job.start)
                if not self._scheduler.open_answer(
                    job.answer_id, self._tempo.beat_at(when), job.channel
                ):
                    report.cancelled = True
                    batch.clear()
                    return False
                opened = True
            ok = not batch or self._scheduler.add_notes(job.answer_id, batch)
            flushed = flushed or bool(batch)
            batch.clear()
            if not ok:
                report.cancelled = True  # cancelled by the engine (interrupt, panic, swap)
            return ok

        try:
            for position, event in answer_events(
                stream, job.length, job.length_unit, beats_per_bar=job.beats_per_bar
            ):
                if self._is_cancelled(job):
                    report.cancelled = True
                    return
                if first is None:
                    first = position
                beat = (position - first) / steps_per_beat
                if onset is not None and position != onset:  # the batch holds whole onsets
                    if (
                        batch
                        and (not flushed or self._due_soon(job, batch[0].beat))
                        and not flush()
                    ):
                        return
                    if self._beyond_lookahead(job, beat):
                        if not flush():
                            return
                        self._wait_for_playhead(job, beat)
                        if self._is_cancelled(job):
                            report.cancelled = True
                            return
                onset = position
                velocity = scheme.bucket_velocity(event.velocity_bucket)
                batch.extend(
                    PlannedNote(beat, p, velocity, event.duration / steps_per_beat)
                    for p in event.pitches
                )
                report.answer_events += 1
                report.notes += len(event.pitches)
            if not self._is_cancelled(job):
                flush()
        finally:
            report.generate_ms = (time.perf_counter() - started - self._waited) * 1e3
            if opened:
                self._scheduler.close_answer(job.answer_id)

    def _due_soon(self, job: AnswerJob, beat: float) -> bool:
        playhead = self._scheduler.playhead(job.answer_id)
        return playhead is None or (
            (beat - playhead) * self._tempo.seconds_per_beat() < FLUSH_MARGIN_S
        )

    def _beyond_lookahead(self, job: AnswerJob, beat: float) -> bool:
        playhead = self._scheduler.playhead(job.answer_id)
        return playhead is not None and beat - playhead > self.lookahead_beats

    def _wait_for_playhead(self, job: AnswerJob, beat: float) -> None:
        """Block while ``beat`` is more than ``lookahead_beats`` ahead of the playhead."""
        with self._cond:
            while not self._is_cancelled(job):
                playhead = self._scheduler.playhead(job.answer_id)
                if playhead is None or beat - playhead <= self.lookahead_beats:
                    return
                ahead = beat - playhead - self.lookahead_beats
                self._waiting = True
                began = time.perf_counter()
                try:
                    self._wait(self._cond, ahead * self._tempo.seconds_per_beat())
                finally:
                    self._waiting = False
                    self.playhead_waits += 1
                    self._waited += time.perf_counter() - began
