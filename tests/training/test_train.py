"""``antiphon train`` end to end on a tiny corpus: run directory, interrupt + resume, multi-worker,
``--arch reference``, and ``antiphon evaluate`` on the result.  Every run is a subprocess."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from training_support import REPO, TINY, run_cli

from bridge.errors import ModelError
from bridge.model import load_model
from training.onnx_runner import WindowRunner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # TensorFlow training runs


def _state(run_dir: Path) -> dict:
    return json.loads((run_dir / "state.json").read_text())


def _csv_epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "log.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_tiny_run_writes_model_checkpoint_log_and_curve(tiny_run: Path) -> None:
    run_dir = tiny_run / "run"
    state = _state(run_dir)
    assert (state["epoch"], state["stopped"]) == (4, "done")
    assert sorted(p.name for p in run_dir.glob("checkpoint-*.keras")) == ["checkpoint-0004.keras"]
    assert (run_dir / "best.weights.h5").exists()
    assert _csv_epochs(run_dir) == [1, 2, 3, 4]
    assert (run_dir / "learning-curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = load_model(tiny_run / "tiny.onnx")
    training = model.training
    assert training["epochs"] == 4 and training["parameters"] > 0
    assert training["corpus"]["pieces"] == 12 and training["split"]["held_out_pieces"] == 3
    assert {r["name"] for r in training["markov"]} == {f"Markov order {k}" for k in (1, 2, 3)}
    assert training["held_out"]["bits_per_event"] > 0


def test_interrupt_then_resume_ends_at_the_same_epoch(
    midi_corpus: Path, tiny_run: Path, tmp_path: Path
) -> None:
    args = [
        "train",
        "--midi",
        str(midi_corpus),
        "--out",
        str(tmp_path / "r.onnx"),
        "--run-dir",
        str(tmp_path / "run"),
        "--cache-dir",
        str(tiny_run / "cache"),
        "--epochs",
        "4",
        "--patience",
        "0",
        *TINY,
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        state_file = tmp_path / "run" / "state.json"
        if state_file.exists() and json.loads(state_file.read_text())["epoch"] >= 1:
            process.send_signal(signal.SIGINT)  # Ctrl-C in the middle of epoch 2
            break
        time.sleep(0.02)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "resume with: antiphon train" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    interrupted = _state(tmp_path / "run")["epoch"]
    assert 1 <= interrupted < 4
    assert not (tmp_path / "r.onnx").exists()

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"epochs {interrupted}→4" in resumed.stderr
    assert _state(tmp_path / "run")["epoch"] == _state(tiny_run / "run")["epoch"] == 4
    assert _csv_epochs(tmp_path / "run") == [1, 2, 3, 4]
    assert load_model(tmp_path / "r.onnx").training["epochs"] == 4


def test_resume_refuses_other_settings_and_missing_runs(
    midi_corpus: Path, tiny_run: Path, tmp_path: Path
) -> None:
    changed = run_cli(
        "train",
        "--midi",
        str(midi_corpus),
        "--out",
        str(tmp_path / "x.onnx"),
        "--run-dir",
        str(tiny_run / "run"),
        "--resume",
        "--epochs",
        "4",
        *TINY[:-1],
        "--window",
        "48",
    )
    assert changed.returncode == 1
    assert changed.stderr.strip().splitlines()[-1].startswith("antiphon train: error: --resume")
    assert "window" in changed.stderr
    missing = run_cli(
        "train", "--midi", str(midi_corpus), "--run-dir", str(tmp_path / "none"), "--resume", *TINY
    )
    assert missing.returncode == 1 and "nothing to resume" in missing.stderr


def test_evaluate_prints_model_and_markov_rows(midi_corpus: Path, tiny_run: Path) -> None:
    model = tiny_run / "tiny.onnx"
    result = run_cli(
        "evaluate", str(model), "--midi", str(midi_corpus), "--cache-dir", str(tiny_run / "cache")
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "bits/event" in lines[1] and "token top-1" in lines[1]
    assert lines[2].startswith("LSTM (tiny.onnx)")
    assert [line.split("  ")[0] for line in lines[3:6]] == [
        "Markov order 1",
        "Markov order 2",
        "Markov order 3",
    ]
    as_json = run_cli(
        "evaluate",
        str(model),
        "--midi",
        str(midi_corpus),
        "--json",
        "--cache-dir",
        str(tiny_run / "cache"),
    )
    rows = json.loads(as_json.stdout)["rows"]
    # the same numbers as the held-out scores the training run stored in the model file
    stored = load_model(model).training
    assert rows[0]["bits_per_event"] == pytest.approx(
        stored["held_out"]["bits_per_event"], abs=1e-3
    )
    assert rows[3]["bits_per_event"] == pytest.approx(
        stored["markov"][2]["bits_per_event"], abs=1e-3
    )


def test_evaluate_refuses_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    result = run_cli("evaluate", str(tmp_path / "bad.onnx"), "--corpus", "bach")
    assert result.returncode == 1
    assert result.stderr.startswith("antiphon evaluate: error:")
    assert "Traceback" not in result.stderr


def test_reference_architecture_trains_and_exports_a_window_model(
    midi_corpus: Path,
    tiny_run: Path,
    tmp_path: Path,
) -> None:
    result = run_cli(
        "train",
        "--arch",
        "reference",
        "--units",
        "16,8",
        "--midi",
        str(midi_corpus),
        "--out",
        str(tmp_path / "seed.onnx"),
        "--run-dir",
        str(tmp_path / "run"),
        "--cache-dir",
        str(tiny_run / "cache"),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "3",
        "--batch",
        "16",
        "--held-out-every",
        "4",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runner = WindowRunner(tmp_path / "seed.onnx")
    assert runner.window == 100 and runner.vocabulary[0] == "<unk>"
    assert runner.training["architecture"]["arch"] == "reference"
    assert "Markov order 3" in result.stderr
    with pytest.raises(ModelError):
        load_model(tmp_path / "seed.onnx")


def test_transpose_moves_training_windows_only(
    midi_corpus: Path, tiny_run: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "train",
        "--midi",
        str(midi_corpus),
        "--out",
        str(tmp_path / "t.onnx"),
        "--run-dir",
        str(tmp_path / "run"),
        "--cache-dir",
        str(tiny_run / "cache"),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "3",
        "--transpose",
        "5",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    training = load_model(tmp_path / "t.onnx").training
    assert training["params"]["transpose"] == 5
    assert training["split"]["transpose_semitones"] == 5
    assert _state(tmp_path / "run")["config"]["transpose"] == 5
    bad = run_cli(
        "train",
        "--midi",
        str(midi_corpus),
        "--out",
        str(tmp_path / "u.onnx"),
        "--run-dir",
        str(tmp_path / "run2"),
        "--transpose",
        "13",
        *TINY,
    )
    assert bad.returncode == 1 and "--transpose must be 0..12" in bad.stderr


def _free_ports(count: int) -> list[int]:
    """Ports free *now*; TensorFlow binds them later, so a caller retries if one was taken."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


