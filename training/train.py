"""``antiphon train``: corpus → windows → Keras fit with checkpoints → ONNX → held-out scores.

A run lives in its run directory: ``state.json`` (epoch, best held-out loss, patience counter,
seconds, configuration, the checkpoint's file name), ``checkpoint-NNNN.keras`` (model +
optimizer, written atomically every epoch, then named in ``state.json``), ``best.weights.h5``,
``log.csv`` and ``learning-curve.png``.  Ctrl-C loses at most the current epoch; ``--resume``
continues from ``state.json`` with the same settings.  Early stopping watches the held-out loss.
With ``TF_CONFIG`` set, training runs on every worker under MultiWorkerMirroredStrategy and only
the chief (worker 0) writes files.  TensorFlow is imported here only, inside :func:`train`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bridge.errors import ConfigError
from bridge.tokens import TokenScheme
from training.corpus import DEFAULT_CACHE_DIR, Corpus, load_sources
from training.dataset import build_dataset, concat, transposition_table, windows
from training.distribute import Cluster, cluster_from_env
from training.model import LstmConfig
from training.reference import (
    ReferenceConfig,
    ReferenceVocabulary,
    reference_symbols,
    reference_windows,
)

__all__ = ["INTERRUPTED", "TrainConfig", "train"]

INTERRUPTED = 130  # exit status after Ctrl-C, like a shell
STATE = "state.json"
ARCHES = ("default", "reference")
"""``--arch``: Antiphon's own LSTM, or the paper's reference network (for comparison)."""
ARCH_ALIASES = {"seed": "reference"}
"""Old names still accepted (``--arch seed``, and ``state.json`` of runs made with it)."""

# settings that may change on --resume; every other one must match the interrupted run
_RESUMABLE = {"epochs", "patience", "max_minutes"}


@dataclass
class TrainConfig:
    """Every setting of a run (stored in ``state.json``; ``--resume`` checks it)."""

    arch: str = "default"
    composers: list[str] = field(default_factory=list)
    midi_dirs: list[str] = field(default_factory=list)
    max_pieces: int | None = None
    held_out_every: int = 10
    steps_per_beat: int = 4
    chord_cap: int = 512
    augment: int = 0
    transpose: int = 0
    embedding: int = 128
    units: list[int] = field(default_factory=lambda: [256, 256])
    dropout: float = 0.2
    window: int = 128
    batch: int = 64
    lr: float = 1e-3
    epochs: int = 40
    patience: int = 5
    steps_per_epoch: int | None = None
    max_minutes: float | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        self.arch = ARCH_ALIASES.get(self.arch, self.arch)  # runs and models of older versions
        if self.arch not in ARCHES:
            raise ConfigError(f"--arch must be 'default' or 'reference', got {self.arch!r}")
        for name in ("epochs", "batch", "window", "steps_per_beat", "embedding"):
            if getattr(self, name) < 1:
                flag = name.replace("_", "-")
                raise ConfigError(f"--{flag} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ConfigError(f"--patience must be >= 0, got {self.patience}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"--steps-per-epoch must be >= 1, got {self.steps_per_epoch}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"--max-minutes must be > 0, got {self.max_minutes}")
        if not 0 <= self.transpose <= 12:
            raise ConfigError(f"--transpose must be 0..12 semitones, got {self.transpose}")
        if self.transpose and self.arch != "default":
            raise ConfigError("--transpose works with --arch default only")
        if self.held_out_every < 2:
            raise ConfigError(f"--held-out-every must be >= 2, got {self.held_out_every}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def base_scheme(self) -> TokenScheme:
        return TokenScheme(
            steps_per_beat=self.steps_per_beat,
            max_shift=8 * self.steps_per_beat,
            max_duration=8 * self.steps_per_beat,
        )


# ----- run directory ----------------------------------------------------------------------------


def _write_atomic(path: Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path`` (a crash leaves the old file intact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # same full name behind a unique prefix: Keras insists on ".keras" / ".weights.h5" endings
    tmp = str(path.parent / f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def read_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((run_dir / STATE).read_text())
        return data
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {run_dir / STATE}: {exc}") from exc


def _fresh_run_dir(run_dir: Path) -> None:
    """Remove the files of an earlier run in ``run_dir`` (only our own file names)."""
    for pattern in (
        STATE,
        "checkpoint-*.keras",
        "best.weights.h5",
        "log.csv",
        "learning-curve.png",
        "model.onnx",
    ):
        for path in run_dir.glob(pattern):
            path.unlink()


def _check_resumable(saved: dict[str, Any], config: TrainConfig) -> None:
    current = config.to_dict()
    changed = [k for k, v in saved.items() if k not in _RESUMABLE and current.get(k) != v]
    if changed:
        detail = ", ".join(f"{k}: {saved[k]!r} → {current.get(k)!r}" for k in changed)
        raise ConfigError(f"--resume needs the settings of the interrupted run ({detail})")


# ----- data -------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Arrays for fit plus what export and the model card need to know."""

    x: np.ndarray
    y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    build: Callable[[], Any]  # → compiled keras.Model
    export: Callable[[Any, dict[str, Any], Path], None]
    summary: dict[str, Any]
    saved_vocabulary: dict[str, Any]
    transposition: np.ndarray | None = None  # see training.dataset.transposition_table


