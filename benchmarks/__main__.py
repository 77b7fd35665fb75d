"""``python -m benchmarks``: run every section, then write RESULTS.md, results.json and the plots.

Sizes are flags (``--quick`` for the CI smoke run).  A section that fails is reported as
"not measured" with its reason, the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from benchmarks.machine import describe_machine, load_average
from benchmarks.options import Options
from benchmarks.report import Section, write_results

SECTIONS = {
    "inference": (1, "Inference per generated event"),
    "latency": (2, "Bridge latency through JACK"),
    "startup": (3, "Start-up and memory"),
    "training": (4, "Training"),
    "corpus": (5, "Corpus preparation"),
    "quality": (6, "Musical quality: call and answer across styles"),
    "transcription": (7, "Audio calls: transcription"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure Antiphon beside its baselines in one run and write "
        "benchmarks/RESULTS.md, results.json and PNG plots (about 12 min on 2 cores; "
        "--quick: a smoke run of every section in one to two minutes).",
    )
    d = Options()
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes for CI (the numbers mean nothing)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"where RESULTS.md and plots go (default {d.out_dir}; with --quick "
        "a temporary folder, so a smoke run never replaces the real results)",
    )
    p.add_argument(
        "--only",
        default=None,
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})",
    )
    p.add_argument(
        "--model", type=Path, default=None, help=f"Antiphon model to measure (default {d.model})"
    )
    p.add_argument(
        "--reference-model",
        type=Path,
        default=None,
        help="reference-method window net (ONNX); default models/reference-seed.onnx, "
        "else the one section 4 trains, else an untrained one of the same shape",
    )
    p.add_argument(
        "--events",
        type=int,
        default=None,
        help=f"generated events per inference timing (default {d.events})",
    )
    p.add_argument(
        "--answers",
        type=int,
        default=None,
        help=f"answers per JACK period and per kind (default {d.answers})",
    )
    p.add_argument(
        "--notes",
        type=int,
        default=None,
        help=f"minimum answer notes for the timing-error figure (default {d.notes})",
    )
    p.add_argument(
        "--periods", default=None, help="JACK periods to measure, comma-separated (default 64,256)"
    )
    p.add_argument(
        "--launches",
        type=int,
        default=None,
        help=f"bridge start-ups to time (default {d.launches})",
    )
    p.add_argument(
        "--train-seconds",
        type=float,
        default=None,
        help=f"training budget per architecture (default {d.train_seconds:g})",
    )
    p.add_argument(
        "--pieces",
        type=int,
        default=None,
        help="held-out pieces for the quality section (default all)",
    )
    p.add_argument(
        "--temperatures",
        default=None,
        help="sampling temperatures for the quality section (default 0.05,0.8,1.0,1.2)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"first random seed of the sampled answers; call i uses seed + i (default "
        f"{d.rng_seed}): another seed shows how far sampling alone moves the figures",
    )
    return p


def options_from(args: argparse.Namespace) -> Options:
    """Turn parsed flags into :class:`Options` (quick sizes first, explicit flags win)."""
    changes: dict[str, object] = {}
    for flag, name in (
        ("out", "out_dir"),
        ("model", "model"),
        ("reference_model", "reference_model"),
        ("events", "events"),
        ("answers", "answers"),
        ("notes", "notes"),
        ("launches", "launches"),
        ("train_seconds", "train_seconds"),
        ("pieces", "quality_pieces"),
        ("seed", "rng_seed"),
    ):
        value = getattr(args, flag)
        if value is not None:
            changes[name] = value
    try:
        if args.periods:
            changes["periods"] = tuple(int(x) for x in args.periods.split(","))
        if args.temperatures:
            changes["temperatures"] = tuple(float(x) for x in args.temperatures.split(","))
    except ValueError:
        raise ValueError("--periods and --temperatures take comma-separated numbers") from None
    if args.only:
        only = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = [s for s in only if s not in SECTIONS]
        if unknown:
            raise ValueError(
                f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
            )
        changes["sections"] = only
    return Options.quick_sizes(**changes) if args.quick else Options(**changes)  # type: ignore[arg-type]


RUN_ORDER = ("corpus", "latency", "startup", "inference", "transcription", "training", "quality")
"""Sections without TensorFlow first: the corpus pool can fork (as in `antiphon train`) and the
realtime measurements run in a process without TensorFlow's threads; training before quality,
which answers with the nets it trained."""


def run_sections(options: Options) -> list[Section]:
    """Run the chosen sections; a failure becomes a "not measured" section.  Returns them in
    report order."""
    sections: list[Section] = []
    context: dict[str, object] = {}  # what one section leaves for a later one (trained models)
    for key in RUN_ORDER:
        if key not in options.sections:
            continue
        number, title = SECTIONS[key]
        print(f"[benchmarks] {number}. {title} …", file=sys.stderr, flush=True)
        start = time.perf_counter()
        load = load_average()[0]
        try:
            module = importlib.import_module(f"benchmarks.{key}")
            section: Section = module.run(options, context)
        except Exception as exc:  # one broken section must not hide the others
            traceback.print_exc()
            line = str(exc).strip().splitlines()
            section = Section(
                number, title, error=f"{type(exc).__name__}: {line[0] if line else ''}".rstrip(": ")
            )
        section.seconds = time.perf_counter() - start
        section.notes.append(
            f"Load average (1 min) when the section started: {load:.2f} on {os.cpu_count()} cores."
        )
        print(
            f"[benchmarks] {number}. done in {section.seconds:.1f} s"
            + (f" — NOT MEASURED: {section.error}" if section.error else ""),
            file=sys.stderr,
            flush=True,
        )
        sections.append(section)
    work = context.get("work_dir")
    if isinstance(work, Path):
        shutil.rmtree(work, ignore_errors=True)
    return sorted(sections, key=lambda s: s.number)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        options = options_from(args)
    except ValueError as exc:
        print(f"python -m benchmarks: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    machine = describe_machine()
    options.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sections = run_sections(options)
    command = "python -m benchmarks" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)
    )
    path = write_results(
        options.out_dir,
        sections,
        machine,
        command=command,
        total_seconds=time.perf_counter() - start,
    )
    print(f"[benchmarks] wrote {path}", file=sys.stderr)
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
