"""Answers that follow the call: which model answers, in which key, in which register.

:class:`Follower` is built once at start-up (CLI) around the chordal models (the chorale-trained
``default`` and, when shipped, ``classical``) and, when one is shipped, a melody model.  For
every answer the engine's control thread calls :meth:`Follower.plan` with the call:
``model="auto"`` answers a single line (at least :data:`SINGLE_LINE_SHARE` of its onsets one
note) with the melody model, and anything else with the chordal model under which the call is
likeliest (:meth:`Follower.likeliest`: fewest bits per note, the model that knows the call's
style best); the key comes from the ``key`` setting (``auto`` = estimated from the call, see
:func:`bridge.key.estimate_key`); the logit bias adds the key lock and a register pull towards
the call's range (:func:`bridge.key.register_bias`).  The plan is what the generation worker
uses.  No threads of its own; models are loaded before the engine starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge.errors import ModelError
from bridge.generate import MAX_CALL_EVENTS, call_chunks
from bridge.key import Key, estimate_key, key_bias, parse_key, register_bias
from bridge.model import LstmModel, load_model, resolve_model
from bridge.prime import PrimedStates
from bridge.tokens import Kind, Note

__all__ = [
    "AUTO",
    "CHORDAL_MODEL",
    "CLASSICAL_MODEL",
    "MELODY_MODEL",
    "SINGLE_LINE_SHARE",
    "AnswerPlan",
    "Follower",
    "single_line_share",
]

AUTO = "auto"
MELODY_MODEL = "melody"
"""Shipped model that answers single lines (folk melodies, transposed to every key)."""
CHORDAL_MODEL = "default"
"""Shipped model that answers chords (the Bach chorales); the chordal one without a choice."""
CLASSICAL_MODEL = "classical"
"""Shipped model that answers chords in the style of the classical string quartets and sonatas
(Mozart, Haydn, Beethoven)."""
SINGLE_LINE_SHARE = 0.9
"""A call whose onsets are at least this often a single note is a single line."""


def single_line_share(notes: Iterable[Note]) -> float:
    """Share of the call's onsets that sound exactly one note; NaN without notes."""
    counts: dict[int, int] = {}
    for note in notes:
        counts[note.onset] = counts.get(note.onset, 0) + 1
    if not counts:
        return float("nan")
    return sum(1 for c in counts.values() if c == 1) / len(counts)


@dataclass(frozen=True)
class AnswerPlan:
    """What one answer uses: the model, the key heard (or set) and the logit bias (or None)."""

    model: LstmModel
    key: Key | None
    bias: np.ndarray | None = field(default=None, compare=False)
    texture: str = "chordal"  # "single" or "chordal": what the call was taken for


class Follower:
    """Chooses the model, key and bias of each answer from the call (engine control thread).

    ``melody`` may be ``None`` (no melody model shipped): ``auto`` then answers every call with a
    chordal model.  ``others``: more chordal models; a chordal call goes to the likeliest of
    ``chordal`` and ``others`` (:meth:`likeliest`).
    """

    def __init__(
        self,
        chordal: LstmModel,
        melody: LstmModel | None = None,
        *,
        others: Sequence[LstmModel] = (),
        follow_register: bool = True,
    ) -> None:
        for model in (melody, *others):
            if model is not None and model.scheme.steps_per_beat != chordal.scheme.steps_per_beat:
                raise ModelError(
                    f"{model.name} and {chordal.name} use different grids "
                    f"({model.scheme.steps_per_beat} and "
                    f"{chordal.scheme.steps_per_beat} steps per beat)"
                )
        self.chordal = chordal
        self.chordals: tuple[LstmModel, ...] = (chordal, *others)
        self.melody = melody
        self.follow_register = follow_register
        self._scores = PrimedStates(score=True)  # the call so far under each chordal model

    @property
    def models(self) -> tuple[LstmModel, ...]:
        """Every model the follower may choose."""
        return (*self.chordals, *(() if self.melody is None else (self.melody,)))

    @classmethod
    def from_dirs(cls, model_dirs: Iterable[str | Path]) -> Follower:
        """The shipped ``default`` and (if present) ``melody`` and ``classical`` models from
        ``model_dirs``."""
        dirs = list(model_dirs)
        chordal = load_model(resolve_model(CHORDAL_MODEL, dirs))
        melody, others = _load_optional(MELODY_MODEL, dirs), _load_optional(CLASSICAL_MODEL, dirs)
        return cls(chordal, melody, others=() if others is None else (others,))

    def choose(self, call: Sequence[Note]) -> tuple[LstmModel, str]:
        """The model ``auto`` picks for ``call`` and the texture it heard."""
        share = single_line_share(call)
        if share >= SINGLE_LINE_SHARE:  # NaN (an empty call) compares False: chordal
            return (self.melody or self.chordal), "single"
        return self.likeliest(call), "chordal"

    def likeliest(self, call: Sequence[Note]) -> LstmModel:
        """The chordal model that gives ``call`` the fewest bits per note (each in its own tokens);
        ``chordal`` when there is no choice or no note.  The style is judged on the call's first
        :data:`~bridge.generate.MAX_CALL_EVENTS` events, and each model's score is kept along the
        growing call, so scoring the next notes costs only their inference, and nothing once the
        call is longer."""
        if len(self.chordals) == 1:
            return self.chordal
        opening = _opening(call, MAX_CALL_EVENTS)
        best, best_score = self.chordal, math.inf
        for model in self.chordals:
            chunks, _ = call_chunks(model.scheme, opening, first=True)
            notes = sum(_notes_in(model, chunk) for chunk in chunks)
            if not notes:
                return self.chordal
            score = self._scores.prime(model, chunks).nll / notes
            if score < best_score:
                best, best_score = model, score
        return best

    def plan(
        self, call: Sequence[Note], model: LstmModel | None, key: str, key_lock: float
    ) -> AnswerPlan:
        """The plan for answering ``call``: ``model`` as given, or chosen when ``None`` (auto);
        ``key`` is ``auto`` or a key name (``F#m``); ``key_lock`` in 0..1."""
        texture = "single" if single_line_share(call) >= SINGLE_LINE_SHARE else "chordal"
        if model is None:
            model, texture = self.choose(call)
        heard = estimate_key(call) if key == AUTO else parse_key(key)
        bias = key_bias(model.scheme, heard, key_lock)
        if self.follow_register:
            pull = register_bias(model.scheme, call)
            if pull is not None:
                bias = pull if bias is None else bias + pull
        return AnswerPlan(model, heard, bias, texture)


def _load_optional(name: str, dirs: Sequence[Path | str]) -> LstmModel | None:
    """The model called ``name``, or ``None`` if no directory has one (a broken file raises)."""
    try:
        path = resolve_model(name, dirs)
    except ModelError:
        return None
    return load_model(path)


def _opening(call: Sequence[Note], onsets: int) -> list[Note]:
    """The notes of ``call`` that start on its first ``onsets`` onsets."""
    starts = sorted({note.onset for note in call})
    if len(starts) <= onsets:
        return list(call)
    last = starts[onsets - 1]
    return [note for note in call if note.onset <= last]


def _notes_in(model: LstmModel, chunk: Sequence[int]) -> int:
    """Notes an event's tokens sound (0 for the BOS and rests)."""
    for token in chunk:
        if model.scheme.kind(token) is Kind.PITCHES:
            value = model.scheme.token_value(token)
            return len(value) if isinstance(value, tuple) else 0
    return 0
