"""Held-out scores of a model file beside order-1..3 Markov baselines on exactly the same tokens.

Scores (all on the held-out pieces of the deterministic split, every model sees the same target
tokens with the same context):

* **bits/event** — negative log2-likelihood of an event (the sum over its SHIFT, PITCHES,
  DURATION, VELOCITY tokens), averaged over events;
* **token top-1** — how often the most likely next token is the right one;
* **event top-1** — how often every token of an event is the most likely one (teacher forcing).

Both the LSTM and the Markov models are scored through the grammar mask
(:meth:`TokenScheme.allowed`): probabilities are renormalised over the tokens the grammar allows
next, which is how the bridge samples.  The reference window net is scored on its own
tokenization (one symbol per onset) beside Markov models of that tokenization; its numbers are
comparable with its baselines, not with the Antiphon scheme's.  No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bridge.model import LstmModel
from bridge.tokens import Kind, TokenScheme
from training.corpus import Corpus
from training.dataset import build_dataset, split_pieces
from training.markov import MarkovModel
from training.onnx_runner import WindowRunner
from training.reference import ReferenceVocabulary, reference_symbols, reference_windows

__all__ = [
    "Score",
    "evaluate_reference",
    "evaluate_step_model",
    "format_table",
    "grammar_masks",
    "markov_scores",
    "score_streams",
]

LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class Score:
    """One row of the evaluation table."""

    name: str
    bits_per_event: float
    token_top1: float
    event_top1: float
    events: int
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def grammar_masks(scheme: TokenScheme, previous: np.ndarray) -> np.ndarray:
    """``[n, vocab]`` boolean: which tokens the grammar allows after each of ``previous``."""
    kinds = np.array([int(scheme.kind(t)) for t in range(scheme.vocab_size)])
    table = np.stack(
        [
            scheme.allowed(int(np.flatnonzero(kinds == k)[0]))
            if np.any(kinds == k)
            else np.ones(scheme.vocab_size, bool)
            for k in range(len(Kind))
        ]
    )
    return table[kinds[previous]]


def _log2_masked(scores: np.ndarray, mask: np.ndarray | None, *, logits: bool) -> np.ndarray:
    """Row-wise log2 probabilities, renormalised over ``mask`` (``scores``: logits or probs)."""
    if logits:
        x = scores.astype(np.float64)
        if mask is not None:
            x = np.where(mask, x, -np.inf)
        x = x - x.max(axis=1, keepdims=True)
        return (x - np.log(np.exp(x).sum(axis=1, keepdims=True))) / LN2
    p = scores.astype(np.float64)
    if mask is not None:
        p = np.where(mask, p, 0.0)
    p = p / p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.log2(p)


def score_streams(
    name: str,
    log2p: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    event_ids: Sequence[np.ndarray],
) -> Score:
    """Aggregate per-target log2 probabilities (rows) into a :class:`Score`."""
    bits: list[np.ndarray] = []
    hits: list[np.ndarray] = []
    for lp, target, events in zip(log2p, targets, event_ids, strict=True):
        if not len(target):
            continue
        nll = -lp[np.arange(len(target)), target]
        correct = lp.argmax(axis=1) == target
        count = int(events.max()) + 1
        bits.append(np.bincount(events, weights=nll, minlength=count))
        hits.append(np.bincount(events, weights=~correct, minlength=count) == 0)
        bits[-1] = bits[-1][np.bincount(events, minlength=count) > 0]
        hits[-1] = hits[-1][np.bincount(events, minlength=count) > 0]
    all_bits = np.concatenate(bits) if bits else np.zeros(0)
    all_hits = np.concatenate(hits) if hits else np.zeros(0, bool)
    token_hits = sum(
        int((lp.argmax(axis=1) == t).sum()) for lp, t in zip(log2p, targets, strict=True)
    )
    tokens = sum(len(t) for t in targets)
    return Score(
        name=name,
        bits_per_event=float(all_bits.mean()) if len(all_bits) else float("nan"),
        token_top1=token_hits / tokens if tokens else float("nan"),
        event_top1=float(all_hits.mean()) if len(all_hits) else float("nan"),
        events=len(all_bits),
        tokens=tokens,
    )


def _event_ids(scheme: TokenScheme, targets: np.ndarray) -> np.ndarray:
    """Index of the event each target token belongs to (an event starts at its SHIFT token)."""
    starts = (targets >= scheme.shift_base) & (targets < scheme.rest)
    return np.maximum(np.cumsum(starts) - 1, 0)


def markov_scores(
    train: Sequence[np.ndarray],
    held_out: Sequence[np.ndarray],
    vocab_size: int,
    *,
    orders: Sequence[int] = (1, 2, 3),
    scheme: TokenScheme | None = None,
    event_ids: Callable[[np.ndarray], np.ndarray] | None = None,
    first_target: int = 0,
    pad: int = 0,
) -> list[Score]:
    """Witten-Bell Markov models of each order fitted on ``train``, scored on ``held_out``.

    With ``scheme`` the grammar mask applies and events are Antiphon events; without it every
    target is one event.  ``first_target`` skips the first rows of every stream (the reference
    evaluation scores only targets that have a full window before them).
    """
    rows = []
    targets = [s[1:][first_target:] for s in held_out]
    ids = [event_ids(t) if event_ids else np.arange(len(t)) for t in targets]
    for order in orders:
        model = MarkovModel(order, vocab_size, pad=pad).fit(train)
        log2p = []
        for stream in held_out:
            probs = model.stream_distributions(stream)[first_target:]
            mask = grammar_masks(scheme, stream[:-1][first_target:]) if scheme else None
            log2p.append(_log2_masked(probs, mask, logits=False))
        rows.append(score_streams(f"Markov order {order}", log2p, targets, ids))
    return rows


def evaluate_step_model(
    runner: LstmModel,
    corpus: Corpus,
    *,
    every: int = 10,
    orders: Sequence[int] = (1, 2, 3),
    name: str | None = None,
) -> tuple[list[Score], dict[str, Any]]:
    """Score an ``antiphon-lstm`` model and the Markov baselines on the held-out pieces."""
    scheme = runner.scheme
    data = build_dataset(corpus.pieces, scheme, scheme=scheme, every=every)
    if not data.held_out:
        raise ValueError("the corpus is too small to hold out any piece")
    targets, ids, log2p = [], [], []
    for stream in data.held_out:
        logits, _ = runner.run(stream, runner.initial_state())
        target = stream[1:]
        targets.append(target)
        ids.append(_event_ids(scheme, target))
        log2p.append(_log2_masked(logits[:-1], grammar_masks(scheme, stream[:-1]), logits=True))
    layers = (
        "×".join(map(str, runner.layers))
        if len(set(runner.layers)) > 1
        else (f"{len(runner.layers)}×{runner.layers[0]}")
    )
    rows = [score_streams(name or f"LSTM {layers}", log2p, targets, ids)]
    rows += markov_scores(
        data.train,
        data.held_out,
        scheme.vocab_size,
        orders=orders,
        scheme=scheme,
        event_ids=lambda t: _event_ids(scheme, t),
    )
    info = {
        "held_out_pieces": len(data.held_out),
        "grammar_masked": True,
        "held_out_events": rows[0].events,
        "held_out_tokens": rows[0].tokens,
    }
    return rows, info


def evaluate_reference(
    runner: WindowRunner,
    corpus: Corpus,
    *,
    every: int = 10,
    orders: Sequence[int] = (1, 2, 3),
    name: str | None = None,
) -> tuple[list[Score], dict[str, Any]]:
    """Score the reference window net and Markov baselines of its tokenization."""
    split = split_pieces(corpus.pieces, every)
    vocabulary = ReferenceVocabulary(tuple(runner.vocabulary))
    train = vocabulary.ids(s for p in split.train for s in reference_symbols(p.notes))
    held = vocabulary.ids(s for p in split.held_out for s in reference_symbols(p.notes))
    windows, targets = reference_windows(held, runner.window)
    probs = runner.predict(windows)
    log2p = _log2_masked(probs, None, logits=False)
    rows = [
        score_streams(name or "seed 512→256 window", [log2p], [targets], [np.arange(len(targets))])
    ]
    rows += markov_scores(
        [train], [held], vocabulary.size, orders=orders, first_target=runner.window - 1, pad=0
    )
    info = {
        "held_out_pieces": len(split.held_out),
        "grammar_masked": False,
        "held_out_events": len(targets),
        "tokenization": "reference (one symbol per onset)",
    }
    return rows, info


def format_table(rows: Sequence[Score], info: dict[str, Any] | None = None) -> str:
    """The evaluation as a plain-text table."""
    lines = []
    if info:
        lines.append(
            f"held-out: {info.get('held_out_pieces')} pieces, {info.get('held_out_events'):,} "
            f"events" + (", grammar-masked" if info.get("grammar_masked") else "")
        )
    width = max(len("model"), *(len(r.name) for r in rows))
    lines.append(
        f"{'model':<{width}}  {'bits/event':>10}  {'token top-1':>11}  {'event top-1':>11}"
    )
    for r in rows:
        lines.append(
            f"{r.name:<{width}}  {r.bits_per_event:>10.3f}  {100 * r.token_top1:>10.1f}%"
            f"  {100 * r.event_top1:>10.1f}%"
        )
    return "\n".join(lines)
