"""Trainer robustness: hostile corpora, Ctrl-C at random moments, writes that fail half-way.

* A corpus of corrupt, truncated, empty, huge and odd (type 0/1/2, zero-length notes, orphan
  note-offs, absurd delta times, one tick per beat) MIDI files: every file is either read or
  skipped with a reason and counted; loading never fails, never hangs, and the token stream built
  from what was read stays bounded.
* ``antiphon train`` (a tiny model, in a subprocess) gets SIGINT at random moments — start-up,
  corpus, fit, export — and is resumed until it finishes: it reaches the asked epoch count, the
  checkpoint ``state.json`` names always exists, and one SIGKILL (a crash) on the way loses
  nothing either.  ``ANTIPHON_TRAIN_INTERRUPTS`` sets how many SIGINTs (default 2; the seed of
  the moments is printed, ``ANTIPHON_TRAIN_SEED`` replays it).
* The atomic writers (checkpoints, state, CSV, model file, corpus cache) leave the previous file
  intact and no temporary file behind when the write fails half-way.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
from training_support import REPO, SCHEME, TINY

from training.corpus import load_corpus
from training.dataset import build_dataset

# ---- hostile MIDI files --------------------------------------------------------------------------


def _track(events: list[tuple[int, mido.Message | mido.MetaMessage]]) -> mido.MidiTrack:
    """``(absolute tick, message)`` → a track with delta times."""
    track = mido.MidiTrack()
    now = 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=tick - now))
        now = tick
    return track


def _notes(
    pitches: list[int], step: int = 240, length: int = 200, channel: int = 0
) -> list[tuple[int, mido.Message]]:
    events = []
    for i, pitch in enumerate(pitches):
        events.append((i * step, mido.Message("note_on", note=pitch, velocity=80, channel=channel)))
        events.append((i * step + length, mido.Message("note_off", note=pitch, channel=channel)))
    return events


def _save(path: Path, midi: mido.MidiFile) -> Path:
    midi.save(str(path))
    return path


def hostile_corpus(root: Path) -> dict[str, tuple[Path, bool]]:
    """name → (file, whether it has music to read)."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[Path, bool]] = {}
    scale = [60, 62, 64, 65, 67, 69, 71, 72] * 4

    def midi(
        name: str, kind: int, tracks: list[mido.MidiTrack], readable: bool, tpb: int = 480
    ) -> None:
        file = mido.MidiFile(type=kind, ticks_per_beat=tpb)
        file.tracks.extend(tracks)
        files[name] = (_save(root / f"{name}.mid", file), readable)

    midi("type0", 0, [_track(_notes(scale))], True)
    midi(
        "type1",
        1,
        [
            _track([(0, mido.MetaMessage("set_tempo", tempo=400000))]),
            _track(_notes(scale)),
            _track(_notes(scale[::-1], channel=1)),
        ],
        True,
    )
    midi("type2", 2, [_track(_notes(scale)), _track(_notes(scale[:8]))], True)
    midi("zero_length", 1, [_track(_notes(scale, length=0) + _notes(scale[:4], step=100))], True)
    offs = [(240 * i, mido.Message("note_off", note=p)) for i, p in enumerate(scale)]
    hanging = [
        (240 * i + 100, mido.Message("note_on", note=p, velocity=90))  # never released
        for i, p in enumerate(scale)
    ]
    midi("orphans", 1, [_track([*offs, *hanging, *_notes(scale)])], True)
    midi("drums_only", 1, [_track(_notes(scale, channel=9))], False)
    midi("empty_tracks", 1, [mido.MidiTrack(), mido.MidiTrack()], False)
    midi(
        "meta_only",
        0,
        [
            _track(
                [
                    (0, mido.MetaMessage("set_tempo", tempo=500000)),
                    (960, mido.MetaMessage("marker", text="nothing")),
                ]
            )
        ],
        False,
    )
    # Absurd times: a note, then another after the largest delta a file can hold, at one tick
    # per beat (2^28 beats later); and a note lasting as long.
    far = 0x0FFFFFFF
    huge_gap = [
        *_notes([60]),
        (far, mido.Message("note_on", note=62, velocity=80)),
        (far + 1, mido.Message("note_off", note=62)),
    ]
    midi("huge_gap", 1, [_track(huge_gap)], True, tpb=1)
    long_note = [
        (0, mido.Message("note_on", note=60, velocity=80)),
        (far, mido.Message("note_off", note=60)),
    ]
    midi("huge_duration", 1, [_track([*long_note, *_notes(scale)])], True, tpb=1)
    big = [p for _ in range(3000) for p in scale[:8]]  # 24k notes, ~0.25 MB
    midi("huge_file", 1, [_track(_notes(big, step=60, length=50))], True)

    good = (root / "type0.mid").read_bytes()
    raw = {
        "empty_file": b"",
        "garbage": bytes(random.Random(6).randrange(256) for _ in range(3000)),
        "truncated": good[: len(good) // 2],
        "header_only": good[:14],
        "bad_chunk_length": good[:18] + b"\xff\xff\xff\xff" + good[22:],
        "too_many_tracks": good[:10] + b"\x03\xe8" + good[12:],
        "running_status_junk": good[:22] + b"\x00\x40\x40\x00\x3c" + good[27:],
        "png": b"\x89PNG\r\n\x1a\n" + b"\0" * 200,
        "huge_garbage": b"MThd\0\0\0\6\0\1\0\1\1\xe0MTrk\x7f\xff\xff\xff" + b"\x90" * 200_000,
    }
    for name, data in raw.items():
        (root / f"{name}.mid").write_bytes(data)
        files[name] = (root / f"{name}.mid", False)
    (root / "directory.mid").mkdir()
    files["directory"] = (root / "directory.mid", False)
    return files


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bool]]:
    return hostile_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_hostile_corpus_is_read_or_skipped_and_counted(
    hostile: dict[str, tuple[Path, bool]],
    tmp_path: Path,
    workers: int,
) -> None:
    paths = [path for path, _ in hostile.values()]
    warnings: list[str] = []
    started = time.monotonic()
    corpus = load_corpus(
        paths,
        SCHEME,
        cache_dir=tmp_path / "cache",
        workers=workers,
        progress=False,
        warn=warnings.append,
    )
    took = time.monotonic() - started
    read = {Path(p.name).stem for p in corpus.pieces}
    skipped = {Path(path).stem: why for path, why in corpus.skipped}
    assert read | set(skipped) == set(hostile) and not read & set(skipped)
    assert {name for name, (_, music) in hostile.items() if music} <= read, skipped
    assert all(why for why in skipped.values())
    assert len([w for w in warnings if w.startswith("warning: skipped")]) == len(skipped)
    for piece in corpus.pieces:
        assert piece.notes and all(n.duration >= 1 for n in piece.notes), piece.name
    # Served from the cache the second time, with the same outcome.
    again = load_corpus(
        paths,
        SCHEME,
        cache_dir=tmp_path / "cache",
        workers=workers,
        progress=False,
        warn=lambda line: None,
    )
    assert again.cached == len(paths) - 1  # the directory has no contents to hash
    assert [p.name for p in again.pieces] == [p.name for p in corpus.pieces]
    assert sorted(again.skipped) == sorted(corpus.skipped)
    print(
        f"\nhostile corpus ({workers} worker(s)): {len(paths)} files, {len(read)} read, "
        f"{len(skipped)} skipped in {took:.1f} s: "
        + ", ".join(f"{k} ({v[:40]})" for k, v in sorted(skipped.items()))
    )


