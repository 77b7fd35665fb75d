"""Standard MIDI files ⇄ notes in beats, for offline use (``antiphon continue``, examples, tests).

Reading merges every track (type 0, 1 and 2 files), pairs note-ons with their note-offs per
channel and pitch, and leaves the drum channel (MIDI channel 10) out unless asked.  Times are
in beats (quarter notes), so the tempo map does not matter for the notes; the first tempo is
reported so a continuation can be written back at the same speed.  Writing puts each named
track's notes on its own track with one tempo.  Built on mido; never used by the realtime path.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mido

from bridge.errors import AntiphonError

__all__ = [
    "DRUM_CHANNEL",
    "MidiFileError",
    "MidiSong",
    "TimedNote",
    "read_midi",
    "write_midi",
]

DRUM_CHANNEL = 9
"""Zero-based channel of General MIDI percussion (channel 10 as musicians count)."""

DEFAULT_BPM = 120.0


class MidiFileError(AntiphonError, ValueError):
    """A MIDI file cannot be read or written; the message names the file and why."""


@dataclass(frozen=True, order=True)
class TimedNote:
    """A note in beats from the start of its song; checked when built, then immutable."""

    onset: float
    pitch: int
    duration: float
    velocity: int = 80
    channel: int = 0

    def __post_init__(self) -> None:
        for name in ("onset", "duration"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"TimedNote.{name} must be a number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"TimedNote.{name} must be finite, got {value}")
        for name in ("pitch", "velocity", "channel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"TimedNote.{name} must be an int, got {type(value).__name__}")
        if self.onset < 0:
            raise ValueError(f"TimedNote.onset must be >= 0, got {self.onset}")
        if self.duration <= 0:
            raise ValueError(f"TimedNote.duration must be > 0, got {self.duration}")
        if not 0 <= self.pitch <= 127:
            raise ValueError(f"TimedNote.pitch must be 0..127, got {self.pitch}")
        if not 1 <= self.velocity <= 127:
            raise ValueError(f"TimedNote.velocity must be 1..127, got {self.velocity}")
        if not 0 <= self.channel <= 15:
            raise ValueError(f"TimedNote.channel must be 0..15, got {self.channel}")

    @property
    def end(self) -> float:
        return self.onset + self.duration

    def shifted(self, beats: float) -> TimedNote:
        """The same note ``beats`` later."""
        return TimedNote(self.onset + beats, self.pitch, self.duration, self.velocity, self.channel)

    def as_tuple(self) -> tuple[float, int, float, int]:
        """``(onset, pitch, duration, velocity)``, the shape :meth:`TokenScheme.quantize` takes."""
        return (self.onset, self.pitch, self.duration, self.velocity)


@dataclass(frozen=True)
class MidiSong:
    """The notes of one file (sorted by onset) and its first tempo."""

    notes: tuple[TimedNote, ...]
    bpm: float = DEFAULT_BPM

    @property
    def end(self) -> float:
        """Beat at which the last note ends (0 for a file without notes)."""
        return max((n.end for n in self.notes), default=0.0)


def read_midi(path: str | Path, *, include_drums: bool = False) -> MidiSong:
    """Read a ``.mid`` file; :class:`MidiFileError` with one clear line if it is not one."""
    path = Path(path)
    try:
        midi = mido.MidiFile(path)
    except FileNotFoundError:
        raise MidiFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MidiFileError(f"{path}: is a directory, not a MIDI file") from None
    except PermissionError:
        raise MidiFileError(f"{path}: permission denied") from None
    except Exception as exc:  # mido raises OSError, EOFError, ValueError, KeyError... on bad data
        raise MidiFileError(f"{path}: not a readable MIDI file ({_reason(exc)})") from None
    if midi.ticks_per_beat <= 0:
        raise MidiFileError(f"{path}: SMPTE time division is not supported")
    return MidiSong(
        notes=tuple(sorted(_notes(midi, include_drums))),
        bpm=_first_bpm(midi),
    )


def write_midi(
    path: str | Path,
    tracks: Sequence[tuple[str, Iterable[TimedNote]]],
    *,
    bpm: float = DEFAULT_BPM,
    ticks_per_beat: int = 480,
) -> None:
    """Write a type-1 file: a tempo track, then one track per ``(name, notes)``.

    At equal times note-offs precede note-ons, so repeated notes are not cut short.
    """
    if not (math.isfinite(bpm) and bpm > 0):
        raise ValueError(f"bpm must be a positive number, got {bpm}")
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    conductor.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    midi.tracks.append(conductor)
    for name, notes in tracks:
        # (tick, 0 = off / 1 = on, pitch, channel, velocity)
        events: list[tuple[int, int, int, int, int]] = []
        for n in notes:
            on = round(n.onset * ticks_per_beat)
            off = max(on + 1, round(n.end * ticks_per_beat))
            events.append((on, 1, n.pitch, n.channel, n.velocity))
            events.append((off, 0, n.pitch, n.channel, 0))
        events.sort()
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        now = 0
        for tick, kind, pitch, channel, velocity in events:
            message = "note_on" if kind else "note_off"
            track.append(
                mido.Message(
                    message,
                    note=pitch,
                    velocity=velocity if kind else 64,
                    channel=channel,
                    time=tick - now,
                )
            )
            now = tick
        midi.tracks.append(track)
    try:
        midi.save(Path(path))
    except OSError as exc:
        raise MidiFileError(f"{path}: cannot write ({_reason(exc)})") from None


def _notes(midi: mido.MidiFile, include_drums: bool) -> list[TimedNote]:
    """Pair note-ons with note-offs track by track (ticks are absolute per track)."""
    tpb = midi.ticks_per_beat
    notes: list[TimedNote] = []
    for track in midi.tracks:
        open_notes: dict[tuple[int, int], deque[tuple[int, int]]] = defaultdict(deque)
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type not in ("note_on", "note_off"):
                continue
            if msg.channel == DRUM_CHANNEL and not include_drums:
                continue
            key = (msg.channel, msg.note)
            if msg.type == "note_on" and msg.velocity > 0:
                open_notes[key].append((tick, msg.velocity))
            elif open_notes[key]:
                start, velocity = open_notes[key].popleft()
                if tick > start:
                    notes.append(
                        TimedNote(
                            start / tpb, msg.note, (tick - start) / tpb, velocity, msg.channel
                        )
                    )
        for (channel, pitch), pending in open_notes.items():  # never released: end of track
            for start, velocity in pending:
                if tick > start:
                    notes.append(
                        TimedNote(start / tpb, pitch, (tick - start) / tpb, velocity, channel)
                    )
    return notes


def _first_bpm(midi: mido.MidiFile) -> float:
    for track in midi.tracks:
        for msg in track:
            if msg.type == "set_tempo":
                return round(float(mido.tempo2bpm(msg.tempo)), 3)
    return DEFAULT_BPM


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text and text[0] else type(exc).__name__
