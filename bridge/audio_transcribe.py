"""Audio calls → notes: monophonic pitch tracking and note segmentation (the ``audio`` extra).

A hummed, sung or played call becomes notes in three steps, all pure functions of the samples:

1. :func:`analyse` — per-frame features: pitch by librosa's pYIN (MIDI, NaN where unvoiced),
   loudness (RMS in dB re full scale) and onsets (librosa's spectral-flux onset detector);
2. :class:`NoteSegmenter` — frames → note-on / note-off events: a note starts once a voiced
   pitch has stayed within half a semitone for ``confirm_s`` (longer while it lies between two
   semitones, or is a sub-harmonic of the note before), its onset back-dated to the level floor
   since the note before ended; it ends after ``release_s`` of silence, moves on when another
   pitch holds (legato), and restarts on an onset at the same pitch (a re-struck note);
   velocity follows the note's loudness.  The live tracker (:mod:`bridge.audio_live`) feeds the
   same segmenter frame by frame, so offline and live calls are cut the same way.  Offline the
   call's tuning (:func:`tuning`) is taken out of the pitch first; live a running estimate is;
3. :func:`to_timed_notes` — seconds → beats on the grid at ``--bpm``, or at the tempo
   :func:`estimate_tempo` hears (reported to the caller).

:func:`read_call` does all of it for a file (WAV, FLAC, OGG — what libsndfile reads).  librosa
and soundfile are imported inside the functions that need them: importing this module costs
only numpy, and the MIDI-only bridge never imports it.  Runs in the caller's thread.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge.errors import AntiphonError
from bridge.midifile import MidiSong, TimedNote

__all__ = [
    "AUDIO_SUFFIXES",
    "CALL_VELOCITY",
    "AudioCall",
    "AudioFileError",
    "AudioNote",
    "Frames",
    "NoteEvent",
    "NoteSegmenter",
    "TrackerParams",
    "analyse",
    "centre_velocities",
    "centre_velocity",
    "estimate_tempo",
    "level_to_velocity",
    "read_audio",
    "read_call",
    "segment",
    "to_timed_notes",
    "transcribe",
    "tuned",
    "tuning",
]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff")
"""Files ``antiphon continue`` reads as audio (anything libsndfile reads would do)."""

ANALYSIS_RATE = 22050
"""Offline analysis runs at this sample rate (pYIN's cost grows with it; melodies need no more)."""


PYIN_LEAP_RATE = 300.0
"""Semitones per second pYIN's pitch path may move (librosa's default, 35.92, suits speech and
bends the path through a sub-harmonic when a short note leaps up an octave)."""


VOICED_PROB = 0.1
"""Frames pYIN finds less likely voiced than this are unvoiced (its Viterbi path alone calls
steady noise voiced)."""
IN_TUNE = 0.3
"""Semitones from the sounding note within which a frame still belongs to it (tighter than the
0.75 hysteresis that keeps a note through vibrato: it marks where a glide to the next began)."""
FLOOR_DB = 1.0
"""A note's onset is the first frame within this many dB of the level floor before it."""
CLEAR = 0.3
"""A pitch run this close to a semitone is one after ``confirm_s``; one further away waits up
to ``unclear_wait`` times as long (:meth:`NoteSegmenter._settled`)."""
HARMONIC_LEAPS = frozenset({12, 19, 24, 28, 31})
HARMONIC_FIX_S = 0.2
"""A note this young is corrected by a pitch these many semitones above it (see
:meth:`NoteSegmenter._correctable`)."""
SUBHARMONIC_HOLD_S = 0.05
"""A pitch run a sub-harmonic of the note before must hold this long to be a note."""
UNVOICED_HOLD_S = 0.1
FALL_DB = 6.0
"""A sounding note outlasts unvoiced frames this long while its level holds within this many dB
of its peak (a bend or a bow change the pitch tracker loses for a moment); silence, or a level
that fell, ends it after ``release_s``."""
NOISE_GATE_DB = 35.0
"""Offline, frames this far below the call's loud frames (95th percentile) are silence."""


class AudioFileError(AntiphonError, ValueError):
    """An audio file cannot be read, or holds no notes; the message names the file and why."""


@dataclass(frozen=True)
class TrackerParams:
    """How calls are tracked and cut into notes; checked when built, then immutable.

    ``fmin_hz``/``fmax_hz`` bound the pitch search (C2..C7 by default: bass voice to piccolo);
    ``frame_s``/``hop_s`` are the analysis window and step; ``confirm_s`` how long a pitch must
    hold before it is a note (the live tracker's added delay); ``release_s`` how long silence
    must last to end one; ``min_note_s`` the shortest note kept; ``gate_db`` the level (dB re
    full scale) below which a frame is silence; an onset is the level rising ``rise_db`` within
    ``rise_window_s``; ``attack_s`` how far back a note's onset may move to the dip before it;
    ``restrike_s`` how old a note must be before a dip and a rise at its pitch start a new one;
    ``unclear_wait`` how many times ``confirm_s`` a pitch run lying between two semitones may
    wait to settle (the live tracker waits less: it is latency).
    """

    fmin_hz: float = 65.0
    fmax_hz: float = 2100.0
    frame_s: float = 2048 / ANALYSIS_RATE
    hop_s: float = 256 / ANALYSIS_RATE
    confirm_s: float = 0.035
    release_s: float = 0.035
    min_note_s: float = 0.06
    gate_db: float = -45.0
    rise_db: float = 6.0
    rise_window_s: float = 0.08
    attack_s: float = 0.1
    restrike_s: float = 0.15
    unclear_wait: float = 3.0

    def __post_init__(self) -> None:
        for name in (
            "fmin_hz",
            "fmax_hz",
            "frame_s",
            "hop_s",
            "confirm_s",
            "release_s",
            "min_note_s",
            "gate_db",
            "rise_db",
            "rise_window_s",
            "attack_s",
            "restrike_s",
            "unclear_wait",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(
                    f"TrackerParams.{name} must be a number, got {type(value).__name__}"
                )
            if not math.isfinite(value):
                raise ValueError(f"TrackerParams.{name} must be finite, got {value}")
        if not 20.0 <= self.fmin_hz < self.fmax_hz <= 8000.0:
            raise ValueError(
                f"need 20 <= fmin_hz < fmax_hz <= 8000, got {self.fmin_hz}..{self.fmax_hz}"
            )
        if not 0 < self.hop_s <= self.frame_s <= 0.5:
            raise ValueError(
                f"need 0 < hop_s <= frame_s <= 0.5, got hop_s={self.hop_s}, frame_s={self.frame_s}"
            )
        if self.frame_s < 2.0 / self.fmin_hz:
            raise ValueError(
                f"frame_s={self.frame_s} is shorter than two periods of fmin_hz={self.fmin_hz}"
            )
        for name in (
            "confirm_s",
            "release_s",
            "min_note_s",
            "rise_window_s",
            "attack_s",
            "restrike_s",
        ):
            if not 0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"TrackerParams.{name} must be 0..1 s, got {getattr(self, name)}")
        if not -120.0 <= self.gate_db <= 0.0:
            raise ValueError(f"TrackerParams.gate_db must be -120..0, got {self.gate_db}")
        if not 1.0 <= self.unclear_wait <= 10.0:
            raise ValueError(f"TrackerParams.unclear_wait must be 1..10, got {self.unclear_wait}")
        if not 1.0 <= self.rise_db <= 60.0:
            raise ValueError(f"TrackerParams.rise_db must be 1..60, got {self.rise_db}")

    def frames(self, seconds: float) -> int:
        """``seconds`` as a whole number of hops (at least 1)."""
        return max(1, round(seconds / self.hop_s))


@dataclass(frozen=True)
class Frames:
    """Per-frame features of a call: times (s, frame centres), pitch (MIDI, NaN = unvoiced),
    level (dB re full scale), onset (True where an onset was detected); equal lengths."""

    times: np.ndarray
    midi: np.ndarray
    level_db: np.ndarray
    onset: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.times)
        if not len(self.midi) == len(self.level_db) == len(self.onset) == n:
            raise ValueError("Frames: times, midi, level_db and onset must have equal lengths")


