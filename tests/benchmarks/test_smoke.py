"""The benchmark harness works end to end: ``python -m benchmarks --quick`` into a temporary
directory writes RESULTS.md with every section measured (numbers present, speeds not asserted),
results.json and the plots."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import SECTIONS as REGISTERED

REPO = Path(__file__).resolve().parents[2]
NUMBERS = sorted(number for number, _ in REGISTERED.values())
SECTIONS = [f"{number}. {title}" for number, title in sorted(REGISTERED.values())]
NUMBER_CELL = re.compile(r"\|\s*-?[\d,]+(\.\d+)?\s*(ms|s|×|%)?\s*\|")


@pytest.mark.slow
@pytest.mark.jack
@pytest.mark.timeout(900)  # the quick benchmark run alone may take 600 s
def test_quick_run_writes_every_section(tmp_path: Path) -> None:
    if shutil.which("jackd") is None:  # a missing tool is a failure, never a skip
        pytest.fail("jackd is not installed (Debian: apt-get install jackd2; .ci/run does)")
    if not (REPO / "models" / "default.onnx").is_file():
        pytest.fail("models/default.onnx (the shipped model) is missing")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Machine" in text and "onnxruntime" in text and "CPU" in text
    assert "Not measured" not in text
    chunks = re.split(r"^## ", text, flags=re.MULTILINE)
    bodies = {chunk.splitlines()[0]: chunk for chunk in chunks if chunk.strip()}
    for title in SECTIONS:
        assert title in bodies, f"section {title!r} missing"
        numbers = NUMBER_CELL.findall(bodies[title])
        assert len(numbers) >= 3, f"section {title!r} has no measured numbers"
    summary = bodies["Summary"]
    assert summary.count("\n|") >= 6, "the summary table is nearly empty"
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        path = tmp_path / image
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image
    raw = json.loads((tmp_path / "results.json").read_text())
    assert [s["number"] for s in raw["sections"]] == NUMBERS
    assert not any(s["error"] for s in raw["sections"])
