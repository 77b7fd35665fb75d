"""The token scheme: quantized notes ⇄ events ⇄ integer tokens.

Why one token stream with four tokens per event (and not one step with four
output heads): an event is ``SHIFT → PITCHES → DURATION → VELOCITY``.  Emitting
the attributes one after another lets the model condition the duration on the
chord it just chose and the velocity on both, which separate heads sampled
independently cannot do; it keeps the exported graph to one integer input and
one logits output; and the Markov baselines score exactly the same tokens.  A
step costs ~0.2 ms, so four steps per event are cheap.  A grammar mask
(:meth:`TokenScheme.allowed`) keeps sampling on the ``SHIFT PITCHES DUR VEL``
cycle, so decoding generated tokens can never fail.

Grammar (``BOS`` starts a sequence)::

    sequence := BOS event*
    event    := SHIFT_s ( PITCHES_p DUR_d VEL_v | REST )

* ``SHIFT_s`` — grid steps from the previous event's onset (from the phrase
  start for the first event), ``0 ≤ s ≤ max_shift``.  Longer gaps are
  bridged by ``SHIFT_max REST`` events.
* ``PITCHES_p`` — one MIDI note (all 128 always in the vocabulary) or a chord
  with real octaves from the vocabulary learned from the corpus.  A chord not
  in the vocabulary is played as its single notes at shift 0, so every phrase
  is representable and the round trip stays exact.
* ``DUR_d`` — duration in grid steps, ``1 ≤ d ≤ max_duration``.
* ``VEL_v`` — velocity bucket, ``0 ≤ v < velocity_buckets``.

Notes that start on the same grid step with the same duration and velocity
bucket form one chord event; notes that differ in duration or velocity become
separate events at shift 0.  Pure Python + numpy: the bridge decodes this on
the realtime path.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from bridge.errors import TokenError

__all__ = [
    "TOKEN_SCHEME_VERSION",
    "Decoder",
    "Event",
    "Kind",
    "Note",
    "TokenScheme",
    "close_gaps",
]

TOKEN_SCHEME_VERSION = 1
"""Bumped whenever the meaning of a token changes; stored in every model file."""


@dataclass(frozen=True, order=True)
class Note:
    """A quantized note, times in grid steps from the phrase start; checked when built."""

    onset: int
    pitch: int
    duration: int
    velocity: int = 80

    def __post_init__(self) -> None:
        for name in ("onset", "pitch", "duration", "velocity"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"Note.{name} must be an int, got {type(value).__name__}")
        if self.onset < 0:
            raise ValueError(f"Note.onset must be >= 0, got {self.onset}")
        if not 0 <= self.pitch <= 127:
            raise ValueError(f"Note.pitch must be 0..127, got {self.pitch}")
        if self.duration < 1:
            raise ValueError(f"Note.duration must be >= 1 step, got {self.duration}")
        if not 1 <= self.velocity <= 127:
            raise ValueError(f"Note.velocity must be 1..127, got {self.velocity}")


@dataclass(frozen=True)
class Event:
    """One step of the music: a note or chord (no ``pitches``: a rest) ``shift`` steps on."""

    shift: int
    pitches: tuple[int, ...]
    duration: int = 0
    velocity_bucket: int = 0

    @property
    def is_rest(self) -> bool:
        return not self.pitches


class Kind(IntEnum):
    """Token classes, in the order the grammar cycles through them."""

    BOS = 0
    SHIFT = 1
    PITCHES = 2  # a note or a chord
    REST = 3
    DURATION = 4
    VELOCITY = 5


@dataclass(frozen=True)
class TokenScheme:
    """Grid, ranges and chord vocabulary; round-trips through JSON into the model file.

    Token layout: ``BOS | SHIFT_0..max_shift | REST | NOTE_0..127 | CHORD_* | DUR_1..max_duration |
    VEL_0..velocity_buckets-1``.
    """

    steps_per_beat: int = 4
    max_shift: int = 32
    max_duration: int = 32
    velocity_buckets: int = 8
    chords: tuple[tuple[int, ...], ...] = ()
    version: int = TOKEN_SCHEME_VERSION
    _chord_index: dict[tuple[int, ...], int] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.version != TOKEN_SCHEME_VERSION:
            raise TokenError(
                f"token scheme version {self.version} is not supported "
                f"(this Antiphon reads version {TOKEN_SCHEME_VERSION})"
            )
        for name, low in (
            ("steps_per_beat", 1),
            ("max_shift", 1),
            ("max_duration", 1),
            ("velocity_buckets", 1),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"TokenScheme.{name} must be an int")
            if value < low:
                raise TokenError(f"TokenScheme.{name} must be >= {low}, got {value}")
        if self.velocity_buckets > 127:
            raise TokenError("TokenScheme.velocity_buckets must be <= 127")
        chords = tuple(tuple(int(p) for p in c) for c in self.chords)
        for chord in chords:
            if (
                len(chord) < 2
                or list(chord) != sorted(set(chord))
                or not all(0 <= p <= 127 for p in chord)
            ):
                raise TokenError(f"chord {chord} must be >= 2 distinct sorted MIDI pitches")
        object.__setattr__(self, "chords", chords)
        index = {chord: i for i, chord in enumerate(chords)}
        if len(index) != len(chords):
            raise TokenError("chord vocabulary has duplicates")
        object.__setattr__(self, "_chord_index", index)

    # ----- layout -------------------------------------------------------------------------
    @property
    def bos(self) -> int:
        return 0

    @property
    def shift_base(self) -> int:
        return 1

    @property
    def rest(self) -> int:
        return self.shift_base + self.max_shift + 1

    @property
    def note_base(self) -> int:
        return self.rest + 1

    @property
    def chord_base(self) -> int:
        return self.note_base + 128

    @property
    def duration_base(self) -> int:
        return self.chord_base + len(self.chords)

    @property
    def velocity_base(self) -> int:
        return self.duration_base + self.max_duration

    @property
    def vocab_size(self) -> int:
        return self.velocity_base + self.velocity_buckets

    def kind(self, token: int) -> Kind:
        """Which class a token id belongs to; :class:`TokenError` if out of range."""
        if token == self.bos:
            return Kind.BOS
        if self.shift_base <= token < self.rest:
            return Kind.SHIFT
        if token == self.rest:
            return Kind.REST
        if self.note_base <= token < self.duration_base:
            return Kind.PITCHES
        if self.duration_base <= token < self.velocity_base:
            return Kind.DURATION
        if self.velocity_base <= token < self.vocab_size:
            return Kind.VELOCITY
        raise TokenError(f"token {token} is outside the vocabulary (size {self.vocab_size})")

    # ----- token ⇄ value ------------------------------------------------------------------
    def shift_token(self, steps: int) -> int:
        if not 0 <= steps <= self.max_shift:
            raise TokenError(f"shift {steps} outside 0..{self.max_shift}")
        return self.shift_base + steps

    def pitches_token(self, pitches: Sequence[int]) -> int | None:
        """Token of a note or known chord; ``None`` for a chord outside the vocabulary."""
        if len(pitches) == 1:
            return self.note_base + int(pitches[0])
        index = self._chord_index.get(tuple(sorted(pitches)))
        return None if index is None else self.chord_base + index

    def duration_token(self, steps: int) -> int:
        if not 1 <= steps <= self.max_duration:
            raise TokenError(f"duration {steps} outside 1..{self.max_duration}")
        return self.duration_base + steps - 1

    def velocity_token(self, bucket: int) -> int:
        if not 0 <= bucket < self.velocity_buckets:
            raise TokenError(f"velocity bucket {bucket} outside 0..{self.velocity_buckets - 1}")
        return self.velocity_base + bucket

    def token_value(self, token: int) -> int | tuple[int, ...] | None:
        """The value a token carries: steps, pitches, bucket; ``None`` for BOS and REST."""
        kind = self.kind(token)
        if kind is Kind.SHIFT:
            return token - self.shift_base
        if kind is Kind.PITCHES:
            if token < self.chord_base:
                return (token - self.note_base,)
            return self.chords[token - self.chord_base]
        if kind is Kind.DURATION:
            return token - self.duration_base + 1
        if kind is Kind.VELOCITY:
            return token - self.velocity_base
        return None

    # ----- velocity buckets -----------------------------------------------------------------
    def velocity_bucket(self, velocity: int) -> int:
        """Bucket of a MIDI velocity 1..127 (values outside are clamped)."""
        v = min(127, max(1, int(velocity)))
        return min(self.velocity_buckets - 1, (v - 1) * self.velocity_buckets // 127)

    def bucket_velocity(self, bucket: int) -> int:
        """The velocity that stands for a bucket (its centre); maps back to the same bucket."""
        low = -(-bucket * 127 // self.velocity_buckets) + 1
        high = -(-(bucket + 1) * 127 // self.velocity_buckets)
        return max(1, min(127, (low + high) // 2))

    # ----- quantization -----------------------------------------------------------------------
    def quantize(
        self, notes: Iterable[tuple[float, int, float, int]], *, origin: float | None = None
    ) -> list[Note]:
        """Snap ``(onset_beats, pitch, duration_beats, velocity)`` to the grid.

        Onsets are measured from ``origin`` (default: the earliest onset, so a phrase starts at 0).
        Durations are clamped to ``1..max_duration`` steps, velocities to their bucket centre, and
        duplicates (same pitch, same step) keep the longest.  The result is what
        :meth:`encode` / :meth:`decode` reproduce exactly.
        """
        items = list(notes)
        if not items:
            return []
        start = min(n[0] for n in items) if origin is None else origin
        best: dict[tuple[int, int], Note] = {}
        for onset_beats, pitch, duration_beats, velocity in items:
            if not 0 <= int(pitch) <= 127:
                continue
            onset = max(0, round((onset_beats - start) * self.steps_per_beat))
            duration = min(self.max_duration, max(1, round(duration_beats * self.steps_per_beat)))
            vel = self.bucket_velocity(self.velocity_bucket(velocity))
            note = Note(onset=onset, pitch=int(pitch), duration=duration, velocity=vel)
            key = (onset, note.pitch)
            if key not in best or best[key].duration < duration:
                best[key] = note
        return sorted(best.values())

    # ----- notes ⇄ events ---------------------------------------------------------------------
    def events_from_notes(self, notes: Iterable[Note]) -> list[Event]:
        """Group quantized notes into events (see the module docstring); never raises on content."""
        groups: dict[tuple[int, int, int], list[int]] = {}
        for n in notes:
            duration = min(n.duration, self.max_duration)
            key = (n.onset, duration, self.velocity_bucket(n.velocity))
            groups.setdefault(key, []).append(n.pitch)
        events: list[Event] = []
        position = 0
        for onset, duration, bucket in sorted(groups):
            pitches = tuple(sorted(set(groups[(onset, duration, bucket)])))
            gap = onset - position
            while gap > self.max_shift:
                events.append(Event(shift=self.max_shift, pitches=()))
                gap -= self.max_shift
            known = self.pitches_token(pitches) is not None
            parts = [pitches] if known else [(p,) for p in pitches]
            for i, part in enumerate(parts):
                events.append(Event(gap if i == 0 else 0, part, duration, bucket))
            position = onset
        return events

    def notes_from_events(self, events: Iterable[Event], *, start: int = 0) -> list[Note]:
        """Lay events out on the grid from step ``start``; rests only advance time."""
        notes: set[Note] = set()
        position = start
        for event in events:
            position += event.shift
            if event.is_rest:
                continue
            velocity = self.bucket_velocity(event.velocity_bucket)
            for pitch in event.pitches:
                notes.add(Note(position, pitch, event.duration, velocity))
        return sorted(notes)

    # ----- events ⇄ tokens ---------------------------------------------------------------------
    def event_tokens(self, event: Event) -> list[int]:
        """The 2 (rest) or 4 tokens of one event; chords must be in the vocabulary."""
        if event.is_rest:
            return [self.shift_token(event.shift), self.rest]
        token = self.pitches_token(event.pitches)
        if token is None:
            raise TokenError(f"chord {event.pitches} is not in the vocabulary")
        return [
            self.shift_token(event.shift),
            token,
            self.duration_token(event.duration),
            self.velocity_token(event.velocity_bucket),
        ]

    def encode(self, notes: Iterable[Note], *, bos: bool = True) -> list[int]:
        """Quantized notes → token ids (with a leading BOS unless ``bos=False``)."""
        tokens = [self.bos] if bos else []
        for event in self.events_from_notes(notes):
            tokens.extend(self.event_tokens(event))
        return tokens

    def decode(self, tokens: Iterable[int]) -> list[Note]:
        """Token ids → notes; tokens out of grammar or range are skipped, never raised."""
        decoder = Decoder(self)
        return self.notes_from_events(e for e in map(decoder.feed, tokens) if e is not None)

    # ----- grammar ------------------------------------------------------------------------------
    def next_kinds(self, last: int | None) -> frozenset[Kind]:
        """Token classes allowed after ``last`` (``None``: start of a sequence)."""
        kind = Kind.VELOCITY if last is None else self.kind(last)
        if kind in (Kind.BOS, Kind.VELOCITY, Kind.REST):
            return frozenset({Kind.SHIFT})
        if kind is Kind.SHIFT:
            return frozenset({Kind.PITCHES, Kind.REST})
        if kind is Kind.PITCHES:
            return frozenset({Kind.DURATION})
        return frozenset({Kind.VELOCITY})

    def allowed(self, last: int | None) -> np.ndarray:
        """Boolean mask over the vocabulary of the tokens allowed after ``last``."""
        return self._masks()[tuple(sorted(self.next_kinds(last)))]

    def _masks(self) -> dict[tuple[Kind, ...], np.ndarray]:
        cached: dict[tuple[Kind, ...], np.ndarray] | None = self.__dict__.get("_mask_cache")
        if cached is None:
            kinds = np.array([self.kind(t) for t in range(self.vocab_size)])
            cached = {}
            for allowed in (
                {Kind.SHIFT},
                {Kind.PITCHES, Kind.REST},
                {Kind.DURATION},
                {Kind.VELOCITY},
            ):
                mask = np.isin(kinds, [int(k) for k in allowed])
                mask.setflags(write=False)
                cached[tuple(sorted(allowed))] = mask
            object.__setattr__(self, "_mask_cache", cached)
        return cached

    # ----- vocabulary and persistence -------------------------------------------------------------
    def with_chords_from(self, phrases: Iterable[Iterable[Note]], cap: int) -> TokenScheme:
        """A copy whose chord vocabulary is the ``cap`` most frequent chords in ``phrases``."""
        counts: Counter[tuple[int, ...]] = Counter()
        bare = TokenScheme(
            self.steps_per_beat, self.max_shift, self.max_duration, self.velocity_buckets
        )
        for notes in phrases:
            groups: dict[tuple[int, int, int], set[int]] = {}
            for n in notes:
                duration = min(n.duration, self.max_duration)
                key = (n.onset, duration, bare.velocity_bucket(n.velocity))
                groups.setdefault(key, set()).add(n.pitch)
            counts.update(tuple(sorted(g)) for g in groups.values() if len(g) > 1)
        chords = tuple(c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:cap])
        return TokenScheme(
            self.steps_per_beat, self.max_shift, self.max_duration, self.velocity_buckets, chords
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "steps_per_beat": self.steps_per_beat,
            "max_shift": self.max_shift,
            "max_duration": self.max_duration,
            "velocity_buckets": self.velocity_buckets,
            "chords": [list(c) for c in self.chords],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenScheme:
        try:
            return cls(
                steps_per_beat=int(data["steps_per_beat"]),
                max_shift=int(data["max_shift"]),
                max_duration=int(data["max_duration"]),
                velocity_buckets=int(data["velocity_buckets"]),
                chords=tuple(tuple(int(p) for p in c) for c in data["chords"]),
                version=int(data["version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, TokenError):
                raise
            raise TokenError(f"not a valid token scheme: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str) -> TokenScheme:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TokenError(f"token scheme is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise TokenError("token scheme JSON must be an object")
        return cls.from_dict(data)


def close_gaps(notes: Iterable[Note], max_gap: int, quantum: int = 1) -> list[Note]:
    """``notes`` by onset, every gap between consecutive onsets longer than ``max_gap`` steps
    shortened by whole multiples of ``quantum`` steps (to ``max_gap`` exactly when ``quantum`` is
    1); everything after a gap moves earlier with it.  Keeps a 2^28-beat silence in a hostile
    file from becoming millions of rest tokens (the corpus reader and call priming use it)."""
    if max_gap < 0 or quantum < 1:
        raise ValueError(f"max_gap must be >= 0 and quantum >= 1, got {max_gap}, {quantum}")
    closed: list[Note] = []
    cut = 0
    previous: int | None = None
    for note in sorted(notes):
        if previous is not None:
            excess = note.onset - previous - max_gap
            if excess > 0:
                cut += excess // quantum * quantum
        previous = note.onset
        closed.append(
            Note(note.onset - cut, note.pitch, note.duration, note.velocity) if cut else note
        )
    return closed


class Decoder:
    """Turns a token stream into events one token at a time (the generation worker calls it).

    Tokens that break the grammar or are out of range are counted in ``skipped`` and ignored,
    so a model can never make decoding fail.
    """

    def __init__(self, scheme: TokenScheme) -> None:
        self.scheme = scheme
        self.skipped = 0
        self._last: int | None = None
        self._parts: list[int] = []

    @property
    def last(self) -> int | None:
        """The last accepted token (what the grammar mask is conditioned on)."""
        return self._last

    def feed(self, token: int) -> Event | None:
        """Accept one token; returns an :class:`Event` when it completes one."""
        s = self.scheme
        try:
            kind = s.kind(int(token))
        except TokenError:
            self.skipped += 1
            return None
        if kind is Kind.BOS:
            self._last, self._parts = int(token), []
            return None
        if kind not in s.next_kinds(self._last):
            self.skipped += 1
            return None
        self._last = int(token)
        if kind is Kind.SHIFT:
            self._parts = [int(token)]
            return None
        if kind is Kind.REST:
            shift = int(s.token_value(self._parts[0]))  # type: ignore[arg-type]
            self._parts = []
            return Event(shift, ())
        self._parts.append(int(token))
        if kind is not Kind.VELOCITY:
            return None
        shift_t, pitches_t, dur_t, vel_t = self._parts
        self._parts = []
        pitches = s.token_value(pitches_t)
        assert isinstance(pitches, tuple)
        return Event(
            int(s.token_value(shift_t)),  # type: ignore[arg-type]
            pitches,
            int(s.token_value(dur_t)),  # type: ignore[arg-type]
            int(s.token_value(vel_t)),  # type: ignore[arg-type]
        )

    def feed_all(self, tokens: Iterable[int]) -> Iterator[Event]:
        for token in tokens:
            event = self.feed(token)
            if event is not None:
                yield event