def _prepare_default(config: TrainConfig, corpus: Corpus, saved: dict[str, Any] | None) -> Prepared:
    from training.export import export_lstm

    scheme = TokenScheme.from_dict(saved["scheme"]) if saved else None
    data = build_dataset(
        corpus.pieces,
        config.base_scheme(),
        chord_cap=config.chord_cap,
        augment=config.augment,
        every=config.held_out_every,
        scheme=scheme,
    )
    if not data.held_out:
        raise ConfigError(
            f"too few pieces ({len(corpus.pieces)}) to hold out every {config.held_out_every}th one"
        )
    x, y = windows(concat(data.train), config.window)
    held = concat(data.held_out)
    val_x, val_y = windows(held, min(config.window, len(held) - 1))
    if not len(x):
        raise ConfigError(f"the training split has fewer tokens than one window ({config.window})")
    model_config = LstmConfig(
        data.scheme.vocab_size, config.embedding, tuple(config.units), config.dropout
    )

    def build() -> Any:
        from training.model import build_lstm, compile_model

        model = build_lstm(model_config)
        compile_model(model, config.lr)
        return model

    def export(model: Any, training: dict[str, Any], path: Path) -> None:
        export_lstm(model, model_config, data.scheme, training, path)

    summary = {
        "architecture": model_config.to_dict(),
        "corpus": {
            **corpus.summary(),
            "events": int(sum(len(data.scheme.events_from_notes(p.notes)) for p in corpus.pieces)),
            "tokens": int(sum(len(t) for t in data.train)),
        },
        "split": data.summary(),
    }
    table = transposition_table(data.scheme, config.transpose) if config.transpose else None
    if table is not None:
        summary["split"]["transpose_semitones"] = config.transpose
    return Prepared(
        x, y, val_x, val_y, build, export, summary, {"scheme": data.scheme.to_dict()}, table
    )