def test_absurd_gaps_do_not_blow_up_the_token_stream(
    hostile: dict[str, tuple[Path, bool]],
) -> None:
    """A file with a 2^28-beat silence must not become hundreds of millions of rest tokens."""
    paths = [hostile[name][0] for name in ("huge_gap", "huge_duration", "type0", "type1")]
    corpus = load_corpus(
        paths, SCHEME, cache_dir=None, workers=1, progress=False, warn=lambda line: None
    )
    started = time.monotonic()
    data = build_dataset(corpus.pieces, SCHEME, chord_cap=32, every=2)
    took = time.monotonic() - started
    tokens = sum(len(t) for t in data.train) + sum(len(t) for t in data.held_out)
    notes = sum(len(p.notes) for p in corpus.pieces)
    assert tokens < 50 * notes + 10_000, f"{tokens} tokens from {notes} notes"
    assert took < 30


# ---- atomic writes -------------------------------------------------------------------------------


class DiskFull(OSError):
    pass


def _half_then_fail(data: bytes) -> Callable[[Any], None]:
    def write(target: Any) -> None:
        if isinstance(target, (str, os.PathLike)):
            Path(target).write_bytes(data[: len(data) // 2])
        else:
            target.write(data[: len(data) // 2])
        raise DiskFull(28, "No space left on device")

    return write


def _leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def test_run_directory_writes_are_atomic(tmp_path: Path) -> None:
    from training import train as train_module

    for name in ("checkpoint-0003.keras", "state.json", "log.csv", "best.weights.h5"):
        target = tmp_path / name
        target.write_bytes(b"the previous, complete file")
        with pytest.raises(DiskFull):
            train_module._write_atomic(target, _half_then_fail(b"x" * 1000))
        assert target.read_bytes() == b"the previous, complete file", name
    assert (
        _leftovers(tmp_path, {"checkpoint-0003.keras", "state.json", "log.csv", "best.weights.h5"})
        == []
    )

    # Ctrl-C in the middle of a write is no different.
    def interrupted(tmp: str) -> None:
        Path(tmp).write_text("{half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_module._write_json(tmp_path / "state.json", {"epoch": 4})  # fine
        train_module._write_atomic(tmp_path / "state.json", interrupted)
    assert json.loads((tmp_path / "state.json").read_text()) == {"epoch": 4}
    assert (
        _leftovers(tmp_path, {"checkpoint-0003.keras", "state.json", "log.csv", "best.weights.h5"})
        == []
    )


def test_model_file_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx
    from onnx import TensorProto, helper

    from training import export

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    proto = helper.make_model(graph)
    target = tmp_path / "model.onnx"
    export._save_atomic(proto, target)
    before = target.read_bytes()

    def broken_save(model: Any, path: str, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(before[:10])
        raise DiskFull(28, "No space left on device")

    monkeypatch.setattr(onnx, "save", broken_save)
    with pytest.raises(DiskFull):
        export._save_atomic(proto, target)
    with pytest.raises(DiskFull):
        export.update_metadata(target, {"antiphon.training": "{}"})
    assert target.read_bytes() == before
    assert _leftovers(tmp_path, {"model.onnx"}) == []


def test_corpus_cache_survives_failed_and_damaged_writes(
    hostile: dict[str, tuple[Path, bool]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from training import corpus as corpus_module

    paths = [hostile["type0"][0], hostile["garbage"][0]]
    cache = tmp_path / "cache"
    first = load_corpus(
        paths, SCHEME, cache_dir=cache, workers=1, progress=False, warn=lambda line: None
    )
    entries = sorted(cache.iterdir())
    assert len(entries) == 2
    for entry in entries:  # damage both cache entries: they are simply converted again
        entry.write_bytes(entry.read_bytes()[:20])
    again = load_corpus(
        paths, SCHEME, cache_dir=cache, workers=1, progress=False, warn=lambda line: None
    )
    assert again.cached == 0 and [p.notes for p in again.pieces] == [p.notes for p in first.pieces]
    # A cache that cannot be written: one warning, the corpus still loads.
    half = _half_then_fail(b"x" * 100)
    monkeypatch.setattr(np, "save", lambda handle, *args, **kwargs: half(handle))
    for entry in cache.iterdir():
        entry.unlink()
    third = load_corpus(
        paths, SCHEME, cache_dir=cache, workers=1, progress=False, warn=lambda line: None
    )
    assert [p.notes for p in third.pieces] == [p.notes for p in first.pieces]
    assert [p.name for p in cache.iterdir() if p.suffix == ".npy"] == []
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")]
    assert corpus_module  # the module under test


# ---- Ctrl-C at random moments, then --resume ----------------------------------------------------

INTERRUPTS = int(os.environ.get("ANTIPHON_TRAIN_INTERRUPTS", "2"))
EPOCHS = 5


def _phase(stderr: str) -> str:
    """Where a run was when it stopped, from its own log lines."""
    for marker, phase in (
        ("wrote ", "done"),
        ("training stopped", "export"),
        ("model: ", "fit"),
        ("data: ", "model build"),
        ("corpus: ", "windows"),
    ):
        if marker in stderr:
            return phase
    return "start-up/corpus"


def _train_command(corpus: Path, root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "training",
        "train",
        "--midi",
        str(corpus),
        "--out",
        str(root / "model.onnx"),
        "--run-dir",
        str(root / "run"),
        "--cache-dir",
        str(root / "cache"),
        "--epochs",
        str(EPOCHS),
        "--patience",
        "0",
        *TINY,
        *extra,
    ]


def _state(root: Path) -> dict[str, Any] | None:
    path = root / "run" / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def _check_run_dir(root: Path) -> None:
    """state.json (if any) is whole and names a checkpoint that exists and is a whole zip."""
    state = _state(root)
    if state is None or not state.get("checkpoint"):
        return
    checkpoint = root / "run" / state["checkpoint"]
    assert checkpoint.exists(), f"state.json names a missing {checkpoint.name}"
    assert zipfile.is_zipfile(checkpoint), f"{checkpoint.name} is not a whole .keras file"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # up to 3 × signals + 1 TensorFlow training runs
def test_sigint_at_random_moments_then_resume_reaches_the_same_epochs(
    midi_corpus: Path,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    seed = int(os.environ.get("ANTIPHON_TRAIN_SEED", str(random.randrange(10**6))))
    rng = random.Random(seed)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    log: list[str] = []
    signals = [signal.SIGINT] * INTERRUPTS
    signals.insert(rng.randrange(len(signals) + 1), signal.SIGKILL)  # one crash on the way
    # Every signal must reach a running trainer (else this test could not fail): a run that
    # finishes before its signal keeps the signal for the next run and shortens the delays to
    # what a run takes here.
    pending: list[signal.Signals | None] = [*signals, None]
    longest = 12.0  # TensorFlow start-up, corpus, fit, export
    runs = 0
    while pending:
        sig = pending[0]
        runs += 1
        assert runs <= 3 * len(signals) + 1, f"signals never reached a running trainer: {log}"
        resume = ("--resume",) if runs > 1 else ()  # always --resume after the first run
        process = subprocess.Popen(
            _train_command(midi_corpus, tmp_path, *resume),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if sig is None:
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, err[-3000:]
            log.append(f"final run{' --resume' if resume else ''}: exit 0")
            break
        delay = rng.uniform(0.5, longest)
        started = time.monotonic()
        try:
            _, err = process.communicate(timeout=delay)
            took = time.monotonic() - started
            longest = max(0.6, min(longest, 0.9 * took))
            log.append(
                f"finished (exit {process.returncode}) in {took:.1f} s, before its "
                f"{sig.name} at {delay:.1f} s"
            )  # the signal waits for the next run
        except subprocess.TimeoutExpired:
            process.send_signal(sig)
            pending.pop(0)
            _, err = process.communicate(timeout=120)
            state = _state(tmp_path)
            log.append(
                f"{sig.name} at {delay:.1f} s ({_phase(err)}) → exit "
                f"{process.returncode}, epoch {state['epoch'] if state else '-'}"
            )
            if sig == signal.SIGINT:
                # 130 (interrupted, state kept) or 0; killed by the signal itself only if it came
                # while the finished process was already shutting down, the model written.
                finished = _phase(err) == "done"
                # Seen once in a clean-clone CI run: the trainer handled the signal (its
                # "interrupted; … kept" line, status 130 returned) and was then killed by SIGINT
                # while the interpreter shut TensorFlow down (-2).  What matters is checked below:
                # the run directory is intact and --resume reaches the same epochs.
                handled = "interrupted; whatever" in err and process.returncode == -signal.SIGINT
                assert process.returncode in (0, 130) or finished or handled, err[-3000:]
                assert "Traceback" not in err, err[-3000:]
        _check_run_dir(tmp_path)
    state = _state(tmp_path)
    assert state is not None and state["epoch"] == EPOCHS
    _check_run_dir(tmp_path)
    from bridge.model import load_model

    model = load_model(tmp_path / "model.onnx")
    assert model.training["epochs"] == EPOCHS
    with open(tmp_path / "run" / "log.csv") as handle:
        epochs = [int(line.split(",")[0]) for line in handle.readlines()[1:]]
    assert epochs == list(range(1, EPOCHS + 1)), epochs
    leftovers = [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".tmp")]
    print(
        f"\ntrain interrupts (seed {seed}): "
        + "; ".join(log)
        + f"; final epochs {state['epoch']}; temporary files left {leftovers}"
    )
    record_property("train_interrupt_log", "; ".join(log))
