"""``--arch reference`` (once ``seed``): the reference network, for comparison only.

Reference tokenization (Classical-Piano-Composer style): one symbol per onset — a single note as
its pitch name with octave (``"C#4"``; spelled with sharps, since MIDI numbers carry no
spelling), several notes as their ``'.'``-joined sorted pitch classes (``"0.4.7"``: octaves
lost).  No durations, no rests, every symbol 0.5 beat after the last.  All pieces are
concatenated into one stream; a sample is a window of 100 symbols and its target is the next one.

Reference network: one-hot window of 100 → LSTM 512 (sequences) → Dropout 0.3 → LSTM 256 →
Dropout 0.3 → Dense softmax; Adam 1e-3, categorical cross-entropy (computed sparse: same value).
The one-hot encoding is a frozen identity embedding, so the exported graph takes integer ids.
Keras is imported inside the builders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bridge.errors import ConfigError
from bridge.tokens import Note

if TYPE_CHECKING:
    import keras

__all__ = [
    "STEP_BEATS",
    "UNKNOWN",
    "WINDOW",
    "ReferenceConfig",
    "ReferenceVocabulary",
    "build_reference",
    "compile_reference",
    "reference_symbols",
    "reference_windows",
]

WINDOW = 100
STEP_BEATS = 0.5
UNKNOWN = "<unk>"
_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(pitch: int) -> str:
    """MIDI number → ``"C#4"`` (middle C = C4)."""
    return f"{_NAMES[pitch % 12]}{pitch // 12 - 1}"


def reference_symbols(notes: Iterable[Note]) -> list[str]:
    """One symbol per distinct onset: a pitch name, or ``'.'``-joined pitch classes for a chord."""
    by_onset: dict[int, set[int]] = {}
    for note in notes:
        by_onset.setdefault(note.onset, set()).add(note.pitch)
    symbols = []
    for onset in sorted(by_onset):
        pitches = by_onset[onset]
        if len(pitches) == 1:
            symbols.append(pitch_name(next(iter(pitches))))
        else:
            symbols.append(".".join(str(pc) for pc in sorted({p % 12 for p in pitches})))
    return symbols


@dataclass(frozen=True)
class ReferenceVocabulary:
    """Sorted symbols of the training split; index 0 is ``<unk>`` for symbols never seen."""

    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.symbols or self.symbols[0] != UNKNOWN:
            raise ConfigError("reference vocabulary must start with <unk>")
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    @classmethod
    def from_streams(cls, streams: Iterable[Sequence[str]]) -> ReferenceVocabulary:
        seen = {s for stream in streams for s in stream}
        seen.discard(UNKNOWN)
        return cls((UNKNOWN, *sorted(seen)))

    @property
    def size(self) -> int:
        return len(self.symbols)

    def ids(self, symbols: Iterable[str]) -> np.ndarray:
        index: dict[str, int] = self.__dict__["_index"]
        return np.fromiter((index.get(s, 0) for s in symbols), np.int32)


def reference_windows(
    stream: np.ndarray, window: int = WINDOW, stride: int = 1, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs [n, window], targets [n])``: every ``stride``-th window from ``start``."""
    starts = np.arange(start, max(start, len(stream) - window), stride)
    index = starts[:, None] + np.arange(window)[None, :]
    return stream[index], stream[starts + window]


@dataclass(frozen=True)
class ReferenceConfig:
    """Sizes of the reference net (fixed by the paper; only the vocabulary varies)."""

    vocab_size: int
    window: int = WINDOW
    units: tuple[int, ...] = (512, 256)
    dropout: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": "reference",
            "vocab_size": self.vocab_size,
            "window": self.window,
            "units": list(self.units),
            "dropout": self.dropout,
        }


def build_reference(config: ReferenceConfig, dtype: str = "int32") -> keras.Model:
    """Window of ids ``[batch, window]`` → next-symbol probabilities ``[batch, vocab]``."""
    import keras
    from keras import layers

    window = keras.Input(shape=(config.window,), dtype=dtype, name="window")
    x = layers.Embedding(
        config.vocab_size,
        config.vocab_size,
        embeddings_initializer="identity",
        trainable=False,
        name="one_hot",
    )(window)
    x = layers.LSTM(config.units[0], return_sequences=True, name="lstm_0")(x)
    x = layers.Dropout(config.dropout, name="dropout_0")(x)
    x = layers.LSTM(config.units[1], name="lstm_1")(x)
    x = layers.Dropout(config.dropout, name="dropout_1")(x)
    probs = layers.Dense(config.vocab_size, activation="softmax", name="probs")(x)
    return keras.Model(window, probs, name="reference_seed")


def compile_reference(model: keras.Model, learning_rate: float = 1e-3) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=False,
    )
