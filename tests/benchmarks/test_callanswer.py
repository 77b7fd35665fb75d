"""The call/answer statistics and targets of the quality section, on hand-made notes."""

from __future__ import annotations

import math

import pytest

from benchmarks import musicstats as ms
from benchmarks.quality import Case, aggregate, answer_stats, cases_from_pieces, check_targets
from bridge.tokens import Note
from training.corpus import Piece


def _line(pitches: list[int], step: int = 4, start: int = 0) -> list[Note]:
    return [Note(start + i * step, p, step) for i, p in enumerate(pitches)]


def test_texture_register_density() -> None:
    chords = [Note(0, 48, 8), Note(0, 60, 8), Note(0, 64, 8), Note(8, 62, 8)]
    assert ms.notes_per_onset(chords) == 2.0 and ms.single_onset_share(chords) == 0.5
    assert ms.mean_pitch(chords) == pytest.approx(58.5)
    assert ms.onsets_per_beat(_line([60] * 8, step=2), beats=4) == 2.0
    assert ms.onsets_per_beat(_line([60] * 8, step=2), beats=2) == 2.0  # only the first 2 beats
    assert math.isnan(ms.notes_per_onset([])) and math.isnan(ms.mean_pitch([]))


def test_motif_echo_is_transposition_free() -> None:
    call = _line([60, 62, 64, 65, 67])  # steps +2 +2 +1 +2: 3-grams (2,2,1), (2,1,2)
    assert ms.interval_ngrams(call) == {(2, 2, 1), (2, 1, 2)}
    assert ms.motif_echo(call, _line([70, 72, 74, 75])) == 0.5  # (2,2,1) a seventh higher
    assert ms.motif_echo(call, _line([60, 59, 57, 55])) == 0.0
    assert math.isnan(ms.motif_echo(_line([60, 62]), call))
    chordal = [*call, *(Note(n.onset, n.pitch - 12, n.duration) for n in call)]
    assert ms.top_line(chordal) == [60, 62, 64, 65, 67]


def test_answer_stats_against_call_and_real() -> None:
    call = _line([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60])  # C major
    real = _line([72, 71, 69, 67, 65, 64, 62, 60])
    answer = _line([73, 71, 69, 67])  # C# out of key
    stats = answer_stats(call, answer, real, beats=8)
    assert stats["in_key"] == 0.75
    assert stats["notes_per_onset"] == 1.0 and stats["single_share"] == 1.0
    assert stats["pitch_gap"] == pytest.approx(abs(70 - 66.25))
    assert stats["density"] == 0.5  # 4 onsets in 8 beats
    assert stats["degenerate"] == 0.0
    assert 0 < stats["pc_overlap"] < 1


def test_aggregate_and_targets() -> None:
    call = tuple(_line([60, 62, 64, 65, 67, 69, 71, 72]))
    real = tuple(_line([72, 71, 69, 67, 65, 64, 62, 60]))
    cases = [Case("a", call, real), Case("b", call, real)]
    same = aggregate(cases, [real, real], beats=8)
    assert same["density_ratio"] == 1.0 and same["ioi_overlap"] == 1.0
    assert same["pitch_gap"] == 0.0 and same["lines"] == 1.0 and same["pc_overlap"] == 1.0
    sparse = aggregate(cases, [real[:4], real[:4]], beats=8)
    assert sparse["density_ratio"] == 0.5
    checks = check_targets(sparse, same, same, single_line=True)
    assert checks["density"][0] is False and checks["register"][0] is True
    assert checks["texture"][0] is True and checks["key"][0] is True
    chordal = check_targets(sparse, same, same, single_line=False)
    assert chordal["texture"][0] is False  # a chordal call answered by a single line


def test_cases_need_the_whole_continuation() -> None:
    long = Piece("long", tuple(_line(list(range(60, 84)), step=4)))  # 24 beats
    short = Piece("short", tuple(_line(list(range(60, 70)), step=4)))  # 10 beats
    cases = cases_from_pieces([long, short], call_steps=32, answer_steps=48)
    assert [c.name for c in cases] == ["long"]
    assert cases[0].call == long.notes[:8] and cases[0].continuation[0].onset == 0
    assert len(cases[0].continuation) == 12
    assert cases_from_pieces([long, long], 32, 48, limit=1)[0].name == "long"
