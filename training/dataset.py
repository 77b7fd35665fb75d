"""Pieces → held-out split → chord vocabulary → token streams → training windows.

The split is by piece and deterministic: pieces sorted by path, every ``every``-th one (the 10th,
20th, …) held out, as in the reference measurements.  The chord vocabulary is learned from the
training split only (after augmentation, so transposed chords are in it too), and the held-out
pieces are tokenized with it: a chord outside it becomes its single notes, never an error.
Windows cut the concatenated training stream (each piece starts with ``BOS``) into
``[window]``-long inputs whose targets are the same tokens shifted by one, so every position
predicts its next token.  No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bridge.errors import ConfigError
from bridge.tokens import Note, TokenScheme
from training.corpus import Piece

__all__ = [
    "Dataset",
    "Split",
    "build_dataset",
    "concat",
    "split_pieces",
    "transpose",
    "transpose_windows",
    "transposition_table",
    "windows",
]


@dataclass(frozen=True)
class Split:
    """Training and held-out pieces (disjoint, both sorted by name)."""

    train: tuple[Piece, ...]
    held_out: tuple[Piece, ...]
    every: int

    def summary(self) -> dict[str, Any]:
        return {
            "method": f"pieces sorted by path, every {self.every}th held out",
            "train_pieces": len(self.train),
            "held_out_pieces": len(self.held_out),
        }


def split_pieces(pieces: Sequence[Piece], every: int = 10) -> Split:
    """Hold out pieces ``every-1, 2*every-1, …`` of the name-sorted list (none if fewer)."""
    if every < 2:
        raise ConfigError(f"held-out split needs every >= 2, got {every}")
    ordered = sorted(pieces, key=lambda p: p.name)
    held = tuple(p for i, p in enumerate(ordered) if i % every == every - 1)
    train = tuple(p for i, p in enumerate(ordered) if i % every != every - 1)
    return Split(train, held, every)


def transpose(notes: Sequence[Note], semitones: int) -> tuple[Note, ...]:
    """``notes`` moved by ``semitones``; notes pushed outside MIDI 0..127 are dropped."""
    return tuple(
        Note(n.onset, n.pitch + semitones, n.duration, n.velocity)
        for n in notes
        if 0 <= n.pitch + semitones <= 127
    )


def transposition_table(scheme: TokenScheme, semitones: int) -> np.ndarray:
    """``table[k, token]``: ``token`` moved by ``k - semitones`` semitones, or −1 where it cannot
    move (a note leaving MIDI 0..127, a chord whose transposition is not in the vocabulary).

    Tokens that carry no pitch map to themselves.  Row ``semitones`` is the identity.
    """
    if not 0 <= semitones <= 12:
        raise ConfigError(f"transposition must be 0..12 semitones, got {semitones}")
    tokens = np.arange(scheme.vocab_size, dtype=np.int32)
    table = np.tile(tokens, (2 * semitones + 1, 1))
    chord_ids = {chord: scheme.chord_base + i for i, chord in enumerate(scheme.chords)}
    for row, shift in enumerate(range(-semitones, semitones + 1)):
        pitch = np.arange(128) + shift
        moved = np.where((pitch >= 0) & (pitch <= 127), scheme.note_base + pitch, -1)
        table[row, scheme.note_base : scheme.note_base + 128] = moved
        for chord, token in chord_ids.items():
            table[row, token] = chord_ids.get(tuple(p + shift for p in chord), -1)
    return table


def transpose_windows(
    x: np.ndarray, y: np.ndarray, table: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each window (row of ``x`` and its targets ``y``) moved by its own random shift, drawn
    uniformly from the shifts of ``table`` that keep every token of that window valid.

    The identity shift is always valid, so every window gets one.  The numpy twin of the
    TensorFlow map in :mod:`training.train` (which tests compare against).
    """
    rows = table[:, x]  # [shifts, n, length]
    targets = table[:, y]
    valid: np.ndarray = np.all((rows >= 0) & (targets >= 0), axis=2)  # [shifts, n]
    choice = np.empty(len(x), np.int64)
    for i in range(len(x)):
        choice[i] = rng.choice(np.flatnonzero(valid[:, i]))
    index = np.arange(len(x))
    return rows[choice, index], targets[choice, index]


@dataclass(frozen=True)
class Dataset:
    """Token streams ready for training and evaluation, with the scheme that made them."""

    scheme: TokenScheme
    split: Split
    train: tuple[np.ndarray, ...]  # one int32 stream per (augmented) training piece
    held_out: tuple[np.ndarray, ...]  # one per held-out piece, never augmented
    augment: int

    def summary(self) -> dict[str, Any]:
        return {
            **self.split.summary(),
            "augment_semitones": self.augment,
            "train_tokens": int(sum(len(t) for t in self.train)),
            "held_out_tokens": int(sum(len(t) for t in self.held_out)),
            "held_out_events": int(sum(count_events(self.scheme, t) for t in self.held_out)),
            "vocab_size": self.scheme.vocab_size,
            "chords": len(self.scheme.chords),
        }


def count_events(scheme: TokenScheme, tokens: np.ndarray) -> int:
    """Events in a token stream = its SHIFT tokens."""
    return int(np.count_nonzero((tokens >= scheme.shift_base) & (tokens < scheme.rest)))


def build_dataset(
    pieces: Sequence[Piece],
    base: TokenScheme,
    *,
    chord_cap: int = 512,
    augment: int = 0,
    every: int = 10,
    scheme: TokenScheme | None = None,
) -> Dataset:
    """Split, learn the chord vocabulary (unless ``scheme`` is given) and tokenize.

    ``augment=k`` adds every training piece transposed by ``-k..+k`` semitones.
    """
    if chord_cap < 0:
        raise ConfigError(f"chord cap must be >= 0, got {chord_cap}")
    if augment < 0 or augment > 12:
        raise ConfigError(f"augmentation must be 0..12 semitones, got {augment}")
    split = split_pieces(pieces, every)
    if not split.train:
        raise ConfigError("no training pieces left after the held-out split")
    shifts = [0, *(s for k in range(1, augment + 1) for s in (k, -k))]
    phrases = [p.notes if s == 0 else transpose(p.notes, s) for p in split.train for s in shifts]
    phrases = [p for p in phrases if p]
    if scheme is None:
        scheme = base.with_chords_from(phrases, chord_cap)
    train = tuple(np.asarray(scheme.encode(p), np.int32) for p in phrases)
    held = tuple(np.asarray(scheme.encode(p.notes), np.int32) for p in split.held_out)
    return Dataset(scheme, split, train, held, augment)


def concat(streams: Sequence[np.ndarray]) -> np.ndarray:
    """All streams back to back (each already starts with ``BOS``)."""
    return np.concatenate(streams).astype(np.int32) if streams else np.zeros(0, np.int32)


def windows(
    stream: np.ndarray, length: int, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)`` of shape ``[n, length]``: ``targets[i, t] = stream[start_i + t + 1]``.

    Windows start every ``stride`` tokens (default ``length``); a tail shorter than a window is
    dropped.  Streams shorter than one window give zero windows.
    """
    if length < 1:
        raise ConfigError(f"window must be >= 1 token, got {length}")
    step = stride or length
    count = max(0, (len(stream) - 1 - length) // step + 1)
    starts = np.arange(count) * step
    index = starts[:, None] + np.arange(length)[None, :]
    return stream[index], stream[index + 1]
