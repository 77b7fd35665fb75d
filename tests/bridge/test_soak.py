"""Soak at CI size: call-and-response rounds through real JACK ports (``benchmarks.soak``).

A fast random model (24 grid steps per beat, biased to one- and two-step shifts and durations)
at 300 BPM keeps a round near 0.1 s, so ``ANTIPHON_SOAK_ROUNDS`` (default 1000) rounds fit in CI.
Checked: every round answered; zero stuck notes over the whole run — the bridge holds no note
at the end and failed no send, and the peer's recording has a note-off for every note-on unless
it provably lost that many events in JACK (recorded < the bridge's own count of messages sent);
the bridge exits 0 without a traceback; resident memory grows less than 10 MiB after the
warm-up; latency does not drift: the last tenth's median within 2x (+5 ms) of the first tenth's,
its p99 within 5x (+50 ms) — p99 of 100 rounds is one outlier on a shared machine.
``python -m benchmarks.soak --rounds N`` is the long run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability_support import jack_env, quick_model

from bridge.tokens import TokenScheme

REPO = str(Path(__file__).resolve().parents[2])
if REPO not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, REPO)

from benchmarks.soak import run_soak  # noqa: E402

SOAK_ROUNDS = int(os.environ.get("ANTIPHON_SOAK_ROUNDS", "1000"))
FAST_SCHEME = TokenScheme(
    steps_per_beat=24,
    max_shift=16,
    max_duration=16,
    velocity_buckets=4,
    chords=((60, 64, 67), (57, 60, 64)),
)


@pytest.mark.jack
@pytest.mark.slow
@pytest.mark.timeout(3600)  # 1000 real-time rounds (ANTIPHON_SOAK_ROUNDS)
def test_soak_call_and_response_rounds(
    jack_server: str,
    model_builder: Callable[..., Path],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    raw = model_builder(tmp_path / "raw.onnx", scheme=FAST_SCHEME, seed=5)
    model = quick_model(raw, tmp_path / "soak.onnx")
    result = run_soak(
        SOAK_ROUNDS,
        model=model,
        env={**os.environ, **jack_env(jack_server)},
        workdir=tmp_path,
        bpm=300.0,
        length=3,
        silence_beats=0.25,
    )
    figures = result.summary()
    print(f"\nsoak: {figures}")
    for key, value in figures.items():
        record_property(key, value)
    assert result.failures == [], f"{result.failures}\n{result.log_tail}"
    lost_rounds = result.input_lost_rounds + result.output_lost_rounds
    assert result.answered + lost_rounds == SOAK_ROUNDS and result.exit_code == 0
    assert lost_rounds <= SOAK_ROUNDS // 100, "JACK lost more than 1 % of the rounds"
    assert (result.bridge_sounding, result.bridge_send_failures) == (0, 0)
    assert result.bridge_sent > 0 and result.stuck_notes <= result.lost_in_transport
    assert result.rss_growth_kib < 10 * 1024
    first50, last50 = result.first_decile_p50_ms, result.last_decile_p50_ms
    first99, last99 = result.first_decile_p99_ms, result.last_decile_p99_ms
    assert last50 <= max(2 * first50, first50 + 5.0), "median latency drifted"
    assert last99 <= max(5 * first99, first99 + 50.0), "p99 latency drifted"
