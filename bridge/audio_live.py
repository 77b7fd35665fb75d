"""Live audio in: a JACK audio port whose monophonic stream becomes note-on/off for the engine.

``antiphon bridge --audio-in`` opens the JACK client "Antiphon Audio" with the input port
"Antiphon Audio In".  Three parts, each doing one thing:

* the JACK process callback (JACK's realtime thread) only copies the period's samples into a
  bounded queue with the time it ran; a full queue drops the block and counts it;
* the tracker thread (``antiphon-audio``) drains that queue into a :class:`StreamTracker` and
  puts ``(t, note_on/note_off)`` into the engine's input queue, the same queue the MIDI callback
  feeds, so phrase capture, silence detection and triggers treat a hummed call like a played
  one.  ``t`` is when the note began in the audio (back-dated, on the monotonic clock);
* :class:`StreamTracker` is pure: samples in, :class:`~bridge.audio_transcribe.NoteEvent` out,
  no threads or clocks.  Per hop it finds the pitch with YIN (de Cheveigné & Kawahara 2002;
  causal, numpy only — pYIN's Viterbi needs the whole call) and the level, and hands the
  frame to the same :class:`~bridge.audio_transcribe.NoteSegmenter` the offline path uses.

Stopping puts the note-off of a note still sounding.  numpy and JACK-Client only; the MIDI-only
bridge never imports this module.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from queue import Empty, Full, Queue
from typing import Any

import mido
import numpy as np

from bridge.audio_transcribe import (
    AudioNote,
    NoteEvent,
    NoteSegmenter,
    TrackerParams,
    centre_velocity,
    pair_events,
)
from bridge.errors import PortError
from bridge.ports import check_jack_client_name

__all__ = [
    "AUDIO_CLIENT",
    "AUDIO_PORT",
    "AudioInput",
    "StreamTracker",
    "live_params",
    "track_stream",
    "transcribe_stream",
    "yin",
]

log = logging.getLogger(__name__)

AUDIO_CLIENT = "Antiphon Audio"
AUDIO_PORT = "Antiphon Audio In"
YIN_THRESHOLD = 0.2
"""Cumulative-mean-normalised difference below which a lag counts as the period."""
SUBHARMONIC_MARGIN = 0.1
"""With no dip under the threshold, the first lag within this of the deepest dip is the period."""
VOICED_LIMIT = 0.35
"""Frames whose best lag stays above this are unvoiced (noise, breath, silence)."""


YIN_WINDOW_S = 0.015
"""The live tracker's YIN integration window: the newest 15 ms, each compared with the samples
up to one period of ``fmin_hz`` before it.  A new note is heard once it fills that window plus
one of its own periods; YIN's usual forward window (the oldest part of the 43 ms frame) heard
it ~25 ms later."""
FRAME_DELAY_S = 0.012
"""A live frame's pitch and level describe the audio about this long before its newest sample
(the segmenter's frame time)."""
LEVEL_S = 0.021
"""The live level is the RMS of the newest ~21 ms."""


LIVE_HOP_DIV = 8
LIVE_CONFIRM_S = 0.02
TUNING_AFTER_S = 0.3
TUNING_HALF_LIFE_S = 5.0
"""The live tuning estimate starts after this much voiced audio and follows a drifting singer
with this half-life (in voiced time)."""


VELOCITY_NOTES = 16
"""Live velocities are centred on the median of the latest this many notes (offline: of the
whole call; see :func:`bridge.audio_transcribe.centre_velocities`)."""


def live_params(rate: int) -> TrackerParams:
    """Tracker settings for a live stream at ``rate`` Hz: 2048-sample frames at 48 kHz, a hop
    of 256 samples (5.3 ms), a shorter pitch confirmation than offline (it is the latency)."""
    frame = 2048 if rate > 32000 else 1024
    return TrackerParams(
        frame_s=frame / rate,
        hop_s=(frame // LIVE_HOP_DIV) / rate,
        confirm_s=LIVE_CONFIRM_S,
        release_s=0.04,
        min_note_s=0.06,
        gate_db=-50.0,
        unclear_wait=2.0,  # a third fewer retracted note-ons than 1, for 0.01 of note F
    )


def yin(frame: np.ndarray, rate: int, fmin: float, fmax: float) -> float:
    """Pitch of one frame in MIDI (NaN if unvoiced) by YIN with parabolic interpolation."""
    n = len(frame)
    tau_max = min(int(rate / fmin) + 2, n // 2)
    tau_min = max(2, int(rate / fmax))
    w = n - tau_max
    x = frame.astype(np.float64)
    size = 1 << math.ceil(math.log2(n + w))
    spectrum = np.fft.rfft(x, size)
    head = np.fft.rfft(x[:w], size)
    acf = np.fft.irfft(spectrum * np.conj(head), size)[: tau_max + 1]
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    e0 = energy[w]
    taus = np.arange(tau_max + 1)
    e_tau = energy[taus + w] - energy[taus]
    diff = np.maximum(e0 + e_tau - 2.0 * acf, 0.0)
    cum = np.cumsum(diff[1:])
    cmnd = np.ones(tau_max + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd[1:] = np.where(cum > 0, diff[1:] * taus[1:] / cum, 1.0)
    region = cmnd[tau_min:tau_max]
    if region.size == 0:
        return math.nan
    below = np.flatnonzero(region < YIN_THRESHOLD)
    if below.size:
        i = int(below[0])
        while i + 1 < region.size and region[i + 1] < region[i]:
            i += 1
    else:
        best = float(np.min(region))
        if best > VOICED_LIMIT:
            return math.nan
        # the shortest lag whose dip comes near the deepest: a sound still settling dips
        # about as deep at two to five periods, and those read as sub-harmonics
        i = int(np.flatnonzero(region <= best + SUBHARMONIC_MARGIN)[0])
        while i + 1 < region.size and region[i + 1] < region[i]:
            i += 1
    i = _shortest_period(region, i, tau_min)
    tau = float(i + tau_min)
    k = i + tau_min
    if 1 <= k < tau_max:
        a, b, c = cmnd[k - 1], cmnd[k], cmnd[k + 1]
        denom = a - 2 * b + c
        if denom > 0:
            tau += 0.5 * (a - c) / denom
    if tau <= 0:
        return math.nan
    return 69.0 + 12.0 * math.log2(rate / tau / 440.0)


def _shortest_period(region: np.ndarray, i: int, offset: int) -> int:
    """Index into ``region`` (the difference from lag ``offset`` on) of the lag ``i + offset``
    divided by 5, 4, 3 or 2 where the difference dips nearly as deep (within
    ``SUBHARMONIC_MARGIN``) — the period itself, of which that lag is a multiple — else ``i``."""
    for k in (5, 4, 3, 2):
        centre = round((i + offset) / k) - offset
        lo, hi = max(0, centre - 2), min(region.size, centre + 3)
        if hi - lo < 1 or centre < 2:
            continue
        j = lo + int(np.argmin(region[lo:hi]))
        if 0 < j < region.size - 1 and region[j] <= region[i] + SUBHARMONIC_MARGIN:
            return j
    return i


class StreamTracker:
    """Audio blocks in, note events out, causally; pure state (the tracker thread owns one).

    :meth:`feed` takes any number of samples; :attr:`now` is the stream time (s) of the last
    sample fed.  Frame times are frame centres, so an event's ``time`` is where the note began
    in the stream; ``now - time`` when it is returned is the tracker's added latency.
    """

    def __init__(self, rate: int, params: TrackerParams | None = None) -> None:
        if rate < 8000:
            raise ValueError(f"sample rate must be >= 8000 Hz, got {rate}")
        self.rate = int(rate)
        self.params = params or live_params(self.rate)
        p = self.params
        self._frame = max(64, round(p.frame_s * self.rate))
        self._hop = max(1, round(p.hop_s * self.rate))
        self._buffer = np.zeros(self._frame, dtype=np.float32)
        self._pending = 0  # samples since the last frame
        self._fed = 0
        tau_max = int(self.rate / p.fmin_hz) + 2
        self._yin_n = min(self._frame, tau_max + max(32, round(YIN_WINDOW_S * self.rate)))
        self._level_n = min(self._frame, max(32, round(LEVEL_S * self.rate)))
        self._segmenter = NoteSegmenter(p)
        self._rise_window: deque[float] = deque(maxlen=p.frames(p.rise_window_s))
        self._armed = True
        self.note_ons = 0
        self.retracted = 0
        """Note-ons taken back: ended at their own onset when the pitch decision changed (a
        stream cannot unsend them; the phrase capture gets a zero-length note)."""
        self._last_on: NoteEvent | None = None
        self._velocities: deque[int] = deque(maxlen=VELOCITY_NOTES)  # the latest note-ons'
        self._tune = np.zeros(2)  # decaying sums of cos, sin of each voiced frame's pitch angle
        self._tune_decay = 0.5 ** (p.hop_s / TUNING_HALF_LIFE_S)
        self._tune_frames = 0

    @property
    def now(self) -> float:
        return self._fed / self.rate

    @property
    def sounding(self) -> int | None:
        return self._segmenter.sounding

    def feed(self, samples: np.ndarray) -> list[NoteEvent]:
        """Consume ``samples`` (mono); the events they complete."""
        events: list[NoteEvent] = []
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        pos = 0
        while pos < len(x):
            take = min(self._hop - self._pending, len(x) - pos)
            self._buffer = np.roll(self._buffer, -take)
            self._buffer[-take:] = x[pos : pos + take]
            pos += take
            self._pending += take
            self._fed += take
            if self._pending == self._hop:
                self._pending = 0
                events.extend(self._frame_done())
        for k, event in enumerate(events):
            if event.is_on:
                self._velocities.append(event.velocity)
                median = float(np.median(self._velocities))
                event = NoteEvent(event.time, event.pitch, centre_velocity(event.velocity, median))
                events[k] = event
                self.note_ons += 1
                self._last_on = event
            elif self._last_on is not None and (event.time, event.pitch) == (
                self._last_on.time,
                self._last_on.pitch,
            ):
                self.retracted += 1
        return events

    def finish(self) -> list[NoteEvent]:
        """End of the stream: the note-off of a sounding note."""
        return self._segmenter.finish(self.now)

    def _frame_done(self) -> list[NoteEvent]:
        p = self.params
        frame = self._buffer
        if self._fed < self._frame:
            return []
        centre = self.now - FRAME_DELAY_S
        tail = frame[-self._level_n :]
        rms = float(np.sqrt(np.mean(tail.astype(np.float64) ** 2)))
        level = 20.0 * math.log10(max(rms, 1e-10))
        midi = math.nan
        if level >= p.gate_db:  # newest sample first: YIN integrates over the newest window
            newest = np.ascontiguousarray(frame[-self._yin_n :][::-1])
            midi = yin(newest, self.rate, p.fmin_hz, p.fmax_hz)
        onset = False
        if self._rise_window:
            rising = level - min(self._rise_window) >= p.rise_db
            onset = rising and self._armed
            self._armed = not rising
        self._rise_window.append(level)
        return self._segmenter.push(centre, midi - self._tuning(midi), level, onset)

    @property
    def tuning(self) -> float:
        """The stream's tuning heard so far (semitones from A440 equal temperament, -0.5..0.5;
        0 until ``TUNING_AFTER_S`` of voiced audio); pitches are moved by it before they are
        cut into notes, as offline (:func:`bridge.audio_transcribe.tuned`)."""
        if self._tune_frames * self.params.hop_s < TUNING_AFTER_S:
            return 0.0
        return math.atan2(float(self._tune[1]), float(self._tune[0])) / (2 * math.pi)

    def _tuning(self, midi: float) -> float:
        if math.isfinite(midi):
            angle = 2 * math.pi * midi
            self._tune = self._tune * self._tune_decay + (math.cos(angle), math.sin(angle))
            self._tune_frames += 1
        return self.tuning


def track_stream(
    samples: np.ndarray,
    rate: int,
    params: TrackerParams | None = None,
    block: int = 256,
    counts: dict[str, int] | None = None,
) -> tuple[list[AudioNote], list[tuple[float, float]]]:
    """Run a :class:`StreamTracker` over ``samples`` in ``block``-sample pieces, as JACK
    would; the notes, and per note kept ``(onset, emitted)``: the stream time (s) of the end of
    the block whose processing sent its note-on (latency = emitted - the true onset).
    ``counts``, if given, gets the tracker's ``note_ons`` and ``retracted`` added."""
    tracker = StreamTracker(rate, params)
    events: list[NoteEvent] = []
    emitted: dict[tuple[float, int], float] = {}
    x = np.asarray(samples, dtype=np.float32)
    for start in range(0, len(x), block):
        for event in tracker.feed(x[start : start + block]):
            events.append(event)
            if event.is_on:
                emitted[(event.time, event.pitch)] = tracker.now
    events.extend(tracker.finish())
    if counts is not None:
        counts["note_ons"] = counts.get("note_ons", 0) + tracker.note_ons
        counts["retracted"] = counts.get("retracted", 0) + tracker.retracted
    notes = pair_events(events, tracker.params.min_note_s)
    return notes, [(n.onset, emitted[(n.onset, n.pitch)]) for n in notes]


def transcribe_stream(samples: np.ndarray, rate: int) -> list[AudioNote]:
    """The notes the live tracker hears in ``samples`` (benchmarks compare it with offline)."""
    return track_stream(samples, rate)[0]


# ---- JACK ----------------------------------------------------------------------------------------

_STOP = object()


@dataclass(frozen=True)
class HeardNote:
    """A note-on the tracker sent: its onset and the moment it entered the engine's queue
    (monotonic seconds), and its pitch."""

    onset: float
    queued: float
    pitch: int


class AudioInput:
    """The JACK audio input and its tracker thread; see the module docstring.

    Built in the main thread (opens the client, nothing runs yet); :meth:`start` registers the
    process callback and activates the client (after everything it touches exists), then starts
    the tracker thread; :meth:`stop` (main thread) ends both, joins, and puts the note-off of a
    sounding note.  ``queue`` is the engine's input queue.  ``connect`` names JACK output ports
    to connect to "Antiphon Audio In" (e.g. ``system:capture_1``).
    """

    def __init__(
        self,
        queue: Queue[tuple[float, mido.Message]],
        *,
        client_name: str = AUDIO_CLIENT,
        port_name: str = AUDIO_PORT,
        channel: int = 0,
        gate_db: float | None = None,
        connect: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
        block_queue: int = 2048,
        servername: str | None = None,
    ) -> None:
        try:
            import jack
        except (ImportError, OSError) as err:  # no JACK-Client, or no libjack
            raise PortError(
                f"--audio-in needs JACK-Client and libjack ({err}); pip install 'antiphon[audio]'"
            ) from None
        self._queue = queue
        self._clock = clock
        self._channel = channel
        self._connect = tuple(connect)
        self._blocks: Queue[Any] = Queue(maxsize=block_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped_blocks = 0
        self.dropped_events = 0
        self.notes_on = 0
        self.callback_s = 0.0
        self.tracker_cpu_s = 0.0
        self.heard: deque[HeardNote] = deque(maxlen=4096)
        self._started_at = 0.0
        check_jack_client_name(client_name, servername)
        try:
            self._client = jack.Client(client_name, no_start_server=True, servername=servername)
        except jack.JackError as err:
            raise PortError(
                f"cannot open the JACK client {client_name!r} ({err}); is a JACK "
                "server running (JACK_DEFAULT_SERVER)?"
            ) from None
        self.rate = int(self._client.samplerate)
        params = live_params(self.rate)
        if gate_db is not None:
            params = TrackerParams(**{**params.__dict__, "gate_db": gate_db})
        self._tracker = StreamTracker(self.rate, params)
        self._port = self._client.inports.register(port_name)
        self.port_name = self._port.name

    # ----- realtime thread ------------------------------------------------------------------------
    def _process(self, frames: int) -> None:
        """JACK process thread: copy the period and its time into the queue; never blocks."""
        start = time.perf_counter()
        try:
            self._blocks.put_nowait((self._clock(), self._port.get_array().copy()))
        except Full:
            self.dropped_blocks += 1
        self.callback_s += time.perf_counter() - start

    # ----- tracker thread -------------------------------------------------------------------------
    def _run(self) -> None:
        cpu0 = time.thread_time()
        while not self._stop.is_set():
            try:
                item = self._blocks.get(timeout=0.1)
            except Empty:
                continue
            if item is _STOP:
                break
            t_block, samples = item
            for event in self._tracker.feed(samples):
                # the block ended when its callback ran: map stream time onto the clock
                self._put(event, t_block + (event.time - self._tracker.now))
            self.tracker_cpu_s = time.thread_time() - cpu0
        self.tracker_cpu_s = time.thread_time() - cpu0

    def _put(self, event: NoteEvent, t: float) -> None:
        kind = "note_on" if event.is_on else "note_off"
        msg = mido.Message(
            kind,
            note=event.pitch,
            velocity=event.velocity if event.is_on else 0,
            channel=self._channel,
        )
        try:
            self._queue.put_nowait((t, msg))
        except Full:
            self.dropped_events += 1
            return
        if event.is_on:
            self.notes_on += 1
            self.heard.append(HeardNote(t, self._clock(), event.pitch))

    # ----- lifecycle (main thread) ----------------------------------------------------------------
    def start(self) -> None:
        """Start the tracker thread, then register the callback and activate the client."""
        self._started_at = self._clock()
        self._thread = threading.Thread(target=self._run, name="antiphon-audio", daemon=True)
        self._thread.start()
        self._client.set_process_callback(self._process)
        self._client.activate()
        for source in self._connect:
            try:
                self._client.connect(source, self._port)
            except Exception as err:  # jack.JackError: a name that does not exist
                raise PortError(
                    f"cannot connect {source!r} to {self.port_name!r} ({err}); see `jack_lsp`"
                ) from None

    def stop(self, timeout: float = 2.0) -> None:
        """Deactivate the client, stop and join the tracker, end a sounding note.  Idempotent."""
        if self._stop.is_set():
            return
        with contextlib.suppress(Exception):  # a server already gone
            self._client.deactivate()
        self._stop.set()
        with contextlib.suppress(Full):
            self._blocks.put_nowait(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
        for event in self._tracker.finish():
            self._put(event, self._clock())
        with contextlib.suppress(Exception):
            self._client.close()
        log.info(
            "audio in: %d notes, %d blocks dropped, %d events dropped; tracker CPU %.1f %%",
            self.notes_on,
            self.dropped_blocks,
            self.dropped_events,
            100 * self.cpu_share(),
        )

    def cpu_share(self) -> float:
        """Tracker thread CPU time plus callback time, over the wall time since start."""
        wall = self._clock() - self._started_at
        return (self.tracker_cpu_s + self.callback_s) / wall if wall > 0 else 0.0

    def stats(self) -> dict[str, object]:
        """Counters for the status reply (any thread)."""
        return {
            "audio_notes": self.notes_on,
            "audio_dropped_blocks": self.dropped_blocks,
            "audio_dropped_events": self.dropped_events,
            "audio_retracted_notes": self._tracker.retracted,
            "audio_cpu_percent": round(100 * self.cpu_share(), 2),
        }