def _prepare_seed(config: TrainConfig, corpus: Corpus, saved: dict[str, Any] | None) -> Prepared:
    from training.dataset import split_pieces
    from training.export import export_reference

    split = split_pieces(corpus.pieces, config.held_out_every)
    if not split.held_out:
        raise ConfigError(f"too few pieces ({len(corpus.pieces)}) for a held-out split")
    train_symbols = [reference_symbols(p.notes) for p in split.train]
    vocabulary = (
        ReferenceVocabulary(tuple(saved["vocabulary"]))
        if saved
        else ReferenceVocabulary.from_streams(train_symbols)
    )
    if len(config.units) != 2:
        raise ConfigError(f"--arch reference has two LSTM layers, got --units {config.units}")
    reference = ReferenceConfig(vocabulary.size, units=(config.units[0], config.units[1]))
    train = vocabulary.ids(s for stream in train_symbols for s in stream)
    held = vocabulary.ids(s for p in split.held_out for s in reference_symbols(p.notes))
    x, y = reference_windows(train, reference.window)
    stride = max(1, (len(held) - reference.window) // 2048)  # ≤ ~2k validation windows per epoch
    val_x, val_y = reference_windows(held, reference.window, stride)
    if not len(x) or not len(val_x):
        raise ConfigError(f"--arch reference needs more than {reference.window} events per split")

    def build() -> Any:
        from training.reference import build_reference, compile_reference

        model = build_reference(reference)
        compile_reference(model, config.lr)
        return model

    def export(model: Any, training: dict[str, Any], path: Path) -> None:
        export_reference(model, reference, vocabulary, training, path)

    summary = {
        "architecture": reference.to_dict(),
        "corpus": {**corpus.summary(), "events": int(len(train) + len(held)), "tokens": len(train)},
        "split": {
            **split.summary(),
            "vocab_size": vocabulary.size,
            "train_tokens": len(train),
            "held_out_tokens": len(held),
            "validation_stride": stride,
        },
    }
    return Prepared(
        x, y, val_x, val_y, build, export, summary, {"vocabulary": list(vocabulary.symbols)}
    )


# ----- Keras callback ---------------------------------------------------------------------------


class _DeferredInterrupt:
    """Ctrl-C during ``fit``: remembered, then raised as KeyboardInterrupt at the next batch
    boundary (:meth:`check`, from the Keras callback).

    Python raises KeyboardInterrupt wherever the main thread is; inside TensorFlow's C++ that
    surfaces as ``SystemError: bad argument to internal function`` with a traceback instead of
    the resume hint.  A second Ctrl-C interrupts at once.  Main thread only.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _make_keeper(
    run_dir: Path,
    state: dict[str, Any],
    config: TrainConfig,
    cluster: Cluster,
    started: float,
    check_interrupt: Callable[[], None] = lambda: None,
) -> Any:
    import keras

    class RunKeeper(keras.callbacks.Callback):
        """Per epoch: checkpoint, state, CSV row, learning curve, early stop, time budget.
        Per batch: a deferred Ctrl-C (``check_interrupt``)."""

        def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
            check_interrupt()

        def on_test_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
            check_interrupt()

        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            check_interrupt()
            self._t0 = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = dict(logs or {})
            seconds = time.monotonic() - self._t0
            val = float(logs.get("val_loss", logs.get("loss", float("nan"))))
            improved = val < state["best_loss"] - 1e-4
            state["epoch"] = epoch + 1
            state["seconds"] = round(state["seconds"] + seconds, 2)
            if improved:
                state["best_loss"], state["best_epoch"], state["wait"] = val, epoch + 1, 0
            else:
                state["wait"] += 1
            if cluster.is_chief:
                self._save(epoch + 1, improved, logs, seconds)
            if config.patience and state["wait"] >= config.patience:
                state["stopped"] = "early"
                self.model.stop_training = True
            elif config.max_minutes and time.monotonic() - started >= 60 * config.max_minutes:
                state["stopped"] = "time"
                self.model.stop_training = True
            elif state["epoch"] >= config.epochs:
                state["stopped"] = "done"
            if state.get("stopped") and cluster.is_chief:
                _write_json(run_dir / STATE, state)

        def _save(self, epoch: int, improved: bool, logs: dict[str, float], seconds: float) -> None:
            if improved:
                _write_atomic(run_dir / "best.weights.h5", self.model.save_weights)
            name = f"checkpoint-{epoch:04d}.keras"
            _write_atomic(run_dir / name, self.model.save)
            row = {
                "epoch": epoch,
                "seconds": round(seconds, 2),
                **{k: round(float(v), 6) for k, v in sorted(logs.items())},
            }
            _append_csv(run_dir / "log.csv", row)  # a resume trims rows the state does not cover
            old = state.get("checkpoint")
            state["checkpoint"] = name
            _write_json(run_dir / STATE, state)  # from here on the new checkpoint is the one
            if old and old != name:
                (run_dir / old).unlink(missing_ok=True)
            _plot(run_dir / "log.csv", run_dir / "learning-curve.png")

    return RunKeeper()


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    exists = path.exists() and path.stat().st_size > 0
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if not exists:
            writer.writeheader()
        writer.writerow(row)


def _trim_csv(path: Path, epochs: int) -> None:
    """Drop rows of epochs after the checkpoint (an interrupt may land between row and state)."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= epochs]
    if rows:

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as out:
                writer = csv.DictWriter(out, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)

        _write_atomic(path, write)
    else:
        path.unlink()


def _plot(csv_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(r["epoch"]) for r in rows]
    figure, axis = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "training"), ("val_loss", "held-out")):
        if rows and key in rows[0]:
            axis.plot(epochs, [float(r[key]) for r in rows], marker="o", label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("cross-entropy (nats/token)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    _write_atomic(png_path, lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
    plt.close(figure)


# ----- the run ------------------------------------------------------------------------------------


def _transposer(table: np.ndarray, seed: int) -> Any:
    """tf.data map: one window moved by a random shift among those that keep it valid
    (:func:`training.dataset.transpose_windows` is the numpy twin)."""
    import tensorflow as tf

    lookup = tf.constant(table, tf.int32)
    generator = tf.random.Generator.from_seed(seed)

    def move(x: Any, y: Any) -> tuple[Any, Any]:
        rows, targets = tf.gather(lookup, x, axis=1), tf.gather(lookup, y, axis=1)
        valid = tf.reduce_all((rows >= 0) & (targets >= 0), axis=1)  # [shifts]
        noise = generator.uniform(tf.shape(valid))
        pick = tf.argmax(tf.where(valid, noise, -1.0), output_type=tf.int32)
        return rows[pick], targets[pick]

    return move


def _dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch: int,
    *,
    shuffle: bool,
    seed: int,
    repeat: bool,
    distributed: bool,
    transposition: np.ndarray | None = None,
) -> Any:
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if transposition is not None:
        data = data.map(_transposer(transposition, seed))
    data = data.batch(batch)
    if repeat:
        data = data.repeat()
    if distributed:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        data = data.with_options(options)
    return data.prefetch(tf.data.AUTOTUNE)


def resume_hint(argv: Sequence[str]) -> str:
    args = list(argv)
    if "--resume" not in args:
        args.append("--resume")
    return "antiphon " + " ".join(shlex.quote(a) for a in args)


def train(
    config: TrainConfig,
    *,
    out: Path,
    run_dir: Path,
    resume: bool = False,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    progress: bool = True,
    argv: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> int:
    """Run (or resume) a training run and write the model file; returns the exit status."""
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    cluster = cluster_from_env()
    state = read_state(run_dir)
    if resume:
        if state is None and not run_dir.is_dir():
            raise ConfigError(f"nothing to resume: no {STATE} in {run_dir}")
        if state is None:  # interrupted before its first epoch was saved
            say(f"nothing saved yet in {run_dir}: starting from epoch 0")
            resume = False
        else:
            _check_resumable(state["config"], config)
    if cluster.is_chief:
        # From here on an interrupted run leaves its run directory, so --resume always works;
        # temporary files of a write a crash cut short are dropped.
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob(".tmp-*"):
            stale.unlink(missing_ok=True)
    started = time.monotonic()

    # Corpus first: its worker processes fork before TensorFlow exists in this process.
    corpus = load_sources(
        config.base_scheme(),
        composers=config.composers,
        midi_dirs=config.midi_dirs,
        max_pieces=config.max_pieces,
        cache_dir=cache_dir,
        progress=progress and cluster.is_chief,
    )
    say(
        f"corpus: {len(corpus.pieces)} pieces, {corpus.events:,} notes "
        f"({corpus.converted} converted, {corpus.cached} from cache, "
        f"{len(corpus.skipped)} skipped)"
    )
    prepare = _prepare_default if config.arch == "default" else _prepare_seed
    prepared = prepare(config, corpus, state["data"] if resume and state else None)
    say(
        f"data: {len(prepared.x):,} training windows, {len(prepared.val_x):,} held-out windows; "
        f"split {prepared.summary['split']}"
    )

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    import keras

    from training.distribute import make_strategy, patch_keras_for_multi_worker

    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(cluster)
    checkpoint = None
    if resume and state is not None and state.get("checkpoint"):
        checkpoint = run_dir / state["checkpoint"]
        if not checkpoint.exists():
            raise ConfigError(f"checkpoint {checkpoint} named in {STATE} is missing")
    elif cluster.is_chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        _fresh_run_dir(run_dir)
    if not resume or state is None:
        state = {
            "epoch": 0,
            "best_loss": float("inf"),
            "best_epoch": 0,
            "wait": 0,
            "seconds": 0.0,
            "stopped": None,
            "checkpoint": None,
            "config": config.to_dict(),
            "data": prepared.saved_vocabulary,
        }
    else:
        state["config"] = config.to_dict()
        if state.get("stopped") in ("time", "done") and state["epoch"] < config.epochs:
            state["stopped"] = None  # more epochs asked for, or a new time budget
        _trim_csv(run_dir / "log.csv", state["epoch"])
    with strategy.scope():
        model = keras.models.load_model(checkpoint) if checkpoint else prepared.build()
    if cluster.distributed:
        patch_keras_for_multi_worker(model, strategy, (prepared.x[:2], prepared.y[:2]))
    batch = config.batch * cluster.workers
    train_data = _dataset(
        prepared.x,
        prepared.y,
        batch,
        shuffle=True,
        seed=config.seed,
        repeat=config.steps_per_epoch is not None,
        distributed=cluster.distributed,
        transposition=prepared.transposition,
    )
    val_data = _dataset(
        prepared.val_x,
        prepared.val_y,
        batch,
        shuffle=False,
        seed=0,
        repeat=False,
        distributed=cluster.distributed,
    )
    say(
        f"model: {model.count_params():,} parameters; epochs {state['epoch']}→{config.epochs}, "
        f"run directory {run_dir}" + (f", {cluster.workers} workers" if cluster.distributed else "")
    )
    if state.get("stopped") is None and state["epoch"] < config.epochs:
        interrupt = _DeferredInterrupt()
        keeper = _make_keeper(run_dir, state, config, cluster, started, interrupt.check)
        try:
            with interrupt:
                model.fit(
                    train_data,
                    validation_data=val_data,
                    epochs=config.epochs,
                    initial_epoch=state["epoch"],
                    steps_per_epoch=config.steps_per_epoch,
                    callbacks=[keeper],
                    shuffle=False,  # tf.data shuffles already
                    verbose=1 if sys.stdout.isatty() else 2,
                )
        except KeyboardInterrupt:
            say(
                f"\ninterrupted: {state['epoch']} of {config.epochs} epochs are saved in "
                f"{run_dir}; resume with: {resume_hint(argv)}"
            )
            return INTERRUPTED
    if not cluster.is_chief:
        return 0
    say(
        f"training stopped after epoch {state['epoch']} ({state.get('stopped') or 'done'}); "
        f"best held-out loss {state['best_loss']:.4f} nats/token at epoch {state['best_epoch']}"
    )
    if (run_dir / "best.weights.h5").exists():
        model.load_weights(run_dir / "best.weights.h5")
    training = {
        **prepared.summary,
        "params": {
            k: v for k, v in config.to_dict().items() if k not in ("composers", "midi_dirs", "arch")
        },
        "parameters": int(model.count_params()),
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "stopped": state.get("stopped") or "done",
        "seconds": state["seconds"],
        "held_out_loss_nats_per_token": round(float(state["best_loss"]), 5),
        "workers": cluster.workers,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": {"keras": keras.__version__, "tensorflow": _tf_version()},
    }
    _export_and_score(prepared, model, training, corpus, config, run_dir, out, say)
    return 0


def _tf_version() -> str:
    import tensorflow as tf

    return str(tf.__version__)


def _export_and_score(
    prepared: Prepared,
    model: Any,
    training: dict[str, Any],
    corpus: Corpus,
    config: TrainConfig,
    run_dir: Path,
    out: Path,
    say: Callable[[str], None],
) -> None:
    """Export into the run directory, score held-out with onnxruntime, then publish to ``out``."""
    from bridge.model import load_model
    from training.evaluate import evaluate_reference, evaluate_step_model, format_table
    from training.export import update_metadata
    from training.onnx_runner import WindowRunner

    staged = run_dir / "model.onnx"
    prepared.export(model, training, staged)
    if config.arch == "default":
        rows, info = evaluate_step_model(load_model(staged), corpus, every=config.held_out_every)
    else:
        rows, info = evaluate_reference(WindowRunner(staged), corpus, every=config.held_out_every)
    training["held_out"] = {
        **rows[0].to_dict(),
        **{k: v for k, v in info.items() if k not in ("held_out_events", "held_out_tokens")},
    }
    training["markov"] = [r.to_dict() for r in rows[1:]]
    update_metadata(
        staged, {"antiphon.training": json.dumps(training, separators=(",", ":"), sort_keys=True)}
    )
    say(format_table(rows, info))
    _write_atomic(out, lambda tmp: shutil.copyfile(staged, tmp))
    say(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
