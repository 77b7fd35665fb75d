"""Play answers in time: the scheduler thread sends note-ons and note-offs when they are due.

Notes arrive in BEATS relative to their answer's anchor beat; each is converted to seconds
through the :class:`~bridge.clock.TempoTracker` only when it comes due, so an answer follows
tempo changes while it plays.  Every note that goes out is tracked until its note-off, which is
sent on time or — on cancel (interrupt, stop, model swap, generation error), panic or exit — at
once.  The same answer is reported to ``bridge.protocols.AnswerEvents`` (OSC out): ``answer_begin``
when it opens, ``answer_plan`` for each batch of notes before they play, ``note`` as each note
starts and ``answer_end`` after its last note-off or when it is cancelled.

Threads: the scheduler thread runs :meth:`Scheduler._run`; the generation worker opens, extends
and closes answers; the control / OSC threads cancel, pass through and panic (how cancelling
works across the engine, the worker and this floor of answer ids: :mod:`bridge.engine`).  One
Condition guards everything and wakes the thread (no polling); ``wait`` is injected so tests run
on a fake clock.  The thread is a :class:`~bridge.worker.Worker`; the queue holds one ordered
``_Entry`` per note-on and note-off.

With ``lookahead_s`` > 0 and a sink that has ``send_at`` (the native JACK backend's), note-ons and
note-offs are handed to the sink that much before they are due, with their due time, and the sink
places each at its exact frame; what is sent "now" (cancel, panic, passthrough) never overtakes
what was handed before it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import mido

from bridge.clock import Clock, TempoTracker
from bridge.midi_out import MidiSink
from bridge.protocols import AnswerEvents
from bridge.worker import Worker

__all__ = [
    "PlannedNote",
    "Playback",
    "Scheduler",
    "Wait",
    "condition_wait",
]

log = logging.getLogger(__name__)

Wait = Callable[[threading.Condition, "float | None"], object]
"""Blocks on a held Condition for at most ``timeout`` seconds (None: until notified)."""


def condition_wait(cond: threading.Condition, timeout: float | None) -> object:
    """The real ``wait``: ``cond.wait(timeout)``."""
    return cond.wait(timeout)


class PlannedNote(NamedTuple):
    """A note of an answer: ``beat`` after the answer's anchor, ``duration`` in beats."""

    beat: float
    pitch: int
    velocity: int
    duration: float


@dataclass
class Playback:
    """What happened to one answer (given to ``on_answer_end``)."""

    answer_id: int
    first_note_at: float | None = None
    notes_played: int = 0
    cancelled: bool = False
    late_notes: int = 0


@dataclass
class _Answer:
    anchor: float
    channel: int  # 0..15
    playback: Playback
    closed: bool = False
    pending: int = 0  # heap entries not yet handled


_OFF, _ON = 0, 1  # at the same beat, note-offs go first
_PASSTHROUGH = -1
_LATE_S = 0.05


@dataclass(order=True, frozen=True, slots=True)
class _Entry:
    """One queued note-on or note-off, in the heap's order: by beat, note-offs first at the same
    beat, then in the order they were queued."""

    beat: float  # absolute beat (the answer's anchor + the note's beat)
    kind: int  # _OFF or _ON
    seq: int
    answer_id: int = field(compare=False)
    uid: int = field(compare=False)  # the note: its note-off ends only its own note-on
    pitch: int = field(compare=False)
    velocity: int = field(compare=False)  # 0 for a note-off
    duration: float = field(compare=False)  # beats (note-ons)


