"""Section 4 — training: the default architecture vs ``--arch reference`` on the Bach chorales.

Both are built, compiled and fed exactly as ``antiphon train`` does (``training.model``,
``training.reference``, ``training.dataset`` with :class:`training.train.TrainConfig`'s defaults),
then trained for the same wall-clock budget in chunks; after each chunk the held-out loss is
measured on a fixed set of held-out windows, with the evaluation time left out of the budget.
Throughput (samples/s, predicted targets/s, seconds per epoch) comes from the chunks after the
first (which includes graph tracing).  The trained nets are exported (``training.export``) for
section 6.  Main thread only; TensorFlow is imported here.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.options import Options
from benchmarks.report import Section, Table
from benchmarks.stats import Summary, fmt, ratio, summarize

__all__ = ["Curve", "recipe", "run", "value_at"]

VAL_WINDOWS_REF = 256  # held-out windows scored per evaluation (the reference net is slow)


@dataclass
class Curve:
    """One architecture's run: held-out nats/event after each chunk, and chunk throughput."""

    name: str
    samples: int  # training windows in one epoch
    targets_per_sample: int
    points: list[tuple[float, float]] = field(default_factory=list)  # (train s, nats/event)
    chunk_rates: list[float] = field(default_factory=list)  # samples/s per chunk
    markov: float = float("nan")  # Markov order-3 nats/event, same tokens
    eval_seconds: float = 0.0
    parameters: int = 0
    onnx: Path | None = None


def recipe(path: Path, arch: str) -> Any:
    """The :class:`training.train.TrainConfig` a shipped model was trained with (its
    ``antiphon.training`` params), else ``antiphon train``'s defaults for ``arch``."""
    import json

    from training.train import TrainConfig

    params: dict[str, Any] = {}
    if path.is_file():
        from training.export import read_metadata

        try:
            info = json.loads(read_metadata(path).get("antiphon.training", "{}"))
            params = dict(info.get("params") or {})
        except (ValueError, TypeError, AttributeError):
            params = {}
    params.pop("max_minutes", None)
    return TrainConfig.from_dict({**params, "arch": arch})


def _corpus(options: Options) -> Any:
    from bridge.tokens import TokenScheme
    from training.corpus import composer_files, load_corpus
    from training.train import TrainConfig

    paths = composer_files("bach")
    if options.quick:
        paths = paths[:60]
    base: TokenScheme = TrainConfig().base_scheme()
    return load_corpus(paths, base, progress=False, warn=lambda _line: None), base


def _prepare_default(corpus: Any, base: Any, config: Any, val_windows: int) -> dict[str, Any]:
    from training.dataset import build_dataset, concat, windows
    from training.model import LstmConfig, build_lstm, compile_model

    data = build_dataset(
        corpus.pieces, base, chord_cap=config.chord_cap, every=config.held_out_every
    )
    x, y = windows(concat(data.train), config.window)
    held = concat(data.held_out)
    val_x, val_y = windows(held, config.window)
    val_x, val_y = val_x[:val_windows], val_y[:val_windows]
    scheme = data.scheme
    events = int(np.count_nonzero((val_y >= scheme.shift_base) & (val_y < scheme.rest)))
    model_config = LstmConfig(
        scheme.vocab_size, config.embedding, tuple(config.units), config.dropout
    )

    def build() -> Any:
        model = build_lstm(model_config)
        compile_model(model, config.lr)
        return model

    def export(model: Any, path: Path, seconds: float) -> None:
        from training.export import export_lstm

        export_lstm(
            model,
            model_config,
            scheme,
            {"arch": "default", "seconds": seconds, "benchmark": "equal time budget"},
            path,
        )

    return {
        "x": x,
        "y": y,
        "val_x": val_x,
        "val_y": val_y,
        "per_event": val_y.size / max(1, events),
        "build": build,
        "export": export,
        "targets": config.window,
        "train_streams": list(data.train),
        "held": [held],
        "vocab": scheme.vocab_size,
    }


