"""Capture what the musician plays into a phrase, and quantize it into the call the model continues.

:class:`PhraseCapture` turns timestamped MIDI into :class:`CapturedNote` s: a note-on with
velocity 0 is a note-off; while the sustain pedal (CC64 ≥ 64) is down, released notes keep
sounding until the pedal lifts; a note starting within ``chord_window_s`` of the previous onset
joins its chord (same onset); an optional input channel filter drops everything else.  It also
knows when the musician last did something, so the engine can end a phrase after a silence.

Lost note-offs must not hold a phrase open for ever: All Notes Off (CC 123) and All Sound Off
(CC 120) release a channel's keys (CC 123 leaves pedalled notes to the pedal, as on a synth),
Reset All Controllers (CC 121) lifts its pedal, System Reset (0xFF) releases everything, a new
input channel forgets keys held on the others, and :meth:`PhraseCapture.release_held` lets the
engine end keys that have been down for too long (:meth:`PhraseCapture.held_since`).

Threads: only the engine control thread calls it (no lock).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import mido

from bridge.clock import TempoTracker
from bridge.tokens import Note, TokenScheme

__all__ = ["CapturedNote", "PhraseCapture", "quantize_call"]

MAX_NOTES = 1024
"""Notes kept per phrase; older ones are dropped (a call primes with its last events anyway)."""


@dataclass(frozen=True)
class CapturedNote:
    """A played note in seconds (engine clock)."""

    pitch: int
    onset_s: float
    duration_s: float
    velocity: int

    def __post_init__(self) -> None:
        if not 0 <= self.pitch <= 127:
            raise ValueError(f"pitch must be 0..127, got {self.pitch}")
        if not 1 <= self.velocity <= 127:
            raise ValueError(f"velocity must be 1..127, got {self.velocity}")
        if not (math.isfinite(self.onset_s) and math.isfinite(self.duration_s)):
            raise ValueError("onset_s and duration_s must be finite")
        if self.duration_s < 0:
            raise ValueError(f"duration_s must be >= 0, got {self.duration_s}")


class PhraseCapture:
    """Collects notes from note/sustain messages; ``channel`` is 1..16 or None for all."""

    def __init__(self, chord_window_s: float = 0.03, channel: int | None = None) -> None:
        self.chord_window_s = 0.0
        self.channel: int | None = None
        self.last_activity: float | None = None
        self._notes: deque[CapturedNote] = deque(maxlen=MAX_NOTES)
        self._held: dict[tuple[int, int], tuple[float, int]] = {}  # (ch, pitch) → onset, velocity
        self._sustained: dict[tuple[int, int], tuple[float, int]] = {}
        self._pedal: dict[int, float] = {}  # channel → when its pedal went down
        self._chord_onset: float | None = None
        self.configure(chord_window_s, channel)

    def configure(self, chord_window_s: float, channel: int | None) -> None:
        if not (math.isfinite(chord_window_s) and chord_window_s >= 0):
            raise ValueError(f"chord_window_s must be >= 0, got {chord_window_s}")
        if channel is not None and not 1 <= channel <= 16:
            raise ValueError(f"channel must be 1..16 or None, got {channel}")
        self.chord_window_s = float(chord_window_s)
        if channel is not None and channel != self.channel:
            # Their note-offs will be filtered out from now on: end them where input last moved.
            end = self.last_activity if self.last_activity is not None else 0.0
            for table in (self._held, self._sustained):
                for key in [k for k in table if k[0] != channel - 1]:
                    onset, velocity = table.pop(key)
                    self._add(key[1], onset, max(end, onset), velocity)
        self.channel = channel

    @property
    def is_playing(self) -> bool:
        """True while a key is down or a pedalled note still sounds."""
        return bool(self._held or self._sustained)

    @property
    def has_notes(self) -> bool:
        return bool(self._notes or self._held or self._sustained)

    def accepts(self, msg: mido.Message) -> bool:
        """Whether ``msg`` is on the input channel (channel messages only)."""
        return self.channel is None or getattr(msg, "channel", self.channel - 1) == self.channel - 1

    def feed(self, msg: mido.Message, t: float) -> bool:
        """Take one message at time ``t``; True if it was a note-on (the musician plays)."""
        if not self.accepts(msg):
            return False
        kind = msg.type
        if kind == "note_on" and msg.velocity > 0:
            self._note_on(msg.channel, msg.note, msg.velocity, t)
            return True
        if kind in ("note_off", "note_on"):
            self._note_off(msg.channel, msg.note, t)
        elif kind == "control_change":
            if msg.control == 64:
                self._pedal_change(msg.channel, msg.value >= 64, t)
            elif msg.control == 121:  # Reset All Controllers: the pedal comes up
                self._pedal_change(msg.channel, False, t)
            elif msg.control in (120, 123):  # All Sound Off / All Notes Off
                self._all_notes_off(msg.channel, t, sound_off=msg.control == 120)
        elif kind == "reset" and self.release_held(t):
            self.last_activity = t
        return False

    def ended(self, t: float, silence_s: float) -> bool:
        """A phrase was played and nothing has sounded for ``silence_s`` at time ``t``."""
        return (
            bool(self._notes)
            and not self.is_playing
            and self.last_activity is not None
            and t - self.last_activity >= silence_s
        )

    def take(self, t: float) -> list[CapturedNote]:
        """The phrase so far, sorted by onset; notes still sounding are cut at ``t``.  Clears."""
        for onset, velocity, pitch in [
            (on, vel, key[1]) for key, (on, vel) in (*self._held.items(), *self._sustained.items())
        ]:
            self._add(pitch, onset, t, velocity)
        notes = sorted(self._notes, key=lambda n: (n.onset_s, n.pitch))
        self.clear()
        return notes

    def settled(self) -> list[CapturedNote]:
        """The notes of the phrase so far that can no longer change, sorted by onset: every
        onset group before the newest one and before any note still sounding (a group's
        duration is known once all its notes ended; the newest may still gain a note).  Does
        not clear.  The engine primes the model with them while the musician plays."""
        sounding = [onset for onset, _ in (*self._held.values(), *self._sustained.values())]
        newest = max((n.onset_s for n in self._notes), default=None)
        if newest is None:
            return []
        newest = max([newest, *sounding])
        cutoff = min([newest, *sounding])
        return sorted(
            (n for n in self._notes if n.onset_s < cutoff), key=lambda n: (n.onset_s, n.pitch)
        )

    def clear(self) -> None:
        """Forget the phrase (pedal state is kept: it is still down or up)."""
        self._notes.clear()
        self._held.clear()
        self._sustained.clear()
        self._chord_onset = None

    def reset(self) -> None:
        """Forget everything, pedals and last activity included (the input port was lost)."""
        self.clear()
        self._pedal.clear()
        self.last_activity = None

    def held_since(self) -> float | None:
        """Since when the newest key has been down, or the newest pedal that still holds a note
        (None: neither) — a pedal-up lost on the wire holds the phrase open as a lost note-off
        does, so a pedal down that long counts as stuck too."""
        onsets = [onset for onset, _ in self._held.values()]
        onsets += [
            self._pedal.get(channel, onset) for (channel, _), (onset, _) in self._sustained.items()
        ]
        return max(onsets) if onsets else None

    def release_held(self, t: float) -> int:
        """End every key still down and every pedalled note at ``t``, lift every pedal; returns
        how many notes were ended (their note-offs were lost, or a reset asked for it)."""
        ended = 0
        for table in (self._held, self._sustained):
            for (_, pitch), (onset, velocity) in table.items():
                self._add(pitch, onset, max(t, onset), velocity)
                ended += 1
            table.clear()
        self._pedal.clear()
        return ended

    # ----- internals ---------------------------------------------------------------------------
    def _note_on(self, channel: int, pitch: int, velocity: int, t: float) -> None:
        self.last_activity = t
        key = (channel, pitch)
        for table in (self._held, self._sustained):
            if key in table:  # re-struck while still sounding: end the old one here
                onset, vel = table.pop(key)
                self._add(pitch, onset, t, vel)
        onset = t
        if self._chord_onset is not None and 0 <= t - self._chord_onset <= self.chord_window_s:
            onset = self._chord_onset
        else:
            self._chord_onset = t
        self._held[key] = (onset, velocity)

    def _note_off(self, channel: int, pitch: int, t: float) -> None:
        key = (channel, pitch)
        if key not in self._held:
            return
        self.last_activity = t
        onset, velocity = self._held.pop(key)
        if channel in self._pedal:
            self._sustained[key] = (onset, velocity)
        else:
            self._add(pitch, onset, t, velocity)

    def _all_notes_off(self, channel: int, t: float, *, sound_off: bool) -> None:
        for key in [k for k in self._held if k[0] == channel]:
            self._note_off(channel, key[1], t)
        if sound_off:
            for key in [k for k in self._sustained if k[0] == channel]:
                onset, velocity = self._sustained.pop(key)
                self._add(key[1], onset, t, velocity)
                self.last_activity = t

    def _pedal_change(self, channel: int, down: bool, t: float) -> None:
        if down:
            self._pedal.setdefault(channel, t)
            return
        self._pedal.pop(channel, None)
        for key in [k for k in self._sustained if k[0] == channel]:
            onset, velocity = self._sustained.pop(key)
            self._add(key[1], onset, t, velocity)
            self.last_activity = t

    def _add(self, pitch: int, onset: float, end: float, velocity: int) -> None:
        self._notes.append(CapturedNote(pitch, onset, max(0.0, end - onset), velocity))


def quantize_call(
    notes: list[CapturedNote], scheme: TokenScheme, tempo: TempoTracker
) -> list[Note]:
    """Snap captured notes to the model grid at the tempo map's beats.

    Onsets are quantized on the absolute beat grid (so syncopation survives) and shifted so the
    first note's grid step is 0; durations are measured in beats through the tempo map.
    """
    if not notes:
        return []
    timed = []
    for n in notes:
        onset = tempo.beat_at(n.onset_s)
        duration = tempo.beat_at(n.onset_s + n.duration_s) - onset
        timed.append((onset, n.pitch, duration, n.velocity))
    first = min(onset for onset, *_ in timed)
    origin = round(first * scheme.steps_per_beat) / scheme.steps_per_beat
    return scheme.quantize(timed, origin=origin)