@dataclass(frozen=True)
class AudioNote:
    """A transcribed note in seconds from the start of the audio."""

    onset: float
    offset: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class NoteEvent:
    """A note-on (``velocity`` > 0) or note-off (``velocity`` 0) at ``time`` seconds."""

    time: float
    pitch: int
    velocity: int

    @property
    def is_on(self) -> bool:
        return self.velocity > 0


CALL_VELOCITY = 80
"""A call's median note velocity.  How loud a microphone or a recording is says nothing about
how loud the musician played.  Velocities read as absolute levels (88-104 for a call scaled
to full scale) put the models off their corpora (the held-out folk calls all carry 72):
answers to such calls came out 40-60 % denser than to the same calls as MIDI, 16-20 % of them
degenerate (benchmarks/TRANSCRIPTION.md, answers to audio calls)."""


def level_to_velocity(level_db: float) -> int:
    """Loudness → MIDI velocity: -48 dBFS and below is 16, 0 dBFS is 127, linear between."""
    if not math.isfinite(level_db):
        return 16
    return int(np.clip(round(127 + level_db * (111 / 48)), 16, 127))


@dataclass
class _Run:
    """Consecutive voiced frames that may become a note."""

    start: float
    attack: bool = False  # an onset (level rise) came with it
    restrike: bool = False  # the sounding pitch struck again
    pitches: list[float] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)


