"""Helpers for the training tests (imported by conftest and the test modules)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bridge.midifile import TimedNote, write_midi
from bridge.tokens import Note, TokenScheme

REPO = Path(__file__).resolve().parents[2]
SCHEME = TokenScheme()
TINY = (
    "--units",
    "16",
    "--embedding",
    "8",
    "--window",
    "32",
    "--batch",
    "16",
    "--chord-cap",
    "32",
    "--held-out-every",
    "4",
    "--no-progress",
)


def notes_to_midi(path: Path, notes: list[Note], scheme: TokenScheme = SCHEME) -> None:
    """Write quantized notes as a type-1 MIDI file (480 ticks per beat, 120 BPM).

    Unison notes that overlap (two voices on one pitch) go to different channels, as a
    multi-voice file would have them: on one channel MIDI cannot tell whose note-off is whose.
    """
    ends: dict[tuple[int, int], int] = {}  # (channel, pitch) → end step of its last note
    timed = []
    for n in sorted(notes):
        channel = next(c for c in range(16) if c != 9 and ends.get((c, n.pitch), 0) <= n.onset)
        ends[(channel, n.pitch)] = n.onset + n.duration
        timed.append(
            TimedNote(
                n.onset / scheme.steps_per_beat,
                n.pitch,
                n.duration / scheme.steps_per_beat,
                n.velocity,
                channel,
            )
        )
    write_midi(path, [("piano", timed)])


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """``python -m training ARGS`` in a subprocess (TensorFlow stays out of the test process)."""
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )
