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

Threads: one user at a time (the generation worker; offline callers own theirs).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bridge.model import LstmModel, State

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


def run_chunks(
    model: LstmModel, chunks: Sequence[Chunk], start: tuple[np.ndarray, State] | None = None
) -> list[tuple[np.ndarray, State]]:
    """Run ``chunks`` one model call each after ``start`` (None: the initial state); returns
    ``(last logits, state)`` after each chunk."""
    state = model.initial_state() if start is None else start[1]
    out = []
    for chunk in chunks:
        logits, state = model.run(list(chunk), state)
        out.append((logits[-1], state))
    return out


class _Chain:
    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.after: list[tuple[np.ndarray, State]] = []  # after chunks[: i + 1]

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
    """

    def __init__(self, max_chunks: int = 256) -> None:
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1, got {max_chunks}")
        self.max_chunks = max_chunks
        self._chains: OrderedDict[int, tuple[LstmModel, _Chain]] = OrderedDict()

    def prime(self, model: LstmModel, chunks: Sequence[Chunk]) -> Primed:
        """The model's state after ``chunks`` (at least one: the BOS); raises what the model
        raises (the chain is then left as it was)."""
        if not chunks:
            raise ValueError("nothing to prime with: a call starts with the BOS chunk")
        chain = self._chain(model)
        keep = chain.common(chunks)
        if keep == len(chunks):  # the whole call is in the chain already
            logits, state = chain.after[keep - 1]
            return Primed(logits, state, keep, 0, 0.0)
        started = time.perf_counter()
        start = chain.after[keep - 1] if keep else None
        ran = run_chunks(model, chunks[keep:], start)
        seconds = time.perf_counter() - started
        if len(chunks) <= self.max_chunks:
            chain.chunks = list(chunks)
            chain.after = [*chain.after[:keep], *ran]
        else:
            chain.chunks, chain.after = [], []
        logits, state = ran[-1]
        return Primed(logits, state, keep, len(ran), seconds)

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