class NoteSegmenter:
    """Frames in, note events out; the one segmentation rule for offline and live calls.

    Feed frames in time order with :meth:`push`; :meth:`finish` ends a sounding note.  Two
    refinements on the rule in the module docstring: a note's onset moves back, at most
    ``attack_s``, to the first frame of the level's floor after the note before (or silence)
    ended — a bow or a voice is heard tens of ms before its pitch settles (a re-struck note: to
    the bottom of its dip); and a pitch that replaces the sounding one less than ``attack_s``
    after it began (``HARMONIC_FIX_S`` when the sounding one is its sub-harmonic), with no new
    attack between, corrects it — the wrong note is ended at its own onset, so it has no
    length.  Offline such a note is dropped; live its note-on was already sent (the tracker
    counts these as retracted).  Pure state, no threads: the offline path and the live tracker
    thread each own one.
    """

    def __init__(self, params: TrackerParams | None = None) -> None:
        self.params = params or TrackerParams()
        p = self.params
        self._confirm = p.frames(p.confirm_s)
        self._release = p.frames(p.release_s)
        self._hold = p.frames(UNVOICED_HOLD_S)
        self._sounding: int | None = None  # pitch of the sounding note
        self._last: tuple[int, float] | None = None  # pitch and end of the note before
        self._since = 0.0  # its onset
        self._run: _Run | None = None  # a candidate for the next note
        self._silent: float | None = None  # when the current silence began
        self._silent_frames = 0
        self._boundary = -math.inf  # a next note cannot begin before this (see _attack)
        self._note_levels: deque[float] = deque(maxlen=p.frames(2.0))  # since the note began
        self._levels: deque[tuple[float, float]] = deque(
            maxlen=p.frames(p.attack_s + max(p.unclear_wait * p.confirm_s, SUBHARMONIC_HOLD_S)) + 2
        )  # an onset is looked for up to attack_s before a run that settled late

    @property
    def sounding(self) -> int | None:
        """Pitch of the note now on, if any."""
        return self._sounding

    def push(self, time: float, midi: float, level_db: float, onset: bool) -> list[NoteEvent]:
        """One frame: its centre time (s), pitch (MIDI, NaN unvoiced), level (dB), onset flag."""
        events: list[NoteEvent] = []
        self._levels.append((time, level_db))
        self._note_levels.append(level_db)
        voiced = math.isfinite(midi) and level_db >= self.params.gate_db
        if level_db < self.params.gate_db:
            self._boundary = time + self.params.hop_s  # silence: a note begins after it
        elif voiced and self._sounding is not None and abs(midi - self._sounding) <= IN_TUNE:
            self._boundary = time + self.params.hop_s  # still the sounding note
        if not voiced:
            self._run = None
            if self._sounding is not None:
                if self._silent is None:
                    self._silent, self._silent_frames = time, 0
                self._silent_frames += 1
                loud = level_db >= self.params.gate_db and not self._fell()
                if self._silent_frames >= (self._hold if loud else self._release):
                    events.append(self._off(self._silent))
            return events
        self._silent = None
        if self._sounding is not None:
            near = abs(midi - self._sounding) <= 0.75  # hysteresis: vibrato stays one note
            if near and self._run is not None and self._run.restrike:
                pass  # a re-struck note being confirmed
            elif onset and near and time - self._since >= self.params.restrike_s and self._dipped():
                self._run = _Run(time, attack=True, restrike=True)  # the same pitch again
            elif near:
                self._run = None
                return events
            elif onset and self._run is not None:
                self._run.attack = True
        if self._run is None or (self._run.pitches and abs(midi - self._median()) > 0.5):
            self._run = _Run(time, attack=onset)
        self._run.pitches.append(midi)
        self._run.levels.append(level_db)
        if self._settled(self._run):
            run = self._run
            self._run = None
            start = self._dip(run.start) if run.restrike else self._attack(run.start)
            if self._sounding is not None:
                if not run.attack and run.start - self._since < self._correctable(run):
                    start = self._since  # a correction of the note just begun
                events.append(self._off(start))
            pitch = int(np.clip(round(float(np.median(run.pitches))), 0, 127))
            self._sounding, self._since = pitch, start
            self._note_levels.clear()
            events.append(NoteEvent(start, pitch, level_to_velocity(max(run.levels))))
        return events

    def finish(self, time: float) -> list[NoteEvent]:
        """End of input at ``time``: the note-off of a sounding note, if any."""
        self._run = None
        if self._sounding is None:
            return []
        return [self._off(self._silent if self._silent is not None else time)]

    def _fell(self) -> bool:
        """Has the level fallen ``FALL_DB`` under the sounding note's peak (it is dying away)?"""
        return bool(self._note_levels) and max(self._note_levels) - self._note_levels[-1] >= FALL_DB

    def _dipped(self) -> bool:
        """Did the level fall at least 3 dB from the note's peak before this rise?  (A voice or
        a bow that swells after its attack rises without a dip: the same note, not a new one.)"""
        levels = list(self._note_levels)
        window = self.params.frames(self.params.rise_window_s) + 1
        if len(levels) <= window:
            return False
        recent = levels[-window:]
        low_at = len(levels) - window + int(np.argmin(recent))
        before = levels[:low_at]
        return bool(before) and max(before) - levels[low_at] >= 3.0

    def _settled(self, run: _Run) -> bool:
        """Has ``run`` held one pitch long enough to be a note?  ``confirm_s`` when its median
        is within ``CLEAR`` of a semitone, up to ``unclear_wait`` times that while it lies
        between two (a glide into the note, or vibrato around a detuned one, is undecided)."""
        frames = len(run.pitches)
        if frames < self._confirm:
            return False
        median = float(np.median(run.pitches))
        if self._under_last(round(median), run.start):
            return frames >= self.params.frames(SUBHARMONIC_HOLD_S)
        clear = abs(median - round(median)) <= CLEAR
        return clear or frames >= self.params.unclear_wait * self._confirm

    def _under_last(self, pitch: int, start: float) -> bool:
        """Is ``pitch`` a sub-harmonic of the note sounding, or of one that ended less than
        ``attack_s`` before ``start``?  Two notes overlapping in a release or a reverb share a
        period (a minor third's is five of the upper note's): that reads as a low note for a
        few frames."""
        if self._sounding is not None:
            return self._sounding - pitch in HARMONIC_LEAPS
        if self._last is None:
            return False
        pitch_before, end = self._last
        return start - end <= self.params.attack_s and pitch_before - pitch in HARMONIC_LEAPS

    def _correctable(self, run: _Run) -> float:
        """How old a note may be for ``run`` to correct it rather than follow it: ``attack_s``,
        longer when the sounding pitch is a sub-harmonic of the run's (an octave, a twelfth,
        two octaves, two octaves and a third or a fifth below: YIN and pYIN latch onto those
        while a bow or a voice starts)."""
        assert self._sounding is not None
        leap = round(float(np.median(run.pitches))) - self._sounding
        return HARMONIC_FIX_S if leap in HARMONIC_LEAPS else self.params.attack_s

    def _attack(self, start: float) -> float:
        """Where the attack of a note whose pitch settled at ``start`` began: the first frame
        of the level's floor (within ``FLOOR_DB`` of the lowest level) between the last frame
        of the note before, or of silence, and ``start``, at most ``attack_s`` back.  A bowed
        or sung note is heard tens of ms before its pitch settles, and legato it rises from
        no dip; the floor between two notes is where one ended and the next began."""
        earliest = max(self._boundary, start - self.params.attack_s)
        window = [(t, lv) for t, lv in self._levels if earliest - 1e-9 <= t <= start]
        if not window:
            return start
        low = min(lv for _, lv in window)
        return next(t for t, lv in window if lv <= low + FLOOR_DB)

    def _dip(self, start: float) -> float:
        """Where a re-struck note began: the bottom of the level dip (at least 3 dB) in the
        ``attack_s`` before ``start``."""
        earliest = start - self.params.attack_s - 1e-9
        window = [(t, lv) for t, lv in self._levels if earliest <= t <= start]
        if not window:
            return start
        low_at = len(window) - 1 - int(np.argmin([lv for _, lv in reversed(window)]))
        if not (window[-1][1] - window[low_at][1] >= 3.0 and math.isfinite(window[low_at][1])):
            return start
        return window[low_at][0]

    def _off(self, time: float) -> NoteEvent:
        assert self._sounding is not None
        event = NoteEvent(max(time, self._since), self._sounding, 0)
        self._last = (self._sounding, event.time)
        self._sounding, self._silent, self._silent_frames = None, None, 0
        return event

    def _median(self) -> float:
        assert self._run is not None
        return float(np.median(self._run.pitches))


