"""Unit tests of the benchmark helpers that compute figures (statistics, music features, plan
matching) on hand-made inputs, so a wrong formula fails here rather than in RESULTS.md."""

from __future__ import annotations

import math

import pytest

from benchmarks import musicstats as ms
from benchmarks.latency import match_plan, steady
from benchmarks.report import Section, Table
from benchmarks.stats import fmt, ratio, summarize
from bridge.tokens import Note


def test_summarize_percentiles_and_empty() -> None:
    s = summarize(list(range(1, 101)))
    assert s.n == 100 and s.p50 == pytest.approx(50.5) and s.p99 == pytest.approx(99.01)
    assert s.max == 100
    empty = summarize([float("nan")])
    assert empty.n == 0 and math.isnan(empty.p50)
    assert fmt(empty.p50) == "n/a"


def test_ratio_and_fmt() -> None:
    assert ratio(10, 4) == 2.5
    assert math.isnan(ratio(1, 0)) and math.isnan(ratio(float("nan"), 1))
    assert fmt(0.0001234) == "0.000123" and fmt(12.345) == "12.3" and fmt(12345.6) == "12,346"


def _scale(pitches: list[int], step: int = 2) -> list[Note]:
    return [Note(i * step, p, step) for i, p in enumerate(pitches)]


C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def test_key_estimate_and_consistency() -> None:
    seed = [*_scale(C_MAJOR * 2), Note(40, 60, 8), Note(40, 64, 8), Note(40, 67, 8)]
    key = ms.estimate_key(seed)
    assert key is not None and ms.KEY_NAMES[key] == "C major"
    assert ms.key_consistency(_scale([60, 62, 64]), key) == 1.0
    assert ms.key_consistency(_scale([61, 63, 60, 62]), key) == 0.5
    a_minor = [*_scale([57, 59, 60, 62, 64, 65, 68, 69] * 2), Note(40, 57, 8), Note(40, 64, 8)]
    assert ms.KEY_NAMES[ms.estimate_key(a_minor) or 0] == "A minor"
    assert ms.estimate_key([]) is None and math.isnan(ms.key_consistency([], 0))


def test_pitch_class_distance() -> None:
    c = _scale([60, 64, 67])
    assert ms.pitch_class_distance(c, _scale([72, 76, 79])) == 0.0  # octaves do not matter
    assert ms.pitch_class_distance(c, _scale([61, 63, 66])) == 1.0
    assert ms.pitch_class_distance(c, _scale([60, 64, 66])) == pytest.approx(1 / 3)
    assert math.isnan(ms.pitch_class_distance(c, []))


def test_histogram_overlap_ioi_durations() -> None:
    assert ms.histogram_overlap([1, 2, 2], [1, 2, 2]) == pytest.approx(1.0)
    assert ms.histogram_overlap([1, 1], [2, 2]) == 0.0
    assert ms.histogram_overlap([1, 2], [2, 3]) == pytest.approx(0.5)
    assert ms.histogram_overlap([40, 50], [60]) == pytest.approx(1.0)  # long values share a bin
    notes = [Note(0, 60, 2), Note(0, 64, 4), Note(2, 62, 2), Note(6, 60, 1)]
    assert ms.ioi_values(notes) == [2, 4]
    assert ms.duration_values(notes) == [2, 4, 2, 1]


def test_polyphony_range_and_degeneracy() -> None:
    chord = [Note(0, 60, 2), Note(0, 64, 2), Note(0, 67, 2)]
    assert ms.polyphony(chord) == 3.0
    assert ms.polyphony(_scale([60, 62])) == 1.0
    assert ms.pitch_range(chord) == 7.0
    stuck = _scale([64] * 6 + [65, 67])
    assert ms.is_degenerate(stuck)
    assert not ms.is_degenerate(_scale(C_MAJOR))
    assert ms.is_degenerate(_scale([60, 62]))  # too short to be an answer


def test_match_plan_on_the_answers_own_grid() -> None:
    spb = 0.2
    plan = [(0.0, 60), (0.5, 62), (0.5, 67), (1.0, 64)]
    received = [(10.0, 60), (10.102, 62), (10.101, 67), (10.2, 64)]
    errors = match_plan(received, plan, spb)
    assert sorted(errors) == pytest.approx([-0.0005, -0.0005, 0.0005, 0.0015])  # median 10.0005
    late_first = [(10.7, 60), (10.1, 62), (10.1, 67), (10.2, 64)]
    assert sorted(match_plan(late_first, plan, spb)) == pytest.approx([0, 0, 0, 0.7])
    assert match_plan(received[:1], plan, spb) == []  # nothing to compare with
    assert match_plan([(5.0, 60), (5.21, 64)], plan, spb) == pytest.approx([-0.005, 0.005])
    # a planned C that never sounded must not pair the later C with it
    repeated = [(0.0, 60), (0.5, 62), (1.0, 60), (2.0, 60), (2.5, 64)]
    heard = [(1.0, 60), (1.1, 62), (1.4, 60), (1.5, 64)]  # the C at beat 1.0 was dropped
    assert match_plan(heard, repeated, spb) == pytest.approx([0, 0, 0, 0])


def test_table_and_section_markdown() -> None:
    table = Table(["a", "b"], [["1", "2"]], caption="cap")
    assert table.markdown().splitlines() == ["cap", "", "| a | b |", "|---|---|", "| 1 | 2 |"]
    with pytest.raises(ValueError):
        Table(["a"], [["1", "2"]]).markdown()
    text = Section(3, "Title", error="Boom").markdown()
    assert text.startswith("## 3. Title") and "Not measured in this run:** Boom" in text


def test_training_curve_read_at_a_moment() -> None:
    from benchmarks.training import value_at

    points = [(0.0, 10.0), (10.0, 6.0), (20.0, 5.0)]
    assert value_at(points, 5.0) == pytest.approx(8.0)
    assert value_at(points, 20.0) == 5.0 and value_at(points, 30.0) == 5.0


def test_steady_removes_a_jack_clock_jump() -> None:
    # JACK time runs with monotonic time, then falls 12 ms behind for good at JACK 10.5 s
    clock = [(10.0, 100.0), (10.5, 100.5), (10.988, 101.0), (11.488, 101.5)]
    times, jumps = steady([10.2, 10.7, 11.2], clock, threshold=0.002)
    assert jumps == 1
    assert times == pytest.approx([10.2, 10.7, 11.212])
    assert steady([1.0], [], threshold=0.002) == ([1.0], 0)


def test_options_refuse_bad_sizes_and_quick_keeps_real_results() -> None:
    from benchmarks.__main__ import main
    from benchmarks.options import Options

    with pytest.raises(ValueError, match="answers"):
        Options(answers=0)
    with pytest.raises(ValueError, match="powers of two"):
        Options(periods=(100,))
    with pytest.raises(ValueError, match="temperatures"):
        Options(temperatures=(0.0,))
    assert Options.quick_sizes().out_dir != Options().out_dir
    assert main(["--answers", "0"]) == 2
    assert main(["--only", "nonsense"]) == 2
