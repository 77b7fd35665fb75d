"""A plain (non-editable) install ships the models (issue 9, item 2).

``pip install /path/to/antiphon`` used to give a bridge that could not find ``default.onnx``:
the models lived beside the source tree only.  Here the project is built into a wheel, installed
into a fresh virtual environment (not editable, no access to this checkout), and the installed
``antiphon`` runs from another directory: ``model-info default`` and ``continue`` must work.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import mido
import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a venv and pip install


def _run(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout[-2000:]}\n"
        f"{result.stderr[-2000:]}"
    )
    return result


def test_a_wheel_install_answers_from_another_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        wheels,
        REPO,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("antiphon-*.whl")
    shipped = {
        Path(n).name for n in zipfile.ZipFile(wheel).namelist() if n.startswith("antiphon_models/")
    }
    assert {p.name for p in (REPO / "models").glob("*.onnx")} <= shipped

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    _run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        wheel,
        cwd=tmp_path,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    antiphon = venv / "bin" / "antiphon"

    info = _run(antiphon, "model-info", "default", cwd=elsewhere, timeout=120)
    assert str(venv) in info.stdout and "default.onnx" in info.stdout, info.stdout

    out = elsewhere / "x.mid"
    _run(
        antiphon,
        "continue",
        REPO / "examples" / "phrases" / "ode_to_joy.mid",
        "-o",
        out,
        "--seed",
        "1",
        cwd=elsewhere,
        timeout=120,
    )
    call = mido.MidiFile(REPO / "examples" / "phrases" / "ode_to_joy.mid")
    assert _note_ons(mido.MidiFile(out)) > _note_ons(call)  # the call, then the answer


def _note_ons(midi: mido.MidiFile) -> int:
    return sum(1 for m in midi if m.type == "note_on" and m.velocity > 0)
