"""The call's key and register, and the logit bias that keeps an answer in that key.

:func:`estimate_key` is the Krumhansl-Schmuckler estimate: the call's pitch classes weighted by
duration, correlated with the 24 rotated Krumhansl-Kessler profiles; the best correlation wins.
:func:`parse_key` reads ``C``, ``F#m``, ``Bb``, ``ebm``… (``m`` = minor).  :func:`key_bias` turns a
key and a lock strength ``0..1`` into an additive bias over a model's vocabulary: ``0`` changes
nothing, ``1`` forbids pitches outside the scale, in between out-of-scale notes (and chords
holding one) get ``log(1 − lock)``.  :func:`register_bias` pulls an answer towards the call's
range; :func:`register_shift` is the octave shift that puts an answer's mean pitch nearest the
call's.  Pure numpy; called by the engine's control path (when a
call ends) and by ``antiphon continue``, never in an audio callback.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from bridge.tokens import Note, TokenScheme

__all__ = [
    "MAJOR_PROFILE",
    "MINOR_PROFILE",
    "NAMES",
    "Key",
    "estimate_key",
    "in_key_share",
    "key_bias",
    "mean_pitch",
    "parse_key",
    "pitch_class_weights",
    "register_bias",
    "register_shift",
]

REGISTER_MARGIN = 5
"""Semitones beyond the call's lowest and highest note that stay unbiased."""
REGISTER_SLOPE = 0.35
"""Logit penalty per semitone further out (a note an octave past the margin: about −4)."""

MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
"""Krumhansl & Kessler (1982) probe-tone ratings, tonic first."""

NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_KEY_TEXT = re.compile(r"^([A-Ga-g])([#b]?)(m|min|minor|maj|major)?$")
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor plus the leading tone


@dataclass(frozen=True)
class Key:
    """A tonic pitch class ``0..11`` (C = 0) and a mode; ``str(key)`` is ``"F#m"``-style."""

    tonic: int
    minor: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.tonic, bool) or not isinstance(self.tonic, int):
            raise TypeError("Key.tonic must be an int")
        if not 0 <= self.tonic <= 11:
            raise ValueError(f"Key.tonic must be 0..11, got {self.tonic}")

    def __str__(self) -> str:
        return NAMES[self.tonic] + ("m" if self.minor else "")

    @property
    def scale(self) -> frozenset[int]:
        """Pitch classes counted as in the key (minor: natural minor + leading tone)."""
        steps = _MINOR_SCALE if self.minor else _MAJOR_SCALE
        return frozenset((self.tonic + s) % 12 for s in steps)


def parse_key(text: str) -> Key:
    """``"C"``, ``"F#m"``, ``"Bb"``, ``"ebm"``, ``"A minor"`` → :class:`Key`; ``ValueError`` names
    the text otherwise (``auto`` is the caller's business)."""
    if not isinstance(text, str):
        raise TypeError(f"a key must be a str, got {type(text).__name__}")
    match = _KEY_TEXT.match(text.strip().replace(" ", ""))
    if match is None:
        raise ValueError(f"not a key: {text!r} (expected e.g. C, F#m, Bb, auto)")
    letter, accidental, mode = match.groups()
    tonic = _LETTERS[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]
    return Key(tonic % 12, minor=mode in ("m", "min", "minor"))


def pitch_class_weights(notes: Iterable[Note]) -> np.ndarray:
    """Duration-weighted pitch-class histogram (12 floats, not normalised)."""
    weights = np.zeros(12)
    for note in notes:
        weights[note.pitch % 12] += max(1, note.duration)
    return weights


def _profiles() -> np.ndarray:
    rows = [np.roll(MAJOR_PROFILE, t) for t in range(12)]
    rows += [np.roll(MINOR_PROFILE, t) for t in range(12)]
    return np.array(rows)


_PROFILES = _profiles()