class Scheduler:
    """Sends the notes of open answers at their beats; see the module docstring."""

    def __init__(
        self,
        sink: MidiSink,
        tempo: TempoTracker,
        events: AnswerEvents,
        clock: Clock = time.monotonic,
        *,
        wait: Wait = condition_wait,
        on_answer_end: Callable[[Playback], None] | None = None,
        max_wait_s: float = 0.25,
        lookahead_s: float = 0.0,
    ) -> None:
        if not (math.isfinite(lookahead_s) and lookahead_s >= 0):
            raise ValueError(f"lookahead_s must be >= 0, got {lookahead_s}")
        self._sink = sink
        self._send_at: Callable[[mido.Message, float | None], None] | None = getattr(
            sink, "send_at", None
        )
        self._lookahead = lookahead_s if self._send_at is not None else 0.0
        self._tempo = tempo
        self._events = events
        self._clock = clock
        self._wait = wait
        self._on_answer_end = on_answer_end
        self._max_wait = max_wait_s
        self._cond = threading.Condition()
        self._heap: list[_Entry] = []
        self._answers: dict[int, _Answer] = {}
        self._owner: dict[tuple[int, int], tuple[int, int]] = {}  # (ch, pitch) → (answer, uid)
        self._uids = itertools.count(1)
        self._seq = itertools.count()
        self.worker = Worker("antiphon-scheduler", self._run, wake=self.wake)
        self._floor = 0  # answers with a lower id may no longer open
        self.sent = 0
        self.late_notes = 0
        tempo.add_listener(self.wake)

    # ----- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the scheduler thread (idempotent)."""
        self.worker.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and send the note-off of every note still sounding (idempotent)."""
        self.worker.stop(timeout)
        with self._cond:
            self._cancel_locked(list(self._answers))
            self._release_passthrough_locked()

    def wake(self) -> None:
        """Re-check due times now (after a tempo jump, or a fake clock moved)."""
        with self._cond:
            self._cond.notify_all()

    # ----- answers (generation worker) ------------------------------------------------------------
    def open_answer(self, answer_id: int, anchor_beat: float, channel: int) -> bool:
        """Open answer ``answer_id``: note beats count from ``anchor_beat``; channel 1..16.

        False (nothing opened) if the id was cancelled beforehand (see :meth:`cancel_all`),
        is already open, or the scheduler is stopping.
        """
        if not 1 <= channel <= 16:
            raise ValueError(f"channel must be 1..16, got {channel}")
        with self._cond:
            stopping = self.worker.stopping.is_set()
            if stopping or answer_id in self._answers or answer_id < self._floor:
                return False
            self._answers[answer_id] = _Answer(anchor_beat, channel - 1, Playback(answer_id))
        self._emit("answer_begin", answer_id)
        return True

    def add_notes(self, answer_id: int, notes: Iterable[PlannedNote]) -> bool:
        """Queue notes of an open answer; False (nothing queued) if it was cancelled or ended.

        ValueError (nothing queued) for a pitch outside 0..127, a velocity outside 1..127 or a
        negative or non-finite beat or duration.
        """
        batch = list(notes)
        for note in batch:
            if not (
                0 <= note.pitch <= 127
                and 1 <= note.velocity <= 127
                and math.isfinite(note.beat)
                and math.isfinite(note.duration)
                and note.beat >= 0
                and note.duration >= 0
            ):
                raise ValueError(f"not a playable note: {note}")
        with self._cond:
            answer = self._answers.get(answer_id)
            if answer is None or answer.closed:
                return False
            for note in batch:
                uid = next(self._uids)
                beat = answer.anchor + note.beat
                on = _Entry(
                    beat,
                    _ON,
                    next(self._seq),
                    answer_id,
                    uid,
                    note.pitch,
                    note.velocity,
                    note.duration,
                )
                off = _Entry(
                    beat + max(note.duration, 1e-3),
                    _OFF,
                    next(self._seq),
                    answer_id,
                    uid,
                    note.pitch,
                    0,
                    0.0,
                )
                heapq.heappush(self._heap, on)
                heapq.heappush(self._heap, off)
                answer.pending += 2
            self._cond.notify_all()
        if batch:
            self._emit("answer_plan", answer_id, batch)
        return True

    def close_answer(self, answer_id: int) -> None:
        """No more notes for this answer; it ends after its last note-off."""
        with self._cond:
            answer = self._answers.get(answer_id)
            if answer is not None:
                answer.closed = True
                self._finish_if_done_locked(answer_id)
                self._cond.notify_all()

    def cancel_answer(self, answer_id: int) -> bool:
        """Drop what is still to come and silence what sounds; False if it was not open."""
        with self._cond:
            found = answer_id in self._answers
            self._cancel_locked([answer_id])
            return found

    def cancel_all(self, before: int | None = None) -> None:
        """Cancel every open answer (interrupt, model swap); with ``before``, also refuse to
        open any answer whose id is lower (ones still being generated)."""
        with self._cond:
            if before is not None:
                self._floor = max(self._floor, before)
            self._cancel_locked(list(self._answers))

    def playhead(self, answer_id: int) -> float | None:
        """Beats since the answer's anchor now (negative before it starts); None if not open."""
        with self._cond:
            answer = self._answers.get(answer_id)
            if answer is None:
                return None
            return self._tempo.beat_at(self._clock()) - answer.anchor

    def next_due(self) -> float | None:
        """When the next queued entry is due (seconds, at the current tempo); None if idle."""
        with self._cond:
            if not self._heap:
                return None
            return self._tempo.time_at_beat(self._heap[0].beat)

    @property
    def active_answers(self) -> list[int]:
        with self._cond:
            return list(self._answers)

    def sounding(self) -> list[tuple[int, int]]:
        """(channel 0..15, pitch) of every note Antiphon holds on, answers and passthrough."""
        with self._cond:
            return sorted(self._owner)

    # ----- immediate output (control / OSC threads) ---------------------------------------------
    def passthrough(self, msg: mido.Message) -> None:
        """Send an input message straight out, tracking its notes so they get note-offs too."""
        with self._cond:
            if self.worker.stopping.is_set():
                return
            if msg.type in ("note_on", "note_off"):
                key = (msg.channel, msg.note)
                owner = self._owner.get(key)
                if msg.type == "note_on" and msg.velocity > 0:
                    if owner is not None:  # an answer note on this key, or a re-strike whose
                        self._note_off_locked(key)  # note-off was lost: one note-off per note-on
                    self._owner[key] = (_PASSTHROUGH, 0)
                elif owner is None or owner[0] != _PASSTHROUGH:
                    return  # an answer owns this key (or nothing sounds): not ours to end
                else:
                    del self._owner[key]
            self._send(msg)

    def panic(self, before: int | None = None) -> None:
        """Cancel every answer (``before`` as in :meth:`cancel_all`), end every note Antiphon
        holds, then All Notes Off (CC 123) on all 16 channels."""
        with self._cond:
            if before is not None:
                self._floor = max(self._floor, before)
            self._cancel_locked(list(self._answers))
            self._release_passthrough_locked()
            for channel in range(16):
                self._send(mido.Message("control_change", channel=channel, control=123, value=0))

    # ----- the thread ---------------------------------------------------------------------------
    def pump(self) -> float | None:
        """Send everything due now (or within the lookahead); returns when the next entry is to
        be sent (None: nothing queued)."""
        with self._cond:
            return self._pump_locked()

    def _run(self) -> None:
        with self._cond:
            while not self.worker.stopping.is_set():
                try:
                    due = self._pump_locked()
                except Exception:  # never let one bad entry stop the music thread
                    log.exception("scheduler error")
                    due = None
                timeout = None if due is None else min(self._max_wait, due - self._clock())
                if timeout is not None and timeout <= 0:
                    continue
                self._wait(self._cond, timeout)

    def _pump_locked(self) -> float | None:
        now = self._clock()
        while self._heap:
            entry = self._heap[0]
            due = self._tempo.time_at_beat(entry.beat)
            if due > now + self._lookahead + 1e-6:
                return due - self._lookahead
            heapq.heappop(self._heap)
            answer = self._answers.get(entry.answer_id)
            if answer is None:
                continue
            answer.pending -= 1
            key = (answer.channel, entry.pitch)
            if entry.kind == _ON:
                duration = self._sounding_beats_locked(entry)
                self._note_on_locked(answer, entry.uid, key, entry.velocity, duration, now, due)
            elif self._owner.get(key) == (entry.answer_id, entry.uid):
                self._note_off_locked(key, due)
            self._finish_if_done_locked(entry.answer_id)
        return None

    def _sounding_beats_locked(self, on: _Entry) -> float:
        """How long the note-on ``on`` will sound: its duration, unless the same answer strikes
        the same key again before it ends (that note-on ends it: see :meth:`_note_on_locked`).
        What ``note`` events report, so they match the MIDI."""
        end = on.beat + on.duration
        for entry in self._heap:
            if (
                entry.kind == _ON
                and entry.answer_id == on.answer_id
                and entry.pitch == on.pitch
                and on.beat < entry.beat < end
            ):
                end = entry.beat
        return end - on.beat

    def _note_on_locked(
        self,
        answer: _Answer,
        uid: int,
        key: tuple[int, int],
        velocity: int,
        duration: float,
        now: float,
        due: float,
    ) -> None:
        lateness = now - due
        if key in self._owner:
            self._note_off_locked(key, due)  # retrigger: end the older note on this key first
        self._send(mido.Message("note_on", channel=key[0], note=key[1], velocity=velocity), due)
        self._owner[key] = (answer.playback.answer_id, uid)
        playback = answer.playback
        if playback.first_note_at is None:  # when it sounds: handed ahead, it sounds when due
            playback.first_note_at = max(self._clock(), due)
        playback.notes_played += 1
        if lateness > _LATE_S:
            playback.late_notes += 1
            self.late_notes += 1
        self._emit("note", key[1], velocity, duration)

    def _note_off_locked(self, key: tuple[int, int], due: float | None = None) -> None:
        self._owner.pop(key, None)
        self._send(mido.Message("note_off", channel=key[0], note=key[1], velocity=0), due)

    def _cancel_locked(self, answer_ids: list[int]) -> None:
        for answer_id in answer_ids:
            answer = self._answers.get(answer_id)
            if answer is None:
                continue
            for key, owner in list(self._owner.items()):
                if owner[0] == answer_id:
                    self._note_off_locked(key)
            answer.playback.cancelled = True
            answer.pending = 0
            answer.closed = True
            self._finish_if_done_locked(answer_id)
        if answer_ids:
            self._heap = [e for e in self._heap if e.answer_id in self._answers]
            heapq.heapify(self._heap)

    def _release_passthrough_locked(self) -> None:
        for key, owner in list(self._owner.items()):
            if owner[0] == _PASSTHROUGH:
                self._note_off_locked(key)

    def _finish_if_done_locked(self, answer_id: int) -> None:
        answer = self._answers.get(answer_id)
        if answer is None or not answer.closed or answer.pending > 0:
            return
        del self._answers[answer_id]
        self._emit("answer_end", answer_id)
        if self._on_answer_end is not None:
            try:
                self._on_answer_end(answer.playback)
            except Exception:
                log.exception("on_answer_end callback failed")

    def _send(self, msg: mido.Message, due: float | None = None) -> None:
        """Send ``msg`` now, or hand it over for time ``due`` when the sink places messages."""
        try:
            if self._send_at is not None and due is not None and self._lookahead > 0:
                self._send_at(msg, due)
            else:
                self._sink.send(msg)
            self.sent += 1
        except Exception:  # the sink should not raise; if it does, keep playing
            log.exception("MIDI send failed: %s", msg)

    def _emit(self, name: str, *args: object) -> None:
        try:
            getattr(self._events, name)(*args)
        except Exception:
            log.exception("answer event %s failed", name)