def _prepare_reference(corpus: Any, config: Any, val_windows: int) -> dict[str, Any]:
    from training.dataset import split_pieces
    from training.reference import (
        ReferenceConfig,
        ReferenceVocabulary,
        build_reference,
        compile_reference,
        reference_symbols,
        reference_windows,
    )

    split = split_pieces(corpus.pieces, config.held_out_every)
    symbols = [reference_symbols(p.notes) for p in split.train]
    vocabulary = ReferenceVocabulary.from_streams(symbols)
    reference = ReferenceConfig(vocabulary.size)
    train = vocabulary.ids(s for stream in symbols for s in stream)
    held = vocabulary.ids(s for p in split.held_out for s in reference_symbols(p.notes))
    x, y = reference_windows(train, reference.window)
    stride = max(1, (len(held) - reference.window) // val_windows)
    val_x, val_y = reference_windows(held, reference.window, stride)
    val_x, val_y = val_x[:val_windows], val_y[:val_windows]

    def build() -> Any:
        model = build_reference(reference)
        compile_reference(model, config.lr)
        return model

    def export(model: Any, path: Path, seconds: float) -> None:
        from training.export import export_reference

        export_reference(
            model,
            reference,
            vocabulary,
            {"arch": "reference", "seconds": seconds, "benchmark": "equal time budget"},
            path,
        )

    return {
        "x": x,
        "y": y,
        "val_x": val_x,
        "val_y": val_y,
        "per_event": 1.0,
        "build": build,
        "export": export,
        "targets": 1,
        "train_streams": [train],
        "held": [held],
        "vocab": vocabulary.size,
    }


def _markov_nats(prepared: dict[str, Any]) -> float:
    """Markov order-3 held-out nats/event on the same tokens (no grammar mask, like the loss)."""
    from training.markov import MarkovModel

    model = MarkovModel(3, prepared["vocab"]).fit(prepared["train_streams"])
    total, count = 0.0, 0
    for stream in prepared["held"]:
        probs = model.stream_distributions(stream)
        total -= float(np.log(probs[np.arange(len(stream) - 1), stream[1:]]).sum())
        count += len(stream) - 1
    return total / max(1, count) * prepared["per_event"]


def _train(
    name: str,
    prepared: dict[str, Any],
    budget: float,
    batch: int,
    rng: np.random.Generator,
    points: int,
    first_steps: int = 4,
) -> tuple[Curve, Any]:
    """Train for ``budget`` seconds of fit() time in chunks, evaluating after each."""
    x, y = prepared["x"], prepared["y"]
    curve = Curve(name, len(x), prepared["targets"])
    model = prepared["build"]()
    curve.parameters = int(model.count_params())

    def evaluate() -> float:
        start = time.perf_counter()
        loss = model.evaluate(prepared["val_x"], prepared["val_y"], batch_size=256, verbose=0)
        curve.eval_seconds += time.perf_counter() - start
        value = loss[0] if isinstance(loss, (list, tuple)) else loss
        return float(value) * prepared["per_event"]

    curve.points.append((0.0, evaluate()))
    trained = 0.0
    steps = first_steps  # first chunk: small, it pays for graph tracing
    order = rng.permutation(len(x))
    cursor = 0
    while trained < budget or len(curve.chunk_rates) < 2:
        take = min(steps * batch, len(x))
        if cursor + take > len(order):
            order, cursor = rng.permutation(len(x)), 0
        index = order[cursor : cursor + take]
        cursor += take
        start = time.perf_counter()
        model.fit(x[index], y[index], batch_size=batch, epochs=1, shuffle=False, verbose=0)
        seconds = time.perf_counter() - start
        trained += seconds
        if len(curve.points) > 1:  # the first chunk includes tracing
            curve.chunk_rates.append(take / seconds)
        curve.points.append((trained, evaluate()))
        per_step = seconds / (take / batch)
        remaining = budget - trained
        steps = max(1, min(int(budget / points / per_step), int(remaining / per_step) + 1))
    return curve, model


def run(options: Options, context: dict[str, object]) -> Section:
    import keras

    section = Section(4, "Training")
    configs = {
        "default": recipe(options.model, "default"),
        "reference": recipe(options.reference_model, "reference"),
    }
    corpus, base = _corpus(options)
    rng = np.random.default_rng(options.rng_seed)
    keras.utils.set_random_seed(options.rng_seed)
    work = Path(tempfile.mkdtemp(prefix="antiphon-bench-train-"))
    context["work_dir"] = work
    curves: dict[str, Curve] = {}
    quick = options.quick
    for arch, label, prepare in (
        (
            "default",
            "default (Antiphon)",
            lambda: _prepare_default(corpus, base, configs["default"], 16 if quick else 1024),
        ),
        (
            "reference",
            "--arch reference",
            lambda: _prepare_reference(
                corpus, configs["reference"], 16 if quick else VAL_WINDOWS_REF
            ),
        ),
    ):
        prepared = prepare()
        curve, model = _train(
            label,
            prepared,
            options.train_seconds,
            configs[arch].batch,
            rng,
            points=2 if quick else 8,
            first_steps=1 if quick else 4,
        )
        curve.markov = _markov_nats(prepared)
        curves[arch] = curve
        if arch == "reference" or not quick:  # section 6 answers with them (quick: reference)
            path = work / f"{arch}-budget.onnx"
            prepared["export"](model, path, curve.points[-1][0])
            curve.onnx = path
            context[f"{arch}_budget_onnx"] = path
        keras.backend.clear_session()
    context["reference_onnx"] = curves["reference"].onnx
    d_cfg, s_cfg = configs["default"], configs["reference"]
    section.method = (
        f"{len(corpus.pieces)} Bach chorales, split as `antiphon train` splits them (every 10th "
        "held out); both architectures built, compiled and fed as `antiphon train` does, with "
        "the settings the shipped models were trained with (their `antiphon.training` params). "
        f"Default: embedding {d_cfg.embedding} → LSTM {'×'.join(map(str, d_cfg.units))}, "
        f"windows of {d_cfg.window} tokens, batch {d_cfg.batch}, Adam {d_cfg.lr:g}, every "
        "position predicts its next token. Seed: one-hot window of 100 events → LSTM 512 → "
        f"LSTM 256 → softmax, batch {s_cfg.batch}, Adam {s_cfg.lr:g}, one prediction per "
        "window. Each "
        f"trained for the same {options.train_seconds:g} s of `fit` time in chunks. After each "
        "chunk the held-out loss is measured on fixed held-out windows (evaluation time not "
        "counted) and converted to nats per event: Antiphon's events are 2–4 tokens "
        "(shift, pitches, duration, velocity); the reference's events are one symbol (pitch or "
        "pitch-class set, no duration) — different events, so each is also compared with a "
        "Markov order-3 chain on its own tokens. Fit time includes the first chunk's graph "
        "tracing; throughput excludes that chunk. Runs stop at the first chunk end past the "
        "budget; the held-out figure is read off both curves at the same moment."
    )
    # compare at the same moment: the budget, or the earlier end if a run stopped short
    at = min(options.train_seconds, *(c.points[-1][0] for c in curves.values()))
    table = Table(
        [
            "architecture",
            "parameters",
            "fit s",
            "samples/s p50",
            "targets/s p50",
            "seconds/epoch",
            f"held-out nats/event at {at:.0f} s",
            "Markov-3 same tokens",
            "vs its Markov-3",
        ],
        caption=f"**Equal budget: {options.train_seconds:g} s of fit time each**",
    )
    rates: dict[str, Summary] = {}
    finals: dict[str, float] = {}
    for arch, curve in curves.items():
        rate = summarize(curve.chunk_rates)
        rates[arch] = rate
        final = finals[arch] = value_at(curve.points, at)
        table.rows.append(
            [
                curve.name,
                f"{curve.parameters:,}",
                fmt(curve.points[-1][0]),
                fmt(rate.p50),
                fmt(rate.p50 * curve.targets_per_sample),
                fmt(ratio(curve.samples, rate.p50)),
                fmt(final),
                fmt(curve.markov),
                f"{fmt(ratio(final, curve.markov))}×",
            ]
        )
        section.data[arch] = {
            "parameters": curve.parameters,
            "samples_per_s": rate,
            "targets_per_sample": curve.targets_per_sample,
            "epoch_samples": curve.samples,
            "points": curve.points,
            "markov3_nats_per_event": curve.markov,
            "eval_seconds": curve.eval_seconds,
        }
    section.tables.append(table)
    d, s = rates["default"], rates["reference"]
    section.notes.append(
        f"Predicted targets per second: default {fmt(d.p50 * curves['default'].targets_per_sample)}"
        f" vs reference {fmt(s.p50)} — "
        f"{fmt(ratio(d.p50 * curves['default'].targets_per_sample, s.p50))}× more training "
        "signal per second, because every position of a window is a target."
    )
    section.figures.append(_plot(options.out_dir, curves))
    section.headline.append(
        (
            "training throughput, predicted targets/s (p50)",
            fmt(d.p50 * curves["default"].targets_per_sample),
            f"{fmt(s.p50)} (--arch reference)",
            f"{fmt(ratio(d.p50 * curves['default'].targets_per_sample, s.p50))}×",
        )
    )
    section.headline.append(
        (
            f"held-out nats/event after {at:.0f} s of training, ÷ its own Markov-3",
            f"{fmt(ratio(finals['default'], curves['default'].markov))}×",
            f"{fmt(ratio(finals['reference'], curves['reference'].markov))}× (--arch reference)",
            "lower is better; below 1 beats the Markov chain",
        )
    )
    return section


def value_at(points: list[tuple[float, float]], t: float) -> float:
    """The curve's value at time ``t`` (linear between evaluations, held after the last)."""
    times = [p[0] for p in points]
    values = [p[1] for p in points]
    return float(np.interp(t, times, values))


def _plot(out_dir: Path, curves: dict[str, Curve]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (_, curve), color in zip(curves.items(), ("tab:green", "tab:gray"), strict=False):
        t, v = zip(*curve.points, strict=True)
        ax.plot(t, v, marker="o", color=color, label=curve.name)
        ax.axhline(curve.markov, color=color, ls=":", label=f"Markov-3, {curve.name} tokens")
    ax.set_xlabel("training wall-clock seconds (fit only)")
    ax.set_ylabel("held-out NLL, nats per event")
    ax.set_title("Held-out NLL at equal time budgets")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    name = "training.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name
