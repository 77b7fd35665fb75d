"""The sizes of one benchmark run (``python -m benchmarks`` flags), shared by every section."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Options"]

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Options:
    """Sizes and places for one run; :meth:`quick` gives the CI smoke sizes."""

    out_dir: Path = REPO / "benchmarks"
    model: Path = REPO / "models" / "default.onnx"
    reference_model: Path = REPO / "models" / "reference-seed.onnx"
    quick: bool = False
    events: int = 300  # generated events per inference timing
    keras_events: int = 30  # Keras model.predict is slow: fewer repeats
    call_events: int = 64  # events in the priming call
    window: int = 100  # the reference method's window
    answers: int = 200  # answers per JACK period and per kind (phrase end / trigger)
    notes: int = 2000  # minimum answer notes for the timing-error figure, per period
    periods: tuple[int, ...] = (64, 256)
    launches: int = 7  # bridge start-ups
    train_seconds: float = 75.0  # time budget per architecture
    corpus_pieces: int | None = None  # None: every chorale
    quality_pieces: int | None = None  # None: every held-out piece
    temperatures: tuple[float, ...] = (0.05, 0.8, 1.0, 1.2)
    call_bars: int = 4
    answer_bars: int = 8  # the real continuation compared with: the 4 + 8 bars
    sections: tuple[str, ...] = field(
        default=(
            "inference",
            "latency",
            "startup",
            "training",
            "corpus",
            "quality",
            "transcription",
        )
    )
    rng_seed: int = 1234

    def __post_init__(self) -> None:
        for name in (
            "events",
            "keras_events",
            "call_events",
            "answers",
            "notes",
            "launches",
            "call_bars",
            "answer_bars",
        ):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if not self.train_seconds > 0:
            raise ValueError(f"--train-seconds must be > 0, got {self.train_seconds}")
        if self.quality_pieces is not None and self.quality_pieces < 1:
            raise ValueError(f"--pieces must be >= 1, got {self.quality_pieces}")
        for period in self.periods:
            if period < 16 or period & (period - 1):
                raise ValueError(f"JACK periods must be powers of two >= 16, got {period}")
        if not self.periods:
            raise ValueError("--periods needs at least one period")
        for temperature in self.temperatures:
            if not 0.05 <= temperature <= 5:
                raise ValueError(f"temperatures must be 0.05..5, got {temperature}")
        if not self.temperatures:
            raise ValueError("--temperatures needs at least one value")

    @classmethod
    def quick_sizes(cls, **overrides: object) -> Options:
        """The smoke run: every section, tiny sizes (well under two minutes)."""
        sizes: dict[str, object] = dict(
            out_dir=Path(tempfile.gettempdir()) / "antiphon-bench-quick",  # keep the real results
            quick=True,
            events=40,
            keras_events=5,
            answers=4,
            notes=20,
            launches=2,
            periods=(64,),
            train_seconds=4.0,
            corpus_pieces=12,
            quality_pieces=3,
            temperatures=(1.0,),
            call_bars=2,
            answer_bars=2,
        )
        sizes.update(overrides)
        return cls(**sizes)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> Options:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
