"""Section 6 — call and answer across styles: does the answer listen to the call?

Held-out pieces of three corpora from music21 — the Bach chorales (the default model's split),
folk melodies (essenFolksong, oneills1850, ryansMammoth: the melody model's split) and classical
works (Mozart, Haydn, Beethoven: the classical model's split, every 2nd piece) — are cut into a
call (the first ``call_bars`` bars) and the real continuation (the next ``answer_bars``).  Every
answerer answers every call at each temperature, and each answer is measured against the call
and the real continuation (:mod:`benchmarks.musicstats`, :mod:`bridge.key`): share of notes in
the call's key, texture (notes per onset, single-note onsets), register (mean pitch), density
(onsets per beat), pitch-class and inter-onset-interval histogram overlap with the real
continuation, motif echo (the call's interval 3-grams played again) and degenerate answers.  The
issue's targets are checked per corpus for the automatic choice at the default settings.  Main
thread only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import musicstats as ms
from benchmarks.options import Options
from benchmarks.report import Section, Table
from benchmarks.stats import fmt, summarize

__all__ = [
    "CORPORA",
    "Answerer",
    "Case",
    "StyleCorpus",
    "aggregate",
    "answer_stats",
    "cases_from_pieces",
    "check_targets",
    "run",
]

BEATS_PER_BAR = 4
STEPS_PER_BEAT = 4
MAX_CASES = 30
"""Calls per corpus (the first of the held-out pieces long enough), to bound the run time."""

Answer = Callable[[Sequence[Any], float, int], list[Any]]
"""(call notes, temperature, random seed) → answer notes (grid steps from the call's end)."""


@dataclass(frozen=True)
class StyleCorpus:
    """A corpus of the benchmark: music21 corpora, the held-out split, the model whose token
    scheme its Markov baseline uses and whose split it shares (``model``)."""

    name: str
    composers: tuple[str, ...]
    model: str  # "default", "melody" or "classical": the shipped model trained on it
    every: int  # every k-th piece (sorted by name) is held out
    trained: bool  # a shipped model was trained on its other pieces
    quick_files: int  # files read in a --quick run


CORPORA = (
    StyleCorpus("chorales", ("bach",), "default", 10, True, 60),
    StyleCorpus("folk", ("essenFolksong", "oneills1850", "ryansMammoth"), "melody", 10, True, 1),
    StyleCorpus("classical", ("mozart", "haydn", "beethoven"), "classical", 2, True, 4),
)


@dataclass(frozen=True)
class Case:
    """One held-out piece cut in two: the call, and what the composer wrote next."""

    name: str
    call: tuple[Any, ...]
    continuation: tuple[Any, ...]


@dataclass(frozen=True)
class Answerer:
    """A named way of answering a call (a model, the reference method, a Markov chain)."""

    name: str
    answer: Answer
    temperatures: tuple[float, ...]


def cases_from_pieces(
    pieces: Sequence[Any], call_steps: int, answer_steps: int, limit: int | None = None
) -> list[Case]:
    """Cut every piece after ``call_steps`` grid steps; the continuation is the next
    ``answer_steps`` (onsets relative to the cut).  Pieces that end before the continuation
    does, or with fewer than 4 call notes or 4 continuation onsets, are left out."""
    from bridge.tokens import Note

    cases = []
    for piece in pieces:
        if not piece.notes or max(n.onset + n.duration for n in piece.notes) < (
            call_steps + answer_steps
        ):
            continue
        call = tuple(n for n in piece.notes if n.onset < call_steps)
        rest = tuple(
            Note(n.onset - call_steps, n.pitch, n.duration, n.velocity)
            for n in piece.notes
            if call_steps <= n.onset < call_steps + answer_steps
        )
        if len(call) >= 4 and len({n.onset for n in rest}) >= 4:
            cases.append(Case(Path(piece.name).name, call, rest))
        if limit is not None and len(cases) >= limit:
            break
    return cases


def answer_stats(
    call: Sequence[Any], answer: Sequence[Any], real: Sequence[Any], beats: float
) -> dict[str, float]:
    """One answer measured against its call and the real continuation."""
    from bridge.key import estimate_key, in_key_share

    key = estimate_key(call)
    return {
        "in_key": in_key_share(answer, key) if key is not None else float("nan"),
        "notes_per_onset": ms.notes_per_onset(answer),
        "single_share": ms.single_onset_share(answer),
        "pitch_gap": abs(ms.mean_pitch(answer) - ms.mean_pitch(real)),
        "mean_pitch": ms.mean_pitch(answer),
        "density": ms.onsets_per_beat(answer, beats, STEPS_PER_BEAT),
        "pc_overlap": 1.0 - ms.pitch_class_distance(answer, real),
        "motif_echo": ms.motif_echo(call, answer),
        "degenerate": float(ms.is_degenerate(list(answer))),
    }


def _mean(values: Sequence[float]) -> float:
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    return float(data.mean()) if data.size else float("nan")


def _median(values: Sequence[float]) -> float:
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    return float(np.median(data)) if data.size else float("nan")


def aggregate(
    cases: Sequence[Case], answers: Sequence[Sequence[Any]], beats: float
) -> dict[str, float]:
    """Per-corpus figures of one answerer: means over calls (median for the register gap),
    the density relative to the real continuations', IOI overlap of the pooled intervals."""
    per = [
        answer_stats(c.call, a, c.continuation, beats) for c, a in zip(cases, answers, strict=True)
    ]
    real_density = _mean([ms.onsets_per_beat(c.continuation, beats, STEPS_PER_BEAT) for c in cases])
    out = {key: _mean([p[key] for p in per]) for key in per[0]} if per else {}
    out["pitch_gap"] = _median([p["pitch_gap"] for p in per])
    out["density_ratio"] = out.get("density", float("nan")) / real_density
    out["ioi_overlap"] = ms.histogram_overlap(
        [d for a in answers for d in ms.ioi_values(a)],
        [d for c in cases for d in ms.ioi_values(c.continuation)],
    )
    out["lines"] = _mean([float(p["single_share"] >= 0.9) for p in per])
    return out


TARGETS = (
    ("key", "in-key share ≥ real − 0.03"),
    ("texture", "texture follows the call"),
    ("register", "median |Δ mean pitch| ≤ 4"),
    ("density", "density within ±35 %"),
    ("pc", "pitch-class overlap ≥ Markov-3"),
    ("ioi", "IOI overlap ≥ Markov-3"),
    ("degenerate", "0 % degenerate"),
)


def check_targets(
    ours: dict[str, float], real: dict[str, float], markov: dict[str, float], single_line: bool
) -> dict[str, tuple[bool, str]]:
    """The issue's targets for one corpus and temperature: met?, and the figure behind it."""
    texture = ours["lines"] >= 0.9 if single_line else ours["notes_per_onset"] >= 1.5
    texture_text = (
        f"{ours['lines'] * 100:.0f} % single-line answers"
        if single_line
        else f"{ours['notes_per_onset']:.2f} notes/onset"
    )
    return {
        "key": (
            ours["in_key"] >= real["in_key"] - 0.03,
            f"{ours['in_key'] * 100:.0f} % vs {real['in_key'] * 100:.0f} %",
        ),
        "texture": (texture, texture_text),
        "register": (ours["pitch_gap"] <= 4.0, f"{ours['pitch_gap']:.1f} st"),
        "density": (
            abs(ours["density_ratio"] - 1.0) <= 0.35,
            f"{ours['density_ratio'] * 100:.0f} % of real",
        ),
        "pc": (
            ours["pc_overlap"] >= markov["pc_overlap"],
            f"{ours['pc_overlap']:.2f} vs {markov['pc_overlap']:.2f}",
        ),
        "ioi": (
            ours["ioi_overlap"] >= markov["ioi_overlap"],
            f"{ours['ioi_overlap']:.2f} vs {markov['ioi_overlap']:.2f}",
        ),
        "degenerate": (ours["degenerate"] == 0.0, f"{ours['degenerate'] * 100:.0f} %"),
    }


COLUMNS = [
    ("in_key", "in call's key"),
    ("notes_per_onset", "notes/onset"),
    ("lines", "single-line answers"),
    ("mean_pitch", "mean pitch"),
    ("pitch_gap", "|Δ pitch| vs real ↓"),
    ("density_ratio", "density vs real"),
    ("pc_overlap", "PC overlap ↑"),
    ("ioi_overlap", "IOI overlap ↑"),
    ("motif_echo", "motif echo"),
    ("degenerate", "degenerate ↓"),
]
_PERCENT = ("in_key", "lines", "density_ratio", "motif_echo", "degenerate")

AUTO_ROW = "Antiphon auto"
MARKOV_ROW = "Markov order 3"
REAL_ROW = "real continuation"


def run(options: Options, context: dict[str, object]) -> Section:
    from bridge.config import Settings
    from bridge.follow import CLASSICAL_MODEL, MELODY_MODEL, Follower
    from bridge.model import load_model

    section = Section(6, "Musical quality: call and answer across styles")
    models_dir = options.model.parent
    chordal = load_model(options.model)
    shipped = {
        name: load_model(models_dir / f"{name}.onnx")
        for name in (MELODY_MODEL, CLASSICAL_MODEL)
        if (models_dir / f"{name}.onnx").is_file()
    }
    melody, classical = shipped.get(MELODY_MODEL), shipped.get(CLASSICAL_MODEL)
    follower = Follower(chordal, melody, others=() if classical is None else (classical,))
    default_lock = Settings().key_lock
    temperatures = tuple(t for t in options.temperatures if t >= 0.8) or options.temperatures
    call_steps = options.call_bars * BEATS_PER_BAR * STEPS_PER_BEAT
    answer_steps = options.answer_bars * BEATS_PER_BAR * STEPS_PER_BEAT
    beats = options.answer_bars * BEATS_PER_BAR
    limit = options.quality_pieces or MAX_CASES
    rows: list[tuple[str, str, str, dict[str, float]]] = []  # corpus, answerer, T, figures
    targets: dict[str, dict[str, dict[str, tuple[bool, str]]]] = {}
    counts: list[list[str]] = []
    example: tuple[Case, dict[str, list[Any]]] | None = None  # the before/after piano roll
    for style in CORPORA:
        scheme_model = shipped.get(style.model, chordal)
        split, total = _split(style, scheme_model, options)
        cases = _spread(cases_from_pieces(split.held_out, call_steps, answer_steps), limit)
        routes: dict[str, int] = {}
        choose_seconds: list[float] = []
        for case in cases:
            name = follower.choose(list(case.call))[0].name
            routes[name] = routes.get(name, 0) + 1
            choose_seconds.extend(_time_choices(follower, case.call))
        choose = summarize(choose_seconds) if choose_seconds else None
        counts.append(
            [
                style.name,
                ", ".join(style.composers),
                str(total),
                str(len(split.held_out)),
                str(len(cases)),
                ", ".join(f"{name} {n}" for name, n in sorted(routes.items())) or "–",
                "–" if choose is None else f"{fmt(choose.p50 * 1e3)} / {fmt(choose.p99 * 1e3)}",
            ]
        )
        section.data[f"{style.name}: auto chose"] = routes
        if not cases:
            continue
        answerers = _answerers(
            options, split, chordal, follower, scheme_model, default_lock, temperatures
        )
        real = aggregate(cases, [c.continuation for c in cases], beats)
        rows.append((style.name, REAL_ROW, "–", real))
        for answerer in answerers:
            for temperature in answerer.temperatures:
                started = time.perf_counter()
                answers = [
                    answerer.answer(c.call, temperature, options.rng_seed + i)
                    for i, c in enumerate(cases)
                ]
                stats = aggregate(cases, answers, beats)
                stats["seconds"] = time.perf_counter() - started
                rows.append((style.name, answerer.name, f"{temperature:g}", stats))
        if example is None or style.name == "folk":
            case = cases[len(cases) // 2]
            chosen = {
                a.name: a.answer(case.call, 1.0, options.rng_seed)
                for a in answerers
                if a.name in ("old default", AUTO_ROW)
            }
            example = (case, chosen)
        single = _mean([ms.single_onset_share(c.call) for c in cases]) >= 0.9
        for temperature in temperatures:
            ours = _row(rows, style.name, AUTO_ROW, temperature)
            markov = _row(rows, style.name, MARKOV_ROW, temperature)
            if ours is not None and markov is not None:
                targets.setdefault(style.name, {})[f"{temperature:g}"] = check_targets(
                    ours, real, markov, single
                )
    section.method = _method(options, default_lock, temperatures)
    section.tables.append(_counts_table(counts))
    section.tables.append(_targets_table(targets))
    table = Table(
        ["corpus", "answerer", "T", *(label for _, label in COLUMNS)],
        caption="**Answers vs call and real continuation** (means over calls)",
    )
    for corpus, name, temp, stats in rows:
        table.rows.append(
            [corpus, name, temp, *(_cell(k, stats.get(k, float("nan"))) for k, _ in COLUMNS)]
        )
        section.data[f"{corpus}: {name} T={temp}"] = stats
    section.tables.append(table)
    section.data["targets"] = {
        c: {
            t: {k: {"met": v[0], "value": v[1]} for k, v in checks.items()}
            for t, checks in by_t.items()
        }
        for c, by_t in targets.items()
    }
    for corpus, by_t in targets.items():
        temp = "1" if "1" in by_t else next(iter(by_t))
        missed = [label for key, label in TARGETS if not by_t[temp][key][0]]
        section.headline.append(
            (
                f"call/answer targets met, {corpus} (auto, T={temp})",
                f"{len(TARGETS) - len(missed)} of {len(TARGETS)}",
                "–",
                "missed: " + "; ".join(missed) if missed else "all met",
            )
        )
    section.notes.append(
        f"Models: `{options.model.name}` ({_provenance(chordal.metadata)})"
        + "".join(f", `{m.name}.onnx` ({_provenance(m.metadata)})" for m in shipped.values())
        + "."
    )
    section.figures.append(_plot(options.out_dir, rows))
    if example is not None:
        section.figures.append(_pianoroll(options.out_dir, *example))
    return section


def _method(options: Options, lock: float, temperatures: Sequence[float]) -> str:
    return (
        f"Calls: the first {options.call_bars} bars ({BEATS_PER_BAR}-beat bars) of held-out "
        f"pieces long enough for {options.call_bars} + {options.answer_bars} bars (at most "
        f"{options.quality_pieces or MAX_CASES} per corpus); real continuation = the next "
        f"{options.answer_bars} bars; every answerer answers {options.answer_bars} bars. "
        "Held out as training splits them (pieces sorted by path, every 10th; folk tunes one "
        "by one from their ABC files; the classical works every 2nd piece, as few as they are). "
        "`auto chose` = the model `--model auto` picks for the calls (a single line: the melody "
        "model; chords: the chordal model under which the call is likeliest); `choosing` = the "
        "time that choice takes for each new onset while the call is played (the engine's "
        "control thread; a fresh follower per call). "
        f"Rows: `{AUTO_ROW}` = `--model auto` with the default settings (key auto, key lock "
        f"{lock:g}, register pull), `auto, key-lock 0` = the same without the key bias, `old "
        "default` = models/default.onnx for every call with no following (how the bridge "
        "answered before it followed the call), "
        f"`{MARKOV_ROW}` = Witten-Bell order 3 on the corpus's training split in the token "
        "scheme of the model auto picks there, `reference net` = models/reference-seed.onnx "
        "(the paper's method), and the real continuation. Figures: in-key share = answer notes "
        "in the call's Krumhansl-Schmuckler key (duration-weighted; major scale, or natural "
        "minor + leading tone); notes/onset = texture; single-line answers = answers whose "
        "onsets are ≥ 90 % single notes; |Δ pitch| = median over calls of |mean pitch(answer) − "
        "mean pitch(real)| in semitones; density = onsets per beat, as a share of the real "
        "continuations'; PC overlap = 1 − total-variation distance of pitch-class histograms "
        "(mean over calls); IOI overlap = overlap of the pooled inter-onset-interval histograms; "
        "motif echo = share of the call's top-line interval 3-grams the answer plays again; "
        "degenerate = one onset making up more than half of the answer, or under 4 onsets. "
        "Sampling: the bridge's sampler (top-p 0.95) at temperatures "
        f"{', '.join(f'{t:g}' for t in temperatures)}; same calls and random seeds for all."
    )


def _time_choices(follower: Any, call: Sequence[Any]) -> list[float]:
    """Seconds :meth:`~bridge.follow.Follower.choose` takes for each onset of ``call`` as it is
    played (a fresh follower, the call growing one onset at a time: what the engine's control
    thread spends while the musician plays)."""
    from bridge.follow import Follower

    fresh = Follower(follower.chordal, follower.melody, others=follower.chordals[1:])
    ordered = sorted(call, key=lambda n: n.onset)
    times = []
    for onset in sorted({n.onset for n in ordered}):
        start = time.perf_counter()
        fresh.choose([n for n in ordered if n.onset <= onset])
        times.append(time.perf_counter() - start)
    return times


def _spread(cases: list[Case], limit: int) -> list[Case]:
    """At most ``limit`` cases, evenly spaced over the list (every source file gets a say)."""
    if len(cases) <= limit:
        return cases
    return [
        cases[round(i * (len(cases) - 1) / (limit - 1))] if limit > 1 else cases[0]
        for i in range(limit)
    ]


def _counts_table(counts: list[list[str]]) -> Table:
    table = Table(
        [
            "corpus",
            "music21 corpora",
            "pieces",
            "held out",
            "calls used",
            "auto chose",
            "choosing, per new onset p50 / p99 ms",
        ],
        caption="**Corpora** (folk: one piece per tune)",
    )
    table.rows.extend(counts)
    return table


def _targets_table(targets: dict[str, dict[str, dict[str, tuple[bool, str]]]]) -> Table:
    table = Table(
        ["corpus", "T", *(label for _, label in TARGETS)],
        caption=f"**Targets** for `{AUTO_ROW}` (✓ met, ✗ missed)",
    )
    for corpus, by_t in targets.items():
        for temp, checks in by_t.items():
            table.rows.append(
                [
                    corpus,
                    temp,
                    *(f"{'✓' if checks[key][0] else '✗'} {checks[key][1]}" for key, _ in TARGETS),
                ]
            )
    return table


def _cell(key: str, value: float) -> str:
    if key in _PERCENT and np.isfinite(value):
        return f"{value * 100:.0f} %"
    return fmt(value)


def _row(
    rows: list[tuple[str, str, str, dict[str, float]]], corpus: str, name: str, temperature: float
) -> dict[str, float] | None:
    for c, n, t, stats in rows:
        if c == corpus and n == name and t == f"{temperature:g}":
            return stats
    return None


def _split(style: StyleCorpus, model: Any, options: Options) -> tuple[Any, int]:
    """The held-out split of ``style`` (quick runs: of its first few files) and its piece count."""
    from training.corpus import composer_files, load_corpus
    from training.dataset import split_pieces

    paths = sorted(p for c in style.composers for p in composer_files(c))
    if options.quick:
        paths = paths[: style.quick_files]
    corpus = load_corpus(paths, model.scheme, progress=False, warn=lambda _line: None)
    return split_pieces(corpus.pieces, style.every), len(corpus.pieces)


def _answerers(
    options: Options,
    split: Any,
    chordal: Any,
    follower: Any,
    scheme_model: Any,
    lock: float,
    temperatures: tuple[float, ...],
) -> list[Answerer]:
    from benchmarks.answerers import TOP_P, markov_answer, reference_answer
    from bridge.generate import continue_notes
    from training.markov import MarkovModel

    bars, per_bar = options.answer_bars, BEATS_PER_BAR

    def follow(key_lock: float) -> Answer:
        def answer(call: Sequence[Any], temperature: float, rng_seed: int) -> list[Any]:
            plan = follower.plan(list(call), None, "auto", key_lock)
            return continue_notes(
                plan.model,
                list(call),
                length=bars,
                length_unit="bars",
                temperature=temperature,
                top_p=TOP_P,
                seed=rng_seed,
                beats_per_bar=per_bar,
                bias=plan.bias,
            )

        return answer

    def old_default(call: Sequence[Any], temperature: float, rng_seed: int) -> list[Any]:
        return continue_notes(
            chordal,
            list(call),
            length=bars,
            length_unit="bars",
            temperature=temperature,
            top_p=TOP_P,
            seed=rng_seed,
            beats_per_bar=per_bar,
        )

    answerers = [
        Answerer(AUTO_ROW, follow(lock), temperatures),
        Answerer("auto, key-lock 0", follow(0.0), temperatures),
        Answerer("old default", old_default, temperatures),
    ]
    scheme = scheme_model.scheme
    train = [np.asarray(scheme.encode(p.notes), np.int64) for p in split.train if p.notes]
    markov = MarkovModel(3, scheme.vocab_size, pad=scheme.bos).fit(train)

    def chain(call: Sequence[Any], temperature: float, rng_seed: int) -> list[Any]:
        return markov_answer(
            markov,
            scheme,
            call,
            bars=bars,
            beats_per_bar=per_bar,
            temperature=temperature,
            rng_seed=rng_seed,
        )

    answerers.append(Answerer(MARKOV_ROW, chain, temperatures))
    if options.reference_model.is_file():
        from training.onnx_runner import WindowRunner

        runner = WindowRunner(options.reference_model, threads=1)

        def reference(call: Sequence[Any], temperature: float, rng_seed: int) -> list[Any]:
            return reference_answer(
                runner,
                call,
                bars=bars,
                beats_per_bar=per_bar,
                steps_per_beat=STEPS_PER_BEAT,
                temperature=temperature,
                rng_seed=rng_seed,
            )

        answerers.append(Answerer("reference net", reference, temperatures))
    return answerers


def _provenance(metadata: dict[str, str]) -> str:
    try:
        info = json.loads(metadata.get("antiphon.training", "{}"))
    except json.JSONDecodeError:
        info = {}
    if not isinstance(info, dict) or not info:
        return "no training record"
    parts = []
    sources = info.get("corpus", {}).get("sources")
    if sources:
        parts.append("on " + ", ".join(str(s).removeprefix("music21:") for s in sources))
    for key in ("epochs", "seconds"):
        if key in info:
            value = info[key]
            parts.append(f"{key} {value:.0f}" if isinstance(value, float) else f"{key} {value}")
    return "trained " + (", ".join(parts) if parts else "(see its metadata)")


def _pianoroll(out_dir: Path, case: Case, answers: dict[str, list[Any]]) -> str:
    """One call answered before (old default) and after (auto), beside the real continuation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(REAL_ROW, list(case.continuation)), *answers.items()]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(11, 2.3 * len(panels)), sharex=True, sharey=True
    )
    offset = max(n.onset for n in case.call)  # answers count from the last call onset
    for ax, (title, notes) in zip(axes, panels, strict=True):
        for n in case.call:
            ax.broken_barh(
                [(n.onset / STEPS_PER_BEAT, n.duration / STEPS_PER_BEAT)],
                (n.pitch - 0.4, 0.8),
                color="tab:blue",
            )
        start = offset if title != REAL_ROW else max(n.onset + n.duration for n in case.call)
        for n in notes:
            ax.broken_barh(
                [((start + n.onset) / STEPS_PER_BEAT, n.duration / STEPS_PER_BEAT)],
                (n.pitch - 0.4, 0.8),
                color="tab:orange",
            )
        ax.set_title(f"{case.name}: call (blue) + {title} (orange)", fontsize=9)
        ax.set_ylabel("MIDI pitch")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("beats")
    fig.tight_layout()
    name = "call-answer.png"
    fig.savefig(out_dir / name, dpi=100)
    plt.close(fig)
    return name


def _plot(out_dir: Path, rows: list[tuple[str, str, str, dict[str, float]]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(dict.fromkeys(c for c, _, _, _ in rows))
    names = list(dict.fromkeys(n for _, n, t, _ in rows if t in ("1", "–")))
    panels = [
        ("in_key", "in call's key"),
        ("notes_per_onset", "notes per onset"),
        ("pitch_gap", "|Δ mean pitch| vs real (st)"),
        ("density_ratio", "density / real"),
        ("ioi_overlap", "IOI overlap"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(16, 3.8))
    width = 0.8 / max(1, len(names))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for i, name in enumerate(names):
            values = []
            for corpus in corpora:
                stats = next(
                    (s for c, n, t, s in rows if c == corpus and n == name and t in ("1", "–")), {}
                )
                values.append(stats.get(key, float("nan")))
            ax.bar(np.arange(len(corpora)) + i * width, values, width, label=name)
        ax.set_xticks(np.arange(len(corpora)) + width * (len(names) - 1) / 2, corpora, fontsize=8)
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("call and answer at T = 1 (real continuation for reference)", fontsize=10)
    fig.tight_layout()
    name = "quality.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name
