"""The README's first command, end to end: ``examples/demo.py`` starts its own dummy JACK server
and a real bridge, plays a phrase, and writes answer.mid, pianoroll.png and answer.wav.

(``examples/demo.sh`` only installs and then runs exactly this script.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import mido
import pytest
from e2e_support import EXAMPLES, require

from bridge.midifile import read_midi

pytestmark = pytest.mark.jack


@pytest.mark.timeout(600)  # the demo itself may take 300 s
def test_demo_writes_its_three_files(e2e_model: Path, tmp_path: Path) -> None:
    require("jackd", "fluidsynth")
    out = tmp_path / "demo-out"
    env = {k: v for k, v in os.environ.items() if k != "JACK_DEFAULT_SERVER"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--out", str(out), "--model", str(e2e_model)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"demo failed:\n{done.stdout}\n{done.stderr}"
    # nothing went wrong quietly (stderr may carry library warnings; it must not carry errors)
    assert "Traceback" not in done.stderr and "demo: error" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    for name in ("answer.mid", "pianoroll.png", "answer.wav"):
        assert f"demo: wrote {out / name}" in lines, done.stdout
    # the model that answered, as the bridge's /antiphon/status reports it
    said = f"demo: answer by the {Path(e2e_model).stem} model: "
    assert any(line.startswith(said) for line in lines), done.stdout
    assert "demo: bridge stopped (SIGINT, exit 0)" in lines
    if "demo: started a dummy JACK server 'antiphon-demo' (48 kHz, 64-frame periods)" in lines:
        assert "demo: stopped the JACK server 'antiphon-demo'" in lines

    midi = mido.MidiFile(out / "answer.mid")
    assert [t.name for t in midi.tracks[1:]] == ["call", "answer"]
    call = read_midi(EXAMPLES / "phrases" / "ode_to_joy.mid")
    tracks = {}
    for track in midi.tracks[1:]:
        single = mido.MidiFile(type=1, ticks_per_beat=midi.ticks_per_beat)
        single.tracks.extend([midi.tracks[0], track])
        single.save(tmp_path / f"{track.name}.mid")
        tracks[track.name] = read_midi(tmp_path / f"{track.name}.mid")
    assert tracks["call"].notes == call.notes
    answer = tracks["answer"].notes
    assert answer, "the answer track is empty"
    assert min(n.onset for n in answer) >= call.end  # the answer comes after the call

    assert (out / "pianoroll.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with wave.open(str(out / "answer.wav")) as wav:
        seconds = wav.getnframes() / wav.getframerate()
    assert seconds > call.end * 60.0 / call.bpm  # call and answer are both rendered
