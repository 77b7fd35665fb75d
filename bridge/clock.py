"""Tempo and beat grid: a set BPM, or the DAW's MIDI clock when it sends one.

The grid is a line ``beat = beat0 + (t - t0) * bpm / 60`` re-anchored whenever the tempo changes,
so beats stay continuous.  MIDI clock (0xF8, 24 per quarter note) replaces the set tempo while it
runs: the tempo is the least-squares slope over the last two beats of ticks (robust to per-tick
jitter), the grid phase follows the tick count on the line through the earliest ticks (a tick is
only ever stamped late, never early), and a tick lost on the way (a late JACK cycle drops its
input; DAWs send no Song Position Pointer while rolling) is found from the intervals and counted,
so the count stays on the clock's grid (:func:`_lost_ticks`).  Start (0xFA) puts the next tick
on beat 0, Song Position Pointer moves it, Continue resumes from there, Stop freezes the position
while ticks keep the tempo.  Without ticks for :data:`CLOCK_TIMEOUT_S` the clock counts as gone
and the last tempo stays.  Bars start on beat 0 of the grid.

Threads: :meth:`TempoTracker.on_message` is called by the engine control thread, :meth:`set_bpm`
by the control or OSC thread, the conversions by the scheduler and generation worker — all
under one lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

import mido
import numpy as np

from bridge.config import BEATS_PER_BAR_RANGE

__all__ = [
    "CLOCK_BPM_RANGE",
    "CLOCK_TIMEOUT_S",
    "PPQN",
    "Clock",
    "TempoTracker",
    "resolve_start",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Monotonic seconds; ``time.monotonic`` in the bridge, a fake in tests."""

PPQN = 24
"""MIDI clock ticks per quarter note."""

CLOCK_TIMEOUT_S = 0.5
"""No tick for this long: the external clock is considered stopped."""

CLOCK_BPM_RANGE = (10.0, 400.0)
"""Tempi the tracker holds: wider than what one may set (:data:`bridge.config.BPM_RANGE`), as a
DAW's MIDI clock is followed, not refused; a measured tempo outside is clamped to it."""
MIN_BPM, MAX_BPM = CLOCK_BPM_RANGE
_WINDOW = 48  # ticks in the tempo fit (two beats)
_LOSS_BEFORE_TICKS = 12  # ticks before a gap whose line it is measured from (half a beat)
_SAME_RATE = 0.05  # the rate around a gap within 5 % of the long fit's: no tempo change
LOSS_CONFIRM_TICKS = 8
"""Ticks after a gap that decide whether it was a loss (a third of a beat: a burst of late ticks
is over well before that)."""
LOSS_THRESHOLD = 0.7
"""Step, in tick intervals, between the lines before and after a gap that counts as a lost tick
(late ticks measured on the test VMs arrive up to 0.93 intervals late, a few at a time)."""
_UNITS = ("now", "beat", "bar")
_TRANSPORT = ("start", "stop", "continue", "songpos")


