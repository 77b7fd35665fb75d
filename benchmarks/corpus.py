"""Section 5 — corpus preparation: pieces/s on a first run (all cores) vs served from the cache.

Reads the Bach chorales music21 ships with ``training.corpus.load_corpus`` into a fresh temporary
cache, then again from that cache.  Main thread only.
"""

from __future__ import annotations

import os
import tempfile
import time

from benchmarks.options import Options
from benchmarks.report import Section, Table
from benchmarks.stats import fmt, ratio

__all__ = ["run"]


def run(options: Options, context: dict[str, object]) -> Section:
    """Time the reads; ``context`` is unused (the other sections load their own pieces)."""
    from bridge.tokens import TokenScheme
    from training.corpus import composer_files, load_corpus

    section = Section(5, "Corpus preparation")
    scheme = TokenScheme()
    paths = composer_files("bach")
    if options.corpus_pieces is not None:
        paths = paths[: options.corpus_pieces]
    cores = os.cpu_count() or 1
    section.method = (
        f"{len(paths)} Bach chorales from music21's corpus (Roman-numeral analyses left out), "
        "read and quantized by `training.corpus.load_corpus` into an empty temporary cache "
        f"(first run, process pool over all {cores} cores), then read again from that cache. "
        "Baseline: the first run."
    )
    runs: list[tuple[str, float, int]] = []

    def timed(label: str, cache: str, workers: int | None) -> None:
        start = time.perf_counter()
        corpus = load_corpus(
            paths, scheme, cache_dir=cache, workers=workers, progress=False, warn=lambda _line: None
        )
        runs.append((label, time.perf_counter() - start, len(corpus.pieces)))

    with tempfile.TemporaryDirectory(prefix="antiphon-bench-cache-") as cache:
        timed(f"first run, {cores} processes", cache, None)
        timed("cached", cache, None)
    base = runs[0][1]
    table = Table(["run", "pieces", "seconds", "pieces/s", "speed vs first run"])
    for label, seconds, pieces in runs:
        table.rows.append(
            [
                label,
                str(pieces),
                fmt(seconds),
                fmt(pieces / seconds),
                f"{fmt(ratio(base, seconds))}×",
            ]
        )
        section.data[label] = {
            "seconds": seconds,
            "pieces": pieces,
            "pieces_per_s": pieces / seconds,
        }
    section.tables.append(table)
    cached = runs[1]
    section.headline.append(
        (
            "corpus preparation, pieces/s",
            f"{fmt(cached[2] / cached[1])} (cached)",
            f"{fmt(runs[0][2] / base)} (first run, {cores} cores)",
            f"{fmt(ratio(base, cached[1]))}× faster",
        )
    )
    section.notes.append(
        "A skipped file (unreadable or empty) is counted and left out; pieces = pieces kept."
    )
    return section