# ---- offline -----------------------------------------------------------------------------------


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of an audio file; :class:`AudioFileError` if
    it cannot be read."""
    try:
        import soundfile
    except ImportError:
        raise AudioFileError(
            f"{path}: reading audio needs the audio extra (pip install 'antiphon[audio]')"
        ) from None
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile.LibsndfileError, RuntimeError, TypeError on bad data
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AudioFileError(f"{path}: not a readable audio file ({reason})") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no samples")
    return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32), int(rate)


def analyse(samples: np.ndarray, rate: int, params: TrackerParams | None = None) -> Frames:
    """Per-frame pitch (pYIN), level and onsets of mono ``samples`` at ``rate`` Hz."""
    import librosa

    p = params or TrackerParams()
    y = np.asarray(samples, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"samples must be mono (one dimension), got shape {y.shape}")
    if rate != ANALYSIS_RATE:
        y = librosa.resample(y, orig_sr=rate, target_sr=ANALYSIS_RATE)
    sr = ANALYSIS_RATE
    frame = _pow2(p.frame_s * sr)
    hop = max(1, round(p.hop_s * sr))
    y = np.concatenate([y, np.zeros(frame, dtype=np.float32)])  # the last note can end
    f0, _voiced, prob = librosa.pyin(
        y,
        fmin=p.fmin_hz,
        fmax=p.fmax_hz,
        sr=sr,
        frame_length=frame,
        hop_length=hop,
        center=True,
        max_transition_rate=PYIN_LEAP_RATE,
    )
    rms = librosa.feature.rms(y=y, frame_length=frame // 2, hop_length=hop, center=True)[0]
    n = min(len(f0), len(rms))
    with np.errstate(divide="ignore", invalid="ignore"):
        midi = 69.0 + 12.0 * np.log2(f0[:n] / 440.0)
        midi[prob[:n] < VOICED_PROB] = np.nan
        level = 20.0 * np.log10(np.maximum(rms[:n], 1e-10))
    return Frames(
        times=np.arange(n) * hop / sr, midi=midi, level_db=level, onset=rise_onsets(level, p)
    )


def rise_onsets(level_db: np.ndarray, params: TrackerParams | None = None) -> np.ndarray:
    """Onsets as frames where the level first climbs ``rise_db`` above its minimum over the
    previous ``rise_window_s``: causal, so the live tracker computes the same flags frame by
    frame.  (A spectral-flux peak picker such as librosa's also fires on the tremolo of a
    flute or a voice, which would cut one held note into many.)"""
    p = params or TrackerParams()
    window = p.frames(p.rise_window_s)
    level = np.asarray(level_db, dtype=float)
    onset = np.zeros(len(level), dtype=bool)
    armed = True
    for i in range(1, len(level)):
        low = float(np.min(level[max(0, i - window) : i]))
        rising = level[i] - low >= p.rise_db
        if rising and armed:
            onset[i] = True
        armed = not rising
    return onset


def segment(frames: Frames, params: TrackerParams | None = None) -> list[AudioNote]:
    """Notes of a call from its frames (see :class:`NoteSegmenter`); short ones left out.

    Offline, unlike live, the whole note is known: its pitch is taken again as the median over
    the note after its first ``attack_s`` (the live tracker must commit to the pitch of the
    first ``confirm_s``, where a glide from the previous note can still pull it a semitone)."""
    segmenter = NoteSegmenter(params)
    events: list[NoteEvent] = []
    for t, m, lv, on in zip(
        frames.times.tolist(),
        frames.midi.tolist(),
        frames.level_db.tolist(),
        frames.onset.tolist(),
        strict=True,
    ):
        events.extend(segmenter.push(t, m, lv, on))
    end = float(frames.times[-1]) if len(frames.times) else 0.0
    events.extend(segmenter.finish(end))
    notes = pair_events(events, segmenter.params.min_note_s)
    return [_settled_pitch(n, frames, segmenter.params.attack_s) for n in notes]


def _settled_pitch(note: AudioNote, frames: Frames, attack_s: float) -> AudioNote:
    inside = (frames.times >= note.onset + attack_s) & (frames.times < note.offset)
    pitches = frames.midi[inside]
    pitches = pitches[np.isfinite(pitches) & (np.abs(pitches - note.pitch) <= 1.5)]
    if len(pitches) < 3:
        return note
    pitch = int(np.clip(round(float(np.median(pitches))), 0, 127))
    return AudioNote(note.onset, note.offset, pitch, note.velocity)


def pair_events(events: Iterable[NoteEvent], min_note_s: float = 0.0) -> list[AudioNote]:
    """Note-on/off events of one monophonic line → notes at least ``min_note_s`` long."""
    notes: list[AudioNote] = []
    pending: NoteEvent | None = None
    for event in events:
        if event.is_on:
            pending = event
        elif pending is not None and event.pitch == pending.pitch:
            if event.time - pending.time >= min_note_s:
                notes.append(AudioNote(pending.time, event.time, pending.pitch, pending.velocity))
            pending = None
    return notes


def transcribe(
    samples: np.ndarray, rate: int, params: TrackerParams | None = None
) -> list[AudioNote]:
    """Notes of a monophonic call: :func:`analyse` then :func:`segment`.  The signal is scaled
    to a -1 dBFS peak first, so ``gate_db`` does not depend on the recording level, and the
    velocities are centred on :data:`CALL_VELOCITY` (:func:`centre_velocities`)."""
    y = np.asarray(samples, dtype=np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak <= 0.0:
        return []
    y = y * (10 ** (-1 / 20) / peak)
    frames = tuned(analyse(y, rate, params))
    p = params or TrackerParams()
    loud = float(np.percentile(frames.level_db, 95)) if len(frames.level_db) else 0.0
    gate = max(p.gate_db, loud - NOISE_GATE_DB)
    gated = TrackerParams(**{**p.__dict__, "gate_db": max(-120.0, min(0.0, gate))})
    return centre_velocities(segment(frames, gated))


def centre_velocity(velocity: int, median: float) -> int:
    """``velocity`` moved so that ``median`` (of the call's note velocities) lands on
    :data:`CALL_VELOCITY`; velocity is linear in dB, so this keeps the accents."""
    return int(np.clip(round(velocity - median + CALL_VELOCITY), 1, 127))


def centre_velocities(notes: Sequence[AudioNote]) -> list[AudioNote]:
    """``notes`` with :func:`centre_velocity` applied around their median velocity."""
    if not notes:
        return []
    median = float(np.median([n.velocity for n in notes]))
    return [
        AudioNote(n.onset, n.offset, n.pitch, centre_velocity(n.velocity, median)) for n in notes
    ]


def tuning(midi: np.ndarray) -> float:
    """The call's tuning: how far (semitones, -0.5..0.5) its voiced frames sit from equal
    temperament at A440, as the circular mean of their fractional parts (0 if none)."""
    voiced = midi[np.isfinite(midi)]
    if voiced.size == 0:
        return 0.0
    angle = 2 * np.pi * voiced
    mean = math.atan2(float(np.mean(np.sin(angle))), float(np.mean(np.cos(angle))))
    return mean / (2 * np.pi)


def tuned(frames: Frames) -> Frames:
    """``frames`` with the pitch moved by the call's :func:`tuning` onto the semitone grid: a
    singer 40 cents sharp, or an instrument tuned to A446, is heard in tune, not as notes that
    wobble between two semitones."""
    offset = tuning(frames.midi)
    return Frames(frames.times, frames.midi - offset, frames.level_db, frames.onset)


def estimate_tempo(
    notes: Sequence[AudioNote], *, low: float = 60.0, high: float = 180.0
) -> float | None:
    """Tempo (BPM) that puts the note onsets closest to a sixteenth-note grid; None for fewer
    than 3 notes.

    Tries every tempo from ``low`` to ``high`` in 0.5 BPM steps with the first onset on a beat,
    scores the mean distance (s) of the onsets from the nearest sixteenth; of the tempos within
    6 ms of the best it picks the one that puts most onsets on beats and eighths, then the one
    nearest 110 BPM (a melody fits half and double its tempo as well).
    """
    onsets = np.array(sorted(n.onset for n in notes))
    if len(onsets) < 3:
        return None
    rel = onsets - onsets[0]
    candidates = np.arange(low, high + 0.25, 0.5)
    steps = rel[None, :] * candidates[:, None] / 60.0 * 4.0
    grid = np.round(steps)
    err = np.mean(np.abs(steps - grid), axis=1) * (15.0 / candidates)  # seconds
    simple = np.mean(grid % 4 == 0, axis=1) + np.mean(grid % 2 == 0, axis=1)
    good = np.flatnonzero(err <= float(err.min()) + 0.006)
    best = max(
        good, key=lambda i: (round(float(simple[i]), 6), -abs(math.log2(candidates[i] / 110.0)))
    )
    return float(candidates[best])


def to_timed_notes(
    notes: Sequence[AudioNote], bpm: float, *, steps_per_beat: int = 4, origin: float | None = None
) -> list[TimedNote]:
    """Seconds → beats at ``bpm``, onsets and durations rounded to the ``steps_per_beat`` grid
    (durations at least one step), counted from ``origin`` (default the first onset)."""
    if not (math.isfinite(bpm) and bpm > 0):
        raise ValueError(f"bpm must be a positive number, got {bpm}")
    if steps_per_beat < 1:
        raise ValueError(f"steps_per_beat must be >= 1, got {steps_per_beat}")
    if not notes:
        return []
    start = min(n.onset for n in notes) if origin is None else origin
    beat = 60.0 / bpm
    out: list[TimedNote] = []
    for n in sorted(notes, key=lambda n: n.onset):
        on = max(0, round((n.onset - start) / beat * steps_per_beat))
        length = max(1, round((n.offset - n.onset) / beat * steps_per_beat))
        out.append(TimedNote(on / steps_per_beat, n.pitch, length / steps_per_beat, n.velocity))
    return out


@dataclass(frozen=True)
class AudioCall:
    """A call read from an audio file: its notes in beats, the tempo used and where it came
    from (``estimated`` True: heard in the audio; False: given)."""

    song: MidiSong
    notes: tuple[AudioNote, ...]
    bpm: float
    estimated: bool
    seconds: float


def read_call(
    path: str | Path,
    *,
    bpm: float | None = None,
    steps_per_beat: int = 4,
    params: TrackerParams | None = None,
) -> AudioCall:
    """Read, transcribe and quantize one audio call; :class:`AudioFileError` if it has no
    notes.  Without ``bpm`` the tempo is estimated from the notes (120 if too few)."""
    samples, rate = read_audio(path)
    notes = transcribe(samples, rate, params)
    if not notes:
        raise AudioFileError(f"{path}: no notes heard (is it silent, or not a melody?)")
    estimated = bpm is None
    tempo = bpm if bpm is not None else (estimate_tempo(notes) or 120.0)
    timed = to_timed_notes(notes, tempo, steps_per_beat=steps_per_beat)
    return AudioCall(
        MidiSong(tuple(timed), tempo), tuple(notes), tempo, estimated, len(samples) / rate
    )


def _pow2(samples: float) -> int:
    return int(2 ** round(math.log2(max(samples, 16.0))))