class TempoTracker:
    """The shared tempo map: ``beat_at(t)`` / ``time_at_beat(beat)`` and boundaries."""

    def __init__(
        self, bpm: float = 120.0, clock: Clock = time.monotonic, beats_per_bar: int = 4
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._bpm = _check_bpm(bpm)
        self._beats_per_bar = _check_bar(beats_per_bar)
        self._t0 = clock()
        self._beat0 = 0.0
        self._ticks: deque[tuple[int, float]] = deque(maxlen=_WINDOW)
        self._tick_count = 0  # ticks since song position 0 (the next tick's index)
        self._last_tick: float | None = None
        self._playing = True  # transport; ticks move the grid phase only while playing
        self._listeners: list[Callable[[], None]] = []
        self.ticks_received = 0
        self.ticks_lost = 0  # missing ticks found from the intervals (see _lost_ticks)
        self.timeline_shifts = 0  # steps taken as a stalled server instead (gaps_are_losses off)
        # A step in the ticks' line: lost ticks when the stamps are on the clock master's own
        # timeline (JACK frames from the native backend; ALSA's and CoreMIDI's system time).
        # RtMidi on JACK stamps in wall-clock time, where a stalled server (the dummy driver
        # stalls and never catches up) makes the same step without losing a tick: set False.
        self.gaps_are_losses = True

    # ----- reading ----------------------------------------------------------------------------
    @property
    def bpm(self) -> float:
        with self._lock:
            return self._bpm

    @property
    def beats_per_bar(self) -> int:
        with self._lock:
            return self._beats_per_bar

    @property
    def clock_running(self) -> bool:
        """True while MIDI clock ticks arrive (the last one less than CLOCK_TIMEOUT_S ago)."""
        with self._lock:
            return self._clock_running(self._clock())

    def _clock_running(self, now: float) -> bool:
        return self._last_tick is not None and now - self._last_tick < CLOCK_TIMEOUT_S

    def beat_at(self, t: float) -> float:
        with self._lock:
            return self._beat0 + (t - self._t0) * self._bpm / 60.0

    def time_at_beat(self, beat: float) -> float:
        with self._lock:
            return self._t0 + (beat - self._beat0) * 60.0 / self._bpm

    def seconds_per_beat(self) -> float:
        with self._lock:
            return 60.0 / self._bpm

    def next_boundary(self, t: float, unit: str) -> float:
        """The time of the next ``"beat"`` or ``"bar"`` at or after ``t`` (``"now"``: ``t``)."""
        if unit not in _UNITS:
            raise ValueError(f"unit must be one of {_UNITS}, got {unit!r}")
        if unit == "now":
            return t
        with self._lock:
            beat = self._beat0 + (t - self._t0) * self._bpm / 60.0
            step = 1 if unit == "beat" else self._beats_per_bar
            target = math.ceil(beat / step - 1e-9) * step
            return self._t0 + (target - self._beat0) * 60.0 / self._bpm

    # ----- setting ----------------------------------------------------------------------------
    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (outside the lock) after a jump in the map: set_bpm, Start, SPP, Continue."""
        self._listeners.append(callback)

    def set_bpm(self, bpm: float) -> None:
        """Set the tempo, keeping the current beat; an external clock overrides it again."""
        bpm = _check_bpm(bpm)
        with self._lock:
            self._reanchor(self._clock())
            self._bpm = bpm
        self._notify()

    def set_beats_per_bar(self, beats: int) -> None:
        with self._lock:
            self._beats_per_bar = _check_bar(beats)

    def on_message(self, msg: mido.Message, t: float) -> bool:
        """Feed a clock / transport message received at ``t``; False if it is not one."""
        kind = msg.type
        if kind == "clock":
            with self._lock:
                self._tick(t)
            return True
        if kind not in _TRANSPORT:
            return False
        with self._lock:
            self._reanchor(t)
            if kind == "start":  # the next tick is beat 0
                self._tick_count, self._playing = 0, True
                self._beat0, self._t0 = 0.0, t
            elif kind == "stop":
                self._playing = False
            elif kind == "continue":
                self._playing = True
            else:  # Song Position Pointer: sixteenth notes, 6 ticks each
                self._tick_count = int(msg.pos) * (PPQN // 4)
                self._beat0, self._t0 = self._tick_count / PPQN, t
        self._notify()
        return True

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback()

    # ----- internals (lock held) --------------------------------------------------------------
    def _reanchor(self, t: float) -> None:
        self._beat0 = self._beat0 + (t - self._t0) * self._bpm / 60.0
        self._t0 = t

    def _tick(self, t: float) -> None:
        self.ticks_received += 1
        if self._last_tick is not None and (
            t - self._last_tick > CLOCK_TIMEOUT_S or t < self._last_tick
        ):
            self._ticks.clear()  # the clock paused: don't fit across the gap
        self._last_tick = t
        # x: the tick's index on the clock's own grid (ticks lost on the way are skipped).
        x = self._ticks[-1][0] + 1 if self._ticks else 0
        self._ticks.append((x, t))
        lost = _lost_ticks(self._ticks)
        if lost and self.gaps_are_losses:
            log.info(
                "MIDI clock: %d tick(s) lost before the last %d (a late cycle dropped them); "
                "counted, the grid stays on the clock",
                lost,
                LOSS_CONFIRM_TICKS,
            )
            self.ticks_lost += lost
            self._tick_count += lost
            recent = [self._ticks.pop() for _ in range(LOSS_CONFIRM_TICKS)][::-1]
            self._ticks.extend((x + lost, u) for x, u in recent)
        elif lost:
            # Stamped in wall-clock time, a server that stalled looks the same: its timeline
            # (and the clock on it) paused and goes on later.  Follow the ticks after the gap.
            log.info(
                "MIDI clock: the ticks came %d interval(s) later than the clock's line (the "
                "JACK server stalled); the grid follows them",
                lost,
            )
            self.timeline_shifts += 1
            recent = [self._ticks.pop() for _ in range(LOSS_CONFIRM_TICKS)][::-1]
            self._ticks.clear()
            self._ticks.extend(recent)
        slope = _fit_slope(self._ticks)
        if slope is not None:
            self._bpm = min(MAX_BPM, max(MIN_BPM, 60.0 / (slope * PPQN)))
        if not self._playing:
            self._reanchor(t)
            return
        # The grid phase follows the song position: this tick sits on beat index / 24, at its
        # time on the fitted tick line (so one late tick does not jerk the grid).
        index = self._tick_count
        self._tick_count += 1
        fitted = t
        if slope is not None:
            # A tick can only arrive late (a busy machine delays the thread that stamps it),
            # never early: the line through the earliest-arriving ticks is the true grid.
            x_now = self._ticks[-1][0]
            fitted = x_now * slope + min(u - x * slope for x, u in self._ticks)
        self._beat0, self._t0 = index / PPQN, fitted


def _lost_ticks(ticks: deque[tuple[int, float]]) -> int:
    """How many ticks went missing just before the newest :data:`LOSS_CONFIRM_TICKS` (0: none).

    Numbered by arrival, a lost tick puts a step of one interval between the ticks before it and
    those after it; a late tick (or a burst of them after a stall) only delays itself.  Ticks
    are stamped late, never early, so each side's line is its lower envelope, at the interval
    fitted on every tick before the newest.  The step between the two lines, in intervals, is
    the number lost — decided once all the newest ticks came after the gap, only while the
    local rate (a line with a step, fitted around the gap) agrees with the long fit (a tempo
    change bends the line, it does not step it) and the newest arrive steadily (not bunched up
    as after a stall).
    """
    if len(ticks) < LOSS_CONFIRM_TICKS + _LOSS_BEFORE_TICKS:
        return 0
    window = list(ticks)
    older, newest = window[:-LOSS_CONFIRM_TICKS], window[-LOSS_CONFIRM_TICKS:]
    interval = _fit_slope(deque(older))
    if interval is None:
        return 0
    local = window[-(LOSS_CONFIRM_TICKS + _LOSS_BEFORE_TICKS) :]
    local_rate, _ = _fit_line_with_step(local, _LOSS_BEFORE_TICKS)
    if abs(local_rate - interval) > _SAME_RATE * interval:
        return 0
    if newest[-1][1] - newest[0][1] < 0.75 * (LOSS_CONFIRM_TICKS - 1) * interval:
        return 0  # bunched up: a burst of late ticks after a stall, not a steady clock
    line_before = min(u - x * interval for x, u in older[-_LOSS_BEFORE_TICKS:])
    line_after = min(u - x * interval for x, u in newest)
    step = (line_after - line_before) / interval
    return round(step) if step >= LOSS_THRESHOLD else 0


def _fit_line_with_step(points: list[tuple[int, float]], at: int) -> tuple[float, float]:
    """Least squares ``u = a + slope * x + step * (index >= at)``: (slope, step)."""
    x = np.array([p[0] for p in points], dtype=float)
    u = np.array([p[1] for p in points], dtype=float)
    x, u = x - x[0], u - u[0]
    after = (np.arange(len(points)) >= at).astype(float)
    design = np.column_stack([np.ones_like(x), x, after])
    (_, slope, step), *_ = np.linalg.lstsq(design, u, rcond=None)
    return float(slope), float(step)


def _fit_slope(ticks: deque[tuple[int, float]]) -> float | None:
    """Least-squares seconds per tick over the window (None until 3 ticks or if degenerate)."""
    n = len(ticks)
    if n < 3:
        return None
    mean_x = sum(x for x, _ in ticks) / n
    mean_t = sum(t for _, t in ticks) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in ticks)
    slope = sum((x - mean_x) * (t - mean_t) for x, t in ticks) / sxx
    return slope if slope > 0 else None


def resolve_start(start: str, tempo: TempoTracker) -> str:
    """``"auto"`` → ``"beat"`` while a MIDI clock runs, else ``"now"``; other values unchanged."""
    if start == "auto":
        return "beat" if tempo.clock_running else "now"
    if start not in _UNITS:
        raise ValueError(f"start must be auto, now, beat or bar, got {start!r}")
    return start


def _check_bpm(bpm: float) -> float:
    if isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not math.isfinite(bpm):
        raise ValueError(f"bpm must be a finite number, got {bpm!r}")
    if not MIN_BPM <= bpm <= MAX_BPM:
        raise ValueError(f"bpm must be {MIN_BPM:g}..{MAX_BPM:g}, got {bpm}")
    return float(bpm)


def _check_bar(beats: int) -> int:
    low, high = BEATS_PER_BAR_RANGE
    if isinstance(beats, bool) or not isinstance(beats, int) or not low <= beats <= high:
        raise ValueError(f"beats_per_bar must be an int {low}..{high}, got {beats!r}")
    return beats
