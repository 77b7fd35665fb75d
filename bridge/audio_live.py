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
VOICED_LIMIT = 0.35
"""Frames whose best lag stays above this are unvoiced (noise, breath, silence)."""


def live_params(rate: int) -> TrackerParams:
    """Tracker settings for a live stream at ``rate`` Hz: 2048-sample frames at 48 kHz, a hop
    of 256 samples (5.3 ms), a shorter pitch confirmation than offline (it is the latency)."""
    frame = 2048 if rate > 32000 else 1024
    return TrackerParams(
        frame_s=frame / rate,
        hop_s=(frame // 8) / rate,
        confirm_s=0.02,
        release_s=0.04,
        min_note_s=0.06,
        gate_db=-50.0,
        unclear_wait=1.0,
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
        i = int(np.argmin(region))
        if region[i] > VOICED_LIMIT:
            return math.nan
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
        self._segmenter = NoteSegmenter(p)
        self._rise_window: deque[float] = deque(maxlen=p.frames(p.rise_window_s))
        self._armed = True

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
        return events

    def finish(self) -> list[NoteEvent]:
        """End of the stream: the note-off of a sounding note."""
        return self._segmenter.finish(self.now)

    def _frame_done(self) -> list[NoteEvent]:
        p = self.params
        frame = self._buffer
        centre = self.now - 0.5 * self._frame / self.rate
        if centre < 0:
            return []
        tail = frame[-self._frame // 2 :]
        rms = float(np.sqrt(np.mean(tail.astype(np.float64) ** 2)))
        level = 20.0 * math.log10(max(rms, 1e-10))
        midi = yin(frame, self.rate, p.fmin_hz, p.fmax_hz) if level >= p.gate_db else math.nan
        onset = False
        if self._rise_window:
            rising = level - min(self._rise_window) >= p.rise_db
            onset = rising and self._armed
            self._armed = not rising
        self._rise_window.append(level)
        return self._segmenter.push(centre, midi, level, onset)


def track_stream(
    samples: np.ndarray, rate: int, params: TrackerParams | None = None, block: int = 256
) -> tuple[list[AudioNote], list[tuple[float, float]]]:
    """Run a :class:`StreamTracker` over ``samples`` in ``block``-sample pieces, as JACK
    would; the notes, and per note kept ``(onset, emitted)``: the stream time (s) of the end of
    the block whose processing sent its note-on (latency = emitted - the true onset)."""
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
            "audio_cpu_percent": round(100 * self.cpu_share(), 2),
        }
