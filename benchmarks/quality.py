"""Section 6 — musical quality on held-out chorales, in the manner of Yang & Lerch (2018).

Seed = the first bars of each held-out chorale; the answer of every model is compared with the
real continuation of the same length through model-agnostic statistics
(:mod:`benchmarks.musicstats`): pitch-class histogram distance, key consistency, duration and
inter-onset-interval histogram overlap, polyphony, pitch range and the degeneracy rate.  Same
seeds, same lengths, several temperatures.  Main thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import musicstats as ms
from benchmarks.options import Options
from benchmarks.report import Section, Table
from benchmarks.stats import fmt

__all__ = ["Answerer", "Case", "cases_from_pieces", "compare", "evaluate", "run"]

BEATS_PER_BAR = 4

Answer = Callable[[Sequence[Any], float, int], list[Any]]
"""(seed notes, temperature, random seed) → answer notes (grid steps, any origin)."""


@dataclass(frozen=True)
class Case:
    """One held-out piece cut in two: what the model hears, and what the composer wrote next."""

    name: str
    seed: tuple[Any, ...]
    continuation: tuple[Any, ...]


@dataclass(frozen=True)
class Answerer:
    """A named way of answering a seed (a model, the reference method, a Markov chain)."""

    name: str
    answer: Answer
    temperatures: tuple[float, ...]


def cases_from_pieces(pieces: Sequence[Any], seed_steps: int, answer_steps: int) -> list[Case]:
    """Cut every piece after ``seed_steps`` grid steps; the continuation is the next
    ``answer_steps`` (onsets relative to the cut).  Pieces too short for both are left out."""
    from bridge.tokens import Note

    cases = []
    for piece in pieces:
        seed = tuple(n for n in piece.notes if n.onset < seed_steps)
        rest = tuple(Note(n.onset - seed_steps, n.pitch, n.duration, n.velocity)
                     for n in piece.notes if seed_steps <= n.onset < seed_steps + answer_steps)
        if len(seed) >= 4 and len({n.onset for n in rest}) >= 4:
            cases.append(Case(Path(piece.name).name, seed, rest))
    return cases


def evaluate(cases: Sequence[Case], answers: Sequence[Sequence[Any]]) -> dict[str, float]:
    """The statistics of ``answers`` (one per case) against the cases' real continuations."""
    keys = [ms.estimate_key(c.seed) for c in cases]
    real = [c.continuation for c in cases]
    durations = [d for a in answers for d in ms.duration_values(a)]
    iois = [d for a in answers for d in ms.ioi_values(a)]

    def mean(values: Sequence[float]) -> float:
        data = np.asarray(values, dtype=float)
        data = data[np.isfinite(data)]
        return float(data.mean()) if data.size else float("nan")

    return {
        "pch_distance": mean([ms.pitch_class_distance(a, r) for a, r in zip(answers, real,
                                                                             strict=True)]),
        "key_consistency": mean([ms.key_consistency(list(a), k)
                                 for a, k in zip(answers, keys, strict=True)]),
        "duration_overlap": ms.histogram_overlap(
            durations, [d for r in real for d in ms.duration_values(r)]),
        "ioi_overlap": ms.histogram_overlap(iois, [d for r in real for d in ms.ioi_values(r)]),
        "polyphony": mean([ms.polyphony(a) for a in answers]),
        "pitch_range": mean([ms.pitch_range(list(a)) for a in answers]),
        "degenerate": mean([float(ms.is_degenerate(list(a))) for a in answers]),
        "notes": mean([len(a) for a in answers]),
    }


COLUMNS = [
    ("pch_distance", "pitch-class dist. ↓"), ("key_consistency", "in seed's key"),
    ("duration_overlap", "duration overlap ↑"), ("ioi_overlap", "IOI overlap ↑"),
    ("polyphony", "polyphony"), ("pitch_range", "pitch range"),
    ("degenerate", "degenerate ↓"), ("notes", "notes/answer"),
]


