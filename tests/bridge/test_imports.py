"""The realtime bridge must never pull in TensorFlow, Keras or music21 (slow, heavy, offline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("tensorflow", "keras", "music21", "tf2onnx", "onnx")
AUDIO = ("librosa", "soundfile", "mir_eval", "numba", "scipy", "jack")
"""The audio extra: only ``antiphon continue CALL.wav`` and ``bridge --audio-in`` load it."""


def test_bridge_imports_and_loads_a_model_without_heavy_packages(tiny_model_path: Path) -> None:
    code = f"""
import json, sys
import bridge, bridge.engine, bridge.model, bridge.generate, bridge.schedule, bridge.phrase
import bridge.clock, bridge.sampling
model = bridge.model.load_model({str(tiny_model_path)!r})
notes = bridge.generate.continue_notes(model, [], length=4, seed=1)
print(json.dumps({{"heavy": sorted(m for m in sys.modules
                                   if m.split(".")[0] in {HEAVY + AUDIO!r}
                                   or m.startswith("bridge.audio")),
                  "notes": len(notes)}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["notes"] > 0


def test_the_engine_and_scheduler_need_no_osc_transport() -> None:
    """Their protocols live in bridge.protocols: only bridge.osc imports python-osc."""
    code = (
        "import json, sys, bridge.engine, bridge.schedule, bridge.protocols; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('pythonosc'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_audio_modules_load_the_signal_libraries_only_when_used() -> None:
    """Importing bridge.audio_transcribe / audio_live costs numpy and mido; librosa and
    soundfile load in the functions that read and analyse audio, JACK-Client in AudioInput."""
    code = (
        "import json, sys, bridge.audio_transcribe, bridge.audio_live, bridge.continuation, "
        "bridge.cli; print(json.dumps(sorted(m for m in sys.modules "
        f"if m.split('.')[0] in {AUDIO!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
