"""benchmarks.latency.grid_offsets: note-ons against an external MIDI clock's grid."""

from __future__ import annotations

import pytest

from benchmarks.latency import grid_offsets

TICK = 0.5 / 24  # 120 bpm


def test_notes_on_the_grid_have_no_offset() -> None:
    ticks = [i * TICK for i in range(97)]
    notes = [0.0, 6 * TICK, 24 * TICK]
    assert grid_offsets(notes, ticks, 6) == pytest.approx([0.0, 0.0, 0.0])


def test_offsets_are_signed_and_follow_uneven_ticks() -> None:
    ticks = [i * TICK for i in range(13)]
    ticks[7:] = [t + 0.004 for t in ticks[7:]]  # a late stretch: the clock's tick 7 came late
    late, early = 6 * TICK + 0.001, 12 * TICK + 0.004 - 0.002
    assert grid_offsets([late, early], ticks, 6) == pytest.approx([0.001, -0.002])


def test_a_tick_the_recorder_lost_does_not_shift_the_grid() -> None:
    ticks = [i * TICK for i in range(49) if i != 3]  # the recorder missed tick 3
    notes = [6 * TICK, 24 * TICK + 0.001, 2.5 * TICK]
    assert grid_offsets(notes, ticks, 6) == pytest.approx([0.0, 0.001, 2.5 * TICK])
    two = [i * TICK for i in range(49) if i not in (10, 11)]
    assert grid_offsets([24 * TICK, 12 * TICK - 0.002], two, 6) == pytest.approx([0.0, -0.002])


def test_notes_outside_the_ticks_are_left_out() -> None:
    ticks = [1.0 + i * TICK for i in range(10)]
    assert grid_offsets([0.5, 1.0 + 20 * TICK], ticks, 6) == []


def test_first_strikes_leaves_out_a_buffer_read_again() -> None:
    import mido

    from benchmarks.latency import first_strikes

    def on(t: float, note: int) -> tuple[float, mido.Message]:
        return t, mido.Message("note_on", note=note, velocity=80)

    def off(t: float, note: int) -> tuple[float, mido.Message]:
        return t, mido.Message("note_off", note=note)

    messages = [
        on(0.0, 60),
        on(0.0013, 60),
        on(0.0027, 60),
        off(0.1, 60),  # read 3 times
        on(0.2, 60),
        off(0.21, 60),
        on(0.22, 60),  # a real re-strike
        on(0.3, 62),
        on(0.5, 62),
    ]  # held, struck again much later: counted
    assert first_strikes(messages) == ([(0.0, 60), (0.2, 60), (0.22, 60), (0.3, 62), (0.5, 62)], 2)
