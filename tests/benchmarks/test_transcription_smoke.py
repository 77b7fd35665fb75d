"""``python -m benchmarks --quick --only transcription`` renders one call, transcribes it both
ways and writes section 7 with its numbers (no JACK; about ten seconds)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.transcription import SOUNDFONT

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_quick_transcription_section_has_numbers(tmp_path: Path) -> None:
    if shutil.which("fluidsynth") is None or not SOUNDFONT.is_file():  # a failure, never a skip
        pytest.fail("fluidsynth / fluid-soundfont-gm missing (Debian packages; .ci/run installs)")
    command = [sys.executable, "-m", "benchmarks", "--quick", "--only", "transcription"]
    result = subprocess.run(
        [*command, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = (tmp_path / "RESULTS.md").read_text()
    body = text.split("## 7. Audio calls: transcription", 1)[1]
    assert "Not measured" not in body
    f_cells = re.findall(r"\| (offline \(pYIN\)|live tracker) \| clean \| (\d\.\d{3}) \|", body)
    assert {method for method, _ in f_cells} == {"offline (pYIN)", "live tracker"}
    assert all(0.0 <= float(f) <= 1.0 for _, f in f_cells)
    assert re.search(r"\| clean \| \d+ \| \d+ \| \d+ \| ≤ 60 \|", body), "no latency row"


@pytest.mark.timeout(300)
def test_audio_call_answers_table_has_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.transcription_answers import main

    if shutil.which("fluidsynth") is None or not SOUNDFONT.is_file():
        pytest.fail("fluidsynth / fluid-soundfont-gm missing (Debian packages; .ci/run installs)")
    out = tmp_path / "answers.md"
    assert main(["--cases", "1", "--seeds", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert text in capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| answer to the")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| answer to the MIDI call",
        "| answer to the MIDI call, other seeds",
        "| answer to the flute audio call",
        "| answer to the voice oohs audio call",
    ]
    for row in rows:  # in-key share, density: measured percentages
        cells = row.split(" | ")
        assert re.fullmatch(r"\d+%", cells[2]) and re.fullmatch(r"\d+%", cells[5]), row
