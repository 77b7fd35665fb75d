"""Prime the LSTM with the call while the musician is still playing it.

Priming runs the call's tokens through the model to get the state the answer starts from.  Done
at the phrase end, it delays the first note by the whole call's inference (10–40 ms for a
64-event call with the shipped models).  :class:`PrimedStates` keeps the state after every event
of the call so far: the engine hands it the settled part of the call as it is played
(:meth:`bridge.phrase.PhraseCapture.settled`), the generation worker extends the chain while it
has nothing else to do, and at the phrase end only the events after the longest prefix already
run remain.

The model always runs one event per call, from the BOS on, whether a prefix came from the
cache or not: the floats (and so a seeded answer) never depend on when the primes happened.

With ``score=True`` the chain also keeps the call's negative log-likelihood under each model
(:attr:`Primed.nll`): :class:`bridge.follow.Follower` answers a chordal call with the chordal model
that finds it least surprising.

Threads: one user at a time (the generation worker, the engine's control thread for the
follower's scores; offline callers own theirs).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bridge.model import LstmModel, State
from bridge.sampling import mask_table

__all__ = ["MAX_MODELS", "Primed", "PrimedStates", "run_chunks"]

MAX_MODELS = 4
"""Models whose chains are kept (the shipped ones and one swapped in)."""

Chunk = tuple[int, ...]
"""The tokens of one event (or the BOS alone)."""


@dataclass(frozen=True)
class Primed:
    """The model after a call: the last logits, the state, and how it was reached."""

    logits: np.ndarray
    state: State
    reused: int  # chunks (BOS and events) taken from the chain, not run now
    ran: int  # chunks run now
    seconds: float  # inference time spent now
    nll: float = float("nan")  # nats, every token after the BOS (NaN unless scored)


After = tuple[np.ndarray, State, float]
"""Last logits, state and the tokens' negative log-likelihood so far, after a chunk."""


def run_chunks(
    model: LstmModel,
    chunks: Sequence[Chunk],
    start: After | None = None,
    *,
    score: bool = False,
) -> list[After]:
    """Run ``chunks`` one model call each after ``start`` (None: the initial state, so the first
    chunk is the BOS); returns ``(last logits, state, nll)`` after each chunk.  With ``score`` the
    nll adds each token's negative log-probability (nats) among the tokens the grammar allows
    there, given everything before it; without, it is NaN."""
    masks = mask_table(model.scheme) if score else ()
    if start is None:
        previous, state, nll = None, model.initial_state(), (0.0 if score else math.nan)
    else:
        previous, state, nll = start
    out = []
    for chunk in chunks:
        logits, state = model.run(list(chunk), state)
        if score:
            # The logits before each token: the previous chunk's last, then this chunk's own.  A
            # chunk starts on an event boundary, where the grammar allows what it allows after
            # the BOS (a SHIFT).
            befores = [previous, *logits[:-1]]
            for index, token in enumerate(chunk):
                before = befores[index]
                if before is not None:
                    last = chunk[index - 1] if index else model.scheme.bos
                    nll += _surprise(before, masks[last], token)
        previous = logits[-1]
        out.append((previous, state, nll))
    return out


def _surprise(logits: np.ndarray, allowed: np.ndarray, token: int) -> float:
    """−log p(token) under softmax(logits) restricted to the ``allowed`` tokens (nats)."""
    scores = np.asarray(logits, dtype=np.float64)[allowed]
    top = scores.max()
    return float(top + np.log(np.exp(scores - top).sum()) - logits[token])


class _Chain:
    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.after: list[After] = []  # after chunks[: i + 1]

    def common(self, chunks: Sequence[Chunk]) -> int:
        n = 0
        for mine, theirs in zip(self.chunks, chunks, strict=False):
            if mine != theirs:
                break
            n += 1
        return n


class PrimedStates:
    """One chain of states per model, event by event along the latest call.

    :meth:`prime` returns the state after ``chunks`` (running only what the chain lacks) and
    makes ``chunks`` the chain.  A chain is dropped when ``max_chunks`` would be exceeded (a call
    longer than the model's window is primed from its start again, as the window slides).
    ``score``: also keep the call's negative log-likelihood (:func:`run_chunks`).
    """

    def __init__(self, max_chunks: int = 256, *, score: bool = False) -> None:
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1, got {max_chunks}")
        self.max_chunks = max_chunks
        self.score = score
        self._chains: OrderedDict[int, tuple[LstmModel, _Chain]] = OrderedDict()

    def prime(self, model: LstmModel, chunks: Sequence[Chunk]) -> Primed:
        """The model's state after ``chunks`` (at least one: the BOS); raises what the model
        raises (the chain is then left as it was)."""
        if not chunks:
            raise ValueError("nothing to prime with: a call starts with the BOS chunk")
        chain = self._chain(model)
        keep = chain.common(chunks)
        if keep == len(chunks):  # the whole call is in the chain already
            logits, state, nll = chain.after[keep - 1]
            return Primed(logits, state, keep, 0, 0.0, nll)
        started = time.perf_counter()
        start = chain.after[keep - 1] if keep else None
        ran = run_chunks(model, chunks[keep:], start, score=self.score)
        seconds = time.perf_counter() - started
        if len(chunks) <= self.max_chunks:
            chain.chunks = list(chunks)
            chain.after = [*chain.after[:keep], *ran]
        else:
            chain.chunks, chain.after = [], []
        logits, state, nll = ran[-1]
        return Primed(logits, state, keep, len(ran), seconds, nll)

    def forget(self) -> None:
        """Drop every chain (a model was swapped out, the port was lost)."""
        self._chains.clear()

    def _chain(self, model: LstmModel) -> _Chain:
        key = id(model)
        entry = self._chains.get(key)
        if entry is None or entry[0] is not model:
            entry = (model, _Chain())
            self._chains[key] = entry
            while len(self._chains) > MAX_MODELS:
                self._chains.popitem(last=False)
        self._chains.move_to_end(key)
        return entry[1]
