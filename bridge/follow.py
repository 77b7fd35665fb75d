"""Answers that follow the call: which model answers, in which key, in which register.

:class:`Follower` is built once at start-up (CLI) around the chordal model (the chorale-trained
``default``) and, when one is shipped, a melody model.  For every answer the engine's control
thread calls :meth:`Follower.plan` with the call: ``model="auto"`` answers a single line (at least
:data:`SINGLE_LINE_SHARE` of its onsets one note) with the melody model and anything else with
the chordal one; the key comes from the ``key`` setting (``auto`` = estimated from the call, see
:func:`bridge.key.estimate_key`); the logit bias adds the key lock and a register pull towards the
call's range (:func:`bridge.key.register_bias`).  The plan is what the generation worker uses.
No threads of its own; models are loaded before the engine starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge.errors import ModelError
from bridge.key import Key, estimate_key, key_bias, parse_key, register_bias
from bridge.model import LstmModel, load_model, resolve_model
from bridge.tokens import Note

__all__ = [
    "AUTO",
    "CHORDAL_MODEL",
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
"""Shipped model that answers chords (the Bach chorales)."""
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

    ``melody`` may be ``None`` (no melody model shipped): ``auto`` then always uses ``chordal``.
    """

    def __init__(
        self, chordal: LstmModel, melody: LstmModel | None = None, *, follow_register: bool = True
    ) -> None:
        if melody is not None and melody.scheme.steps_per_beat != chordal.scheme.steps_per_beat:
            raise ModelError(
                f"{melody.name} and {chordal.name} use different grids "
                f"({melody.scheme.steps_per_beat} and "
                f"{chordal.scheme.steps_per_beat} steps per beat)"
            )
        self.chordal = chordal
        self.melody = melody
        self.follow_register = follow_register

    @classmethod
    def from_dirs(cls, model_dirs: Iterable[str | Path]) -> Follower:
        """The shipped ``default`` and (if present) ``melody`` models from ``model_dirs``."""
        dirs = list(model_dirs)
        chordal = load_model(resolve_model(CHORDAL_MODEL, dirs))
        try:
            melody = load_model(resolve_model(MELODY_MODEL, dirs))
        except ModelError:
            melody = None
        return cls(chordal, melody)

    def choose(self, call: Sequence[Note]) -> tuple[LstmModel, str]:
        """The model ``auto`` picks for ``call`` and the texture it heard."""
        share = single_line_share(call)
        if share >= SINGLE_LINE_SHARE:  # NaN (an empty call) compares False: chordal
            return (self.melody or self.chordal), "single"
        return self.chordal, "chordal"

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