PORT_TAKEN = ("Address already in use", "Failed to add port", "Failed to bind")
"""What gRPC says when a worker's port was taken between _free_ports and its bind."""


def _run_workers(
    args: list[str], count: int
) -> tuple[list[subprocess.Popen[str]], list[tuple[str, str]]]:
    """``count`` training workers on fresh ports, run to completion (stdout, stderr each)."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(count)]
    processes = []
    for index in range(count):
        tf_config = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "training", *args],
                cwd=REPO,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "TF_CONFIG": tf_config, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
        )
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=300))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return processes, outputs


def test_two_workers_train_together(midi_corpus: Path, tiny_run: Path, tmp_path: Path) -> None:
    args = [
        "train",
        "--midi",
        str(midi_corpus),
        "--out",
        str(tmp_path / "mw.onnx"),
        "--run-dir",
        str(tmp_path / "run"),
        "--cache-dir",
        str(tiny_run / "cache"),
        "--epochs",
        "2",
        "--patience",
        "0",
        *TINY,
    ]
    for _ in range(3):  # another process may take a port first: then again on new ones
        processes, outputs = _run_workers(args, 2)
        if not any(taken in err for _, err in outputs for taken in PORT_TAKEN):
            break
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    assert "2 workers" in outputs[0][1]
    assert _state(tmp_path / "run")["epoch"] == 2
    assert load_model(tmp_path / "mw.onnx").training["workers"] == 2
    # every worker computed the same global held-out loss, so both stop on the same epoch
    chief_epochs = [line for line in outputs[0][0].splitlines() if "val_loss" in line]
    other_epochs = [line for line in outputs[1][0].splitlines() if "val_loss" in line]
    assert len(chief_epochs) == len(other_epochs) == 2
    assert [line.split("val_loss: ")[1] for line in chief_epochs] == [
        line.split("val_loss: ")[1] for line in other_epochs
    ]


def test_the_old_arch_name_seed_still_means_reference() -> None:
    from bridge.errors import ConfigError
    from training.train import TrainConfig

    assert TrainConfig(arch="seed").arch == "reference"  # --arch seed
    old_state = {"arch": "seed", "epochs": 3}  # state.json of a run made before the rename
    assert TrainConfig.from_dict(old_state).arch == "reference"
    with pytest.raises(ConfigError, match="'default' or 'reference'"):
        TrainConfig(arch="lstm")