def run(options: Options, context: dict[str, object]) -> Section:
    section = Section(6, "Musical quality on held-out chorales")
    split = _split(options)
    pieces = list(split.held_out)[: options.quality_pieces]
    spb = 4
    cases = cases_from_pieces(pieces, options.seed_bars * BEATS_PER_BAR * spb,
                              options.answer_bars * BEATS_PER_BAR * spb)
    if not cases:
        raise RuntimeError("no held-out piece is long enough for seed + answer")
    notes: list[str] = []
    answerers = _answerers(options, context, split, notes)
    rows: list[tuple[str, str, dict[str, float]]] = []
    real = [c.continuation for c in cases]
    rows.append(("real continuation", "–", evaluate(cases, real)))
    for answerer in answerers:
        for temperature in answerer.temperatures:
            answers = [answerer.answer(c.seed, temperature, options.rng_seed + i)
                       for i, c in enumerate(cases)]
            rows.append((answerer.name, f"{temperature:g}", evaluate(cases, answers)))
    section.method = (
        f"{len(cases)} held-out Bach chorales (every 10th piece by sorted path, never trained "
        f"on); seed = the first {options.seed_bars} bars ({BEATS_PER_BAR}-beat bars), answer = "
        f"{options.answer_bars} bars from each answerer, compared with the real next "
        f"{options.answer_bars} bars. Statistics after Yang & Lerch (2018): pitch-class "
        "histogram distance to the real continuation (total variation, 0 same … 1 disjoint); "
        "key consistency = share of answer notes in the seed's Krumhansl–Schmuckler key (major "
        "scale, or natural minor + leading tone); duration and inter-onset-interval histogram "
        "overlap with the real continuations (1 = same distribution); mean polyphony (notes "
        "sounding per occupied 16th) and pitch range (semitones), to compare with the real row; "
        "degenerate = answers in which one onset (same pitches and duration) makes up more than "
        "half the onsets, or with fewer than 4 onsets. Sampling: the bridge's sampler for every "
        "answerer (top-p 0.95, the temperatures shown; 0.05 is the bridge's lowest, close to the "
        "reference implementation's argmax); same seeds, lengths and random seeds for all."
    )
    table = Table(["answerer", "temperature", *(label for _, label in COLUMNS)],
                  caption="**Answers vs the real continuation** (means over pieces)")
    for name, temp, stats in rows:
        table.rows.append([name, temp, *(_cell(key, stats[key]) for key, _ in COLUMNS)])
        section.data[f"{name} T={temp}"] = stats
    section.tables.append(table)
    section.notes.extend(notes)
    section.figures.append(_plot(options.out_dir, rows))
    real_stats = rows[0][2]
    for temperature in dict.fromkeys((1.0, min(options.temperatures))):
        ours = _row_at(rows, answerers[0].name, temperature)
        for other in answerers[1:]:
            theirs = _row_at(rows, other.name, temperature)
            if not (ours and theirs):
                continue
            wins, losses = compare(ours, theirs, real_stats)
            section.headline.append((
                f"quality at T={temperature:g}: statistics closer to the real continuation",
                f"{len(wins)} of {len(COMPARED)}",
                f"{other.name}: {len(losses)}",
                "Antiphon behind on " + ", ".join(losses) if losses else "none behind",
            ))
    return section


COMPARED = {
    "pch_distance": "pitch-class distance", "key_consistency": "key consistency",
    "duration_overlap": "durations", "ioi_overlap": "inter-onset intervals",
    "polyphony": "polyphony", "pitch_range": "pitch range", "degenerate": "degeneracy",
}


def compare(ours: dict[str, float], theirs: dict[str, float],
            real: dict[str, float]) -> tuple[list[str], list[str]]:
    """Which statistics of ``ours`` are closer to the real continuation than ``theirs`` (wins)
    and which are farther (losses); ties count as neither.  Distance and degeneracy: lower is
    closer; overlaps: higher; key consistency, polyphony, pitch range: nearer the real value."""
    wins: list[str] = []
    losses: list[str] = []
    for key, label in COMPARED.items():
        if key in ("pch_distance", "degenerate"):
            a, b = ours[key], theirs[key]
        elif key in ("duration_overlap", "ioi_overlap"):
            a, b = -ours[key], -theirs[key]
        else:
            a, b = abs(ours[key] - real[key]), abs(theirs[key] - real[key])
        if not (np.isfinite(a) and np.isfinite(b)) or abs(a - b) < 1e-9:
            continue
        (wins if a < b else losses).append(label)
    return wins, losses


def _cell(key: str, value: float) -> str:
    if key in ("key_consistency", "degenerate") and np.isfinite(value):
        return f"{value * 100:.0f} %"
    return fmt(value)


def _row_at(rows: list[tuple[str, str, dict[str, float]]], name: str,
            temperature: float) -> dict[str, float] | None:
    for n, t, stats in rows:
        if n == name and t == f"{temperature:g}":
            return stats
    return None


def _split(options: Options) -> Any:
    """The training split of the chorales (quick runs: of the first 60 files only)."""
    from bridge.tokens import TokenScheme
    from training.corpus import composer_files, load_corpus
    from training.dataset import split_pieces

    paths = composer_files("bach")
    if options.quick:
        paths = paths[:60]
    corpus = load_corpus(paths, TokenScheme(), progress=False, warn=lambda _line: None)
    return split_pieces(corpus.pieces)


