"""Fixtures: a few real Bach chorales (music21) and a tiny MIDI corpus written from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_support import SCHEME, TINY, notes_to_midi, run_cli

from training.corpus import Piece, composer_files, load_corpus


@pytest.fixture(scope="session")
def chorale_paths() -> list[Path]:
    """Eight chorales spread over the sorted music21 list."""
    paths = composer_files("bach")
    return paths[:: max(1, len(paths) // 8)][:8]


@pytest.fixture(scope="session")
def chorales(chorale_paths: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Piece]:
    corpus = load_corpus(
        chorale_paths, SCHEME, cache_dir=tmp_path_factory.mktemp("cache"), progress=False
    )
    assert not corpus.skipped
    return corpus.pieces


@pytest.fixture(scope="session")
def midi_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve chorales written as .mid files in nested folders (mido reads them fast)."""
    root = tmp_path_factory.mktemp("midi")
    paths = composer_files("bach")[:12]
    corpus = load_corpus(paths, SCHEME, cache_dir=None, progress=False)
    for i, piece in enumerate(corpus.pieces):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(exist_ok=True)
        notes_to_midi(folder / f"piece{i:02d}.mid", list(piece.notes))
    return root


@pytest.fixture(scope="session")
def tiny_run(midi_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted tiny training run (4 epochs, no early stop); returns its folder."""
    root = tmp_path_factory.mktemp("tiny")
    result = run_cli(
        "train",
        "--midi",
        str(midi_corpus),
        "--out",
        str(root / "tiny.onnx"),
        "--run-dir",
        str(root / "run"),
        "--cache-dir",
        str(root / "cache"),
        "--epochs",
        "4",
        "--patience",
        "0",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root