def estimate_key(notes: Iterable[Note]) -> Key | None:
    """The Krumhansl-Schmuckler key of ``notes``; ``None`` without notes or with one pitch class
    only weighted (a correlation needs spread).  Ties go to the first of C..B major, then minor."""
    weights = pitch_class_weights(notes)
    if np.count_nonzero(weights) < 2:
        return None
    centred = weights - weights.mean()
    profiles = _PROFILES - _PROFILES.mean(axis=1, keepdims=True)
    scores = profiles @ centred / (np.linalg.norm(profiles, axis=1) * np.linalg.norm(centred))
    best = int(np.argmax(scores))
    return Key(best % 12, minor=best >= 12)


def in_key_share(notes: Sequence[Note], key: Key) -> float:
    """Share of ``notes`` (by count) whose pitch class is in ``key``'s scale; NaN without notes."""
    if not notes:
        return math.nan
    scale = key.scale
    return sum(n.pitch % 12 in scale for n in notes) / len(notes)


def key_bias(scheme: TokenScheme, key: Key | None, lock: float) -> np.ndarray | None:
    """Additive logit bias over ``scheme``'s vocabulary, or ``None`` when it would change nothing
    (no key, or ``lock`` 0).  Out-of-scale notes, and chords holding one, get ``log(1 − lock)``
    (``-inf`` at 1); every other token 0.  Cached per (scheme, key, lock); read-only."""
    if not (isinstance(lock, (int, float)) and 0.0 <= lock <= 1.0):
        raise ValueError(f"key lock must be in 0..1, got {lock!r}")
    if key is None or lock == 0:
        return None
    return _key_bias(scheme, key, float(lock))


@lru_cache(maxsize=64)
def _key_bias(scheme: TokenScheme, key: Key, lock: float) -> np.ndarray:
    penalty = -math.inf if lock >= 1 else math.log1p(-lock)
    outside = np.array([p % 12 not in key.scale for p in range(128)])
    bias = np.zeros(scheme.vocab_size)
    bias[scheme.note_base : scheme.note_base + 128][outside] = penalty
    for index, chord in enumerate(scheme.chords):
        if outside[list(chord)].any():
            bias[scheme.chord_base + index] = penalty
    bias.flags.writeable = False
    return bias


def register_bias(
    scheme: TokenScheme,
    call: Sequence[Note],
    *,
    margin: int = REGISTER_MARGIN,
    slope: float = REGISTER_SLOPE,
) -> np.ndarray | None:
    """Additive logit bias that keeps an answer near the call's register: a note ``d`` semitones
    beyond the call's range widened by ``margin`` gets ``−slope·d``; a chord, its notes' mean.
    ``None`` without a call.  Cached per (scheme, range); read-only."""
    if not call:
        return None
    low = min(n.pitch for n in call) - margin
    high = max(n.pitch for n in call) + margin
    return _register_bias(scheme, low, high, float(slope))


@lru_cache(maxsize=256)
def _register_bias(scheme: TokenScheme, low: int, high: int, slope: float) -> np.ndarray:
    pitches = np.arange(128)
    pull = -slope * np.maximum(0, np.maximum(low - pitches, pitches - high))
    bias = np.zeros(scheme.vocab_size)
    bias[scheme.note_base : scheme.note_base + 128] = pull
    for index, chord in enumerate(scheme.chords):
        bias[scheme.chord_base + index] = float(np.mean(pull[list(chord)]))
    bias.flags.writeable = False
    return bias


def mean_pitch(notes: Iterable[Note]) -> float | None:
    """Mean MIDI pitch of ``notes`` (each note once); ``None`` without notes."""
    pitches = [n.pitch for n in notes]
    return sum(pitches) / len(pitches) if pitches else None


def register_shift(call: Sequence[Note], answer: Sequence[Note]) -> int:
    """Whole octaves (in semitones) to move ``answer`` by so that its mean pitch lies nearest the
    call's while every note stays in MIDI 0..127; 0 when either is empty."""
    target, current = mean_pitch(call), mean_pitch(answer)
    if target is None or current is None:
        return 0
    low = min(n.pitch for n in answer)
    high = max(n.pitch for n in answer)
    options = [12 * k for k in range(-10, 11) if low + 12 * k >= 0 and high + 12 * k <= 127]
    return min(options, key=lambda s: (abs(current + s - target), abs(s)), default=0)