def _answerers(options: Options, context: dict[str, object], split: Any,
               notes: list[str]) -> list[Answerer]:
    from benchmarks.answerers import (
        TOP_P,
        markov_answer,
        reference_answer,
        reference_model_path,
    )
    from bridge.generate import continue_notes
    from bridge.model import load_model

    model = load_model(options.model)
    scheme = model.scheme
    bars, per_bar = options.answer_bars, BEATS_PER_BAR

    def antiphon(seed: Sequence[Any], temperature: float, rng_seed: int) -> list[Any]:
        return continue_notes(model, list(seed), length=bars, length_unit="bars",
                              temperature=temperature, top_p=TOP_P, seed=rng_seed,
                              beats_per_bar=per_bar)

    answerers = [Answerer(f"Antiphon ({options.model.stem})", antiphon, options.temperatures)]
    notes.append(f"Antiphon model: `{options.model.name}`, {_provenance(model.metadata)}.")

    budget = context.get("default_budget_onnx")
    if isinstance(budget, Path) and budget.is_file():
        budget_model = load_model(budget)

        def antiphon_budget(seed: Sequence[Any], temperature: float, rng_seed: int) -> list[Any]:
            return continue_notes(budget_model, list(seed), length=bars, length_unit="bars",
                                  temperature=temperature, top_p=TOP_P, seed=rng_seed,
                                  beats_per_bar=per_bar)

        answerers.append(Answerer(f"default arch, {options.train_seconds:g} s training",
                                  antiphon_budget, options.temperatures))
        notes.append(f"`default arch, {options.train_seconds:g} s training`: the default "
                     "architecture trained in section 4 for the same budget as the reference "
                     "net there — the equal-time comparison.")

    path, origin = reference_model_path(options, context)
    if path is not None:
        from training.runtime import WindowRunner

        runner = WindowRunner(path, threads=1)

        def reference(seed: Sequence[Any], temperature: float, rng_seed: int) -> list[Any]:
            return reference_answer(runner, seed, bars=bars, beats_per_bar=per_bar,
                                    steps_per_beat=scheme.steps_per_beat,
                                    temperature=temperature, rng_seed=rng_seed)

        answerers.append(Answerer("reference method (--arch seed)", reference,
                                  options.temperatures))
        notes.append(f"Reference-method model: `{path.name}` ({origin}), "
                     f"{_provenance(runner.metadata)}; a seed shorter than its 100-event window "
                     "is repeated to fill it; its symbols carry no durations (every event "
                     "0.5 beat) and chords lose their octaves (placed in octave 4).")
    else:
        notes.append(f"Reference-method model: {origin} — its rows are missing.")

    order, bits = _best_markov(split, scheme)
    from training.markov import MarkovModel

    train = _streams(split.train, scheme)
    markov = MarkovModel(order, scheme.vocab_size, pad=scheme.bos).fit(train)

    def chain(seed: Sequence[Any], temperature: float, rng_seed: int) -> list[Any]:
        return markov_answer(markov, scheme, seed, bars=bars, beats_per_bar=per_bar,
                             temperature=temperature, rng_seed=rng_seed)

    answerers.append(Answerer(f"Markov order {order}", chain, options.temperatures))
    notes.append(
        f"Markov baseline: Witten-Bell order {order} on Antiphon's tokens of the training split "
        "(`training.markov`), the best of orders 1–3 by held-out bits/event "
        f"({', '.join(f'order {o}: {b:.2f}' for o, b in bits.items())}); sampled under the same "
        "grammar mask and sampler as the LSTM."
    )
    return answerers


def _provenance(metadata: dict[str, str]) -> str:
    import json

    try:
        info = json.loads(metadata.get("antiphon.training", "{}"))
    except json.JSONDecodeError:
        info = {}
    if not isinstance(info, dict) or not info:
        return "no training record"
    parts = []
    for key in ("arch", "epochs", "seconds", "training_seconds", "train_seconds"):
        if key in info:
            value = info[key]
            parts.append(f"{key} {value:.0f}" if isinstance(value, float) else f"{key} {value}")
    return "trained: " + (", ".join(parts) if parts else "see its metadata")


def _streams(pieces: Sequence[Any], scheme: Any) -> list[np.ndarray]:
    return [np.asarray(scheme.encode(p.notes), np.int64) for p in pieces if p.notes]


def _best_markov(split: Any, scheme: Any) -> tuple[int, dict[int, float]]:
    """The Markov order (1–3) with the lowest held-out bits/event (grammar-masked)."""
    from training.markov import MarkovModel

    train = _streams(split.train, scheme)
    held = _streams(split.held_out, scheme)
    bits: dict[int, float] = {}
    for order in (1, 2, 3):
        model = MarkovModel(order, scheme.vocab_size, pad=scheme.bos).fit(train)
        total, events = 0.0, 0
        for stream in held:
            probs = model.stream_distributions(stream)
            for t in range(len(stream) - 1):
                mask = scheme.allowed(int(stream[t]))
                p = probs[t]
                total -= float(np.log2(p[stream[t + 1]] / p[mask].sum()))
            events += int(np.count_nonzero((stream >= scheme.shift_base)
                                           & (stream < scheme.rest)))
        bits[order] = total / max(1, events)
    return min(bits, key=lambda o: bits[o]), bits


def _plot(out_dir: Path, rows: list[tuple[str, str, dict[str, float]]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = rows[0][2]
    panels = [("pch_distance", "pitch-class distance ↓"), ("key_consistency", "in seed's key"),
              ("ioi_overlap", "IOI overlap ↑"), ("degenerate", "degenerate answers ↓")]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.4))
    names = list(dict.fromkeys(name for name, _, _ in rows[1:]))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for name in names:
            points = [(float(t), s[key]) for n, t, s in rows[1:] if n == name]
            ax.plot(*zip(*points, strict=True), marker="o", label=name)
        if key in ("key_consistency",):
            ax.axhline(real[key], color="black", ls=":", label="real continuation")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("temperature")
    axes[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    name = "quality.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name
