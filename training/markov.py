"""Order-n Markov baselines over token ids, interpolated Witten-Bell smoothing.

``P_n(w | h) = (c(h, w) + T(h) · P_{n-1}(w | h')) / (c(h) + T(h))`` where ``h'`` drops the oldest
token of ``h``, ``T(h)`` is the number of distinct tokens seen after ``h``, and an unseen context
falls through to the lower order.  Order 0 is the add-one unigram, so every token keeps some
probability.  Contexts reaching before a stream's start are padded with ``pad`` (``BOS`` for the
Antiphon scheme).  Pure Python + numpy; the evaluation scores it on exactly the same tokens as the
LSTM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from bridge.errors import ConfigError

__all__ = ["MarkovModel"]


class MarkovModel:
    """N-gram counts of one order and all lower ones; :meth:`distribution` gives ``P(· | h)``."""

    def __init__(self, order: int, vocab_size: int, *, pad: int = 0) -> None:
        if order < 0:
            raise ConfigError(f"Markov order must be >= 0, got {order}")
        if vocab_size < 1:
            raise ConfigError(f"vocabulary size must be >= 1, got {vocab_size}")
        self.order = order
        self.vocab_size = vocab_size
        self.pad = pad
        self._unigram = np.ones(vocab_size, np.float64)  # add-one
        self._counts: list[dict[tuple[int, ...], dict[int, int]]] = [{} for _ in range(order + 1)]
        self._tables: list[dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, int, int]]] = []

    def fit(self, streams: Iterable[Sequence[int] | np.ndarray]) -> MarkovModel:
        """Count every target position ``t >= 1`` of every stream with its contexts."""
        for stream in streams:
            tokens = [int(t) for t in stream]
            padded = [self.pad] * self.order + tokens
            for t in range(1, len(tokens)):
                target = tokens[t]
                self._unigram[target] += 1
                end = t + self.order  # index of target in padded
                for n in range(1, self.order + 1):
                    context = tuple(padded[end - n : end])
                    row = self._counts[n].setdefault(context, {})
                    row[target] = row.get(target, 0) + 1
        self._tables = [{} for _ in range(self.order + 1)]
        for n in range(1, self.order + 1):
            for context, row in self._counts[n].items():
                ids = np.fromiter(row.keys(), np.int64, len(row))
                counts = np.fromiter(row.values(), np.float64, len(row))
                self._tables[n][context] = (ids, counts, int(counts.sum()), len(row))
        return self

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """``P(next | context)`` over the vocabulary (sums to 1); ``context`` is oldest first."""
        padded = [self.pad] * self.order + [int(t) for t in context]
        p = self._unigram / self._unigram.sum()
        for n in range(1, self.order + 1):
            entry = self._tables[n].get(tuple(padded[len(padded) - n :])) if self._tables else None
            if entry is None:
                continue
            ids, counts, total, types = entry
            p = p * (types / (total + types))
            p[ids] += counts / (total + types)
        return p

    def stream_distributions(self, stream: Sequence[int] | np.ndarray) -> np.ndarray:
        """``[len(stream) - 1, vocab]``: row ``t`` predicts ``stream[t + 1]`` from its past."""
        tokens = [int(t) for t in stream]
        out = np.empty((max(0, len(tokens) - 1), self.vocab_size), np.float64)
        for t in range(len(tokens) - 1):
            out[t] = self.distribution(tokens[max(0, t + 1 - self.order) : t + 1])
        return out
