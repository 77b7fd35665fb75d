"""``antiphon train`` and ``antiphon evaluate``: argparse wiring only.

``bridge.cli`` finds :func:`register_train` and :func:`register_evaluate` through the
``antiphon.commands`` entry points; each adds its parser and sets ``func=run``.  Nothing heavy is
imported here: TensorFlow, music21 and onnxruntime load inside the ``run`` functions, so
``antiphon --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register_evaluate", "register_train", "run_evaluate", "run_train"]

_Subparsers = Any  # argparse._SubParsersAction is private


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 256,256, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers, got {text!r}")
    return values


def _add_corpus_arguments(parser: argparse.ArgumentParser, *, cache_default: str) -> None:
    group = parser.add_argument_group("corpus")
    group.add_argument(
        "--corpus",
        action="append",
        default=[],
        metavar="COMPOSER",
        help="a corpus shipped with music21, by composer (repeatable; "
        "train defaults to 'bach': 413 chorales, Roman-numeral files excluded)",
    )
    group.add_argument(
        "--midi",
        action="extend",
        nargs="+",
        default=[],
        metavar="DIR",
        help="folders searched recursively for .mid/.midi files",
    )
    group.add_argument(
        "--max-pieces",
        type=int,
        default=None,
        metavar="N",
        help="use only the first N files in path order (tiny runs)",
    )
    group.add_argument(
        "--held-out-every",
        type=int,
        default=None,
        metavar="K",
        help="hold out every K-th piece in path order (default 10)",
    )
    group.add_argument(
        "--cache-dir",
        default=cache_default,
        metavar="DIR",
        help="where converted pieces are cached (default %(default)s)",
    )
    group.add_argument("--no-cache", action="store_true", help="convert every file again")
    group.add_argument(
        "--no-progress", action="store_true", help="no progress bar while converting"
    )


def register_train(subparsers: _Subparsers) -> argparse.ArgumentParser:
    """Add ``train`` to an ``argparse`` subparsers object."""
    from training.corpus import DEFAULT_CACHE_DIR

    parser = subparsers.add_parser(
        "train",
        help="train an LSTM on a corpus and export it as an ONNX model file",
        description="Train on MIDI folders and/or music21 corpora, checkpointing every epoch "
        "(Ctrl-C, then --resume), with early stopping on held-out pieces; writes one "
        "self-describing ONNX file and prints held-out scores beside Markov baselines.",
    )
    _add_corpus_arguments(parser, cache_default=str(DEFAULT_CACHE_DIR))
    out = parser.add_argument_group("output")
    out.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="model file to write (default models/<corpus>.onnx)",
    )
    out.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="checkpoints, state, CSV log, learning curve (default runs/<out name>)",
    )
    out.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --run-dir (same settings)",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--arch",
        choices=("default", "reference", "seed"),
        default="default",
        help="default: embedding → stacked LSTM with rhythm tokens; reference: "
        "the paper's 100-window net (LSTM 512 → 256) on pitch-only tokens "
        "('seed' is its old name)",
    )
    model.add_argument(
        "--units",
        type=_int_list,
        default=None,
        metavar="N,N",
        help="LSTM sizes, one per layer (default 256,256; the reference net's are "
        "512,256 as in the paper — change them only for quick tests)",
    )
    model.add_argument(
        "--embedding",
        type=int,
        default=128,
        metavar="N",
        help="token embedding size (default %(default)s)",
    )
    model.add_argument(
        "--dropout", type=float, default=0.2, help="dropout between layers (default %(default)s)"
    )
    model.add_argument(
        "--chord-cap",
        type=int,
        default=512,
        metavar="N",
        help="most frequent chords kept as single tokens (default %(default)s)",
    )
    model.add_argument(
        "--steps-per-beat",
        type=int,
        default=4,
        metavar="N",
        help="grid: 4 = sixteenth notes, 12 = with triplets (default %(default)s)",
    )
    fit = parser.add_argument_group("fitting")
    fit.add_argument(
        "--epochs", type=int, default=40, help="at most this many (default %(default)s)"
    )
    fit.add_argument(
        "--batch", type=int, default=64, help="windows per batch (default %(default)s)"
    )
    fit.add_argument(
        "--window",
        type=int,
        default=128,
        metavar="TOKENS",
        help="training window for --arch default (default %(default)s)",
    )
    fit.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam learning rate (default 2e-3; 1e-3 for --arch reference)",
    )
    fit.add_argument(
        "--patience",
        type=int,
        default=5,
        metavar="EPOCHS",
        help="stop after this many epochs without held-out improvement; 0 = never",
    )
    fit.add_argument(
        "--augment",
        type=int,
        default=0,
        metavar="SEMITONES",
        help="add every training piece transposed by ±1..N semitones",
    )
    fit.add_argument(
        "--transpose",
        type=int,
        default=0,
        metavar="SEMITONES",
        help="move each training window by its own random shift in ±N semitones, "
        "drawn anew every epoch, so every key is seen (default %(default)s)",
    )
    fit.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        metavar="N",
        help="batches per epoch (default: one pass over the training windows)",
    )
    fit.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        metavar="M",
        help="stop after the epoch that crosses this wall-clock budget",
    )
    fit.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    parser.set_defaults(func=run_train)
    return parser


def _default_name(args: argparse.Namespace) -> str:
    if args.corpus:
        return str(args.corpus[0])
    return Path(args.midi[0]).resolve().name or "model"


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``antiphon train`` (main thread)."""
    from bridge.errors import AntiphonError
    from training.train import ARCH_ALIASES, TrainConfig, train

    if not args.corpus and not args.midi:
        args.corpus = ["bach"]
    out = args.out or Path("models") / f"{_default_name(args)}.onnx"
    run_dir = args.run_dir or Path("runs") / out.stem
    arch = ARCH_ALIASES.get(args.arch, args.arch)
    try:
        config = TrainConfig(
            arch=arch,
            composers=list(args.corpus),
            midi_dirs=[str(d) for d in args.midi],
            max_pieces=args.max_pieces,
            held_out_every=args.held_out_every or 10,
            steps_per_beat=args.steps_per_beat,
            chord_cap=args.chord_cap,
            augment=args.augment,
            transpose=args.transpose,
            embedding=args.embedding,
            dropout=args.dropout,
            units=list(args.units or ([512, 256] if arch == "reference" else [256, 256])),
            window=args.window,
            batch=args.batch,
            lr=args.lr if args.lr is not None else (1e-3 if arch == "reference" else 2e-3),
            epochs=args.epochs,
            patience=args.patience,
            steps_per_epoch=args.steps_per_epoch,
            max_minutes=args.max_minutes,
            seed=args.seed,
        )
        return train(
            config,
            out=out,
            run_dir=run_dir,
            resume=args.resume,
            cache_dir=None if args.no_cache else Path(args.cache_dir),
            progress=not args.no_progress,
            argv=sys.argv[1:],
        )
    except (AntiphonError, OSError) as exc:
        print(f"antiphon train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outside fit (which reports its own): loading or exporting
        print(
            f"antiphon train: interrupted; whatever {run_dir} holds is kept "
            "(run the same command with --resume to continue)",
            file=sys.stderr,
        )
        return 130


def register_evaluate(subparsers: _Subparsers) -> argparse.ArgumentParser:
    """Add ``evaluate`` to an ``argparse`` subparsers object."""
    from training.corpus import DEFAULT_CACHE_DIR

    parser = subparsers.add_parser(
        "evaluate",
        help="held-out NLL and top-1 accuracy of a model beside Markov baselines",
        description="Score MODEL on the held-out pieces of a corpus (the same deterministic "
        "split as training): negative log-likelihood per event in bits and top-1 "
        "accuracy, beside order-1..3 Witten-Bell Markov models on the same tokens. "
        "Without --corpus/--midi the model's own training corpus is used.",
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help="an Antiphon .onnx file")
    _add_corpus_arguments(parser, cache_default=str(DEFAULT_CACHE_DIR))
    parser.add_argument(
        "--orders",
        type=_int_list,
        default=[1, 2, 3],
        metavar="N,N",
        help="Markov orders to compare with (default 1,2,3)",
    )
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(func=run_evaluate)
    return parser


def run_evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``antiphon evaluate`` (main thread)."""
    from bridge.errors import AntiphonError, ConfigError

    try:
        from bridge.model import LstmModel
        from training.corpus import load_sources
        from training.evaluate import evaluate_reference, evaluate_step_model, format_table
        from training.onnx_runner import open_model

        runner = open_model(args.model)
        trained: dict[str, Any] = runner.training
        composers, midi = list(args.corpus), list(args.midi)
        if not composers and not midi:
            sources = trained.get("corpus", {}).get("sources", [])
            composers = [s.split(":", 1)[1] for s in sources if s.startswith("music21:")]
            if not composers:
                raise ConfigError("give --corpus or --midi (the model names no music21 corpus)")
        params = trained.get("params", {})
        max_pieces = args.max_pieces if args.max_pieces is not None else params.get("max_pieces")
        every = args.held_out_every or int(params.get("held_out_every", 10))
        if isinstance(runner, LstmModel):
            base = runner.scheme
        else:
            from bridge.tokens import TokenScheme

            base = TokenScheme(steps_per_beat=int(params.get("steps_per_beat", 4)))
        corpus = load_sources(
            base,
            composers=composers,
            midi_dirs=midi,
            max_pieces=max_pieces,
            cache_dir=None if args.no_cache else Path(args.cache_dir),
            progress=not args.no_progress,
        )
        if isinstance(runner, LstmModel):
            rows, info = evaluate_step_model(
                runner, corpus, every=every, orders=args.orders, name=f"LSTM ({args.model.name})"
            )
        else:
            rows, info = evaluate_reference(
                runner,
                corpus,
                every=every,
                orders=args.orders,
                name=f"seed window ({args.model.name})",
            )
    except (AntiphonError, OSError, ValueError) as exc:
        print(f"antiphon evaluate: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"info": info, "rows": [r.to_dict() for r in rows]}, indent=2))
    else:
        print(format_table(rows, info))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m training`` (works before ``bridge.cli`` exists)."""
    parser = argparse.ArgumentParser(prog="antiphon", description="Antiphon offline commands")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register_train(subparsers)
    register_evaluate(subparsers)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
