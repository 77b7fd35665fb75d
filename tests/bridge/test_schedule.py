"""Scheduler: beat → time conversion at send time, ordering, note-off bookkeeping, events."""

from __future__ import annotations

import mido
import pytest

from bridge.clock import TempoTracker
from bridge.schedule import PlannedNote, Playback, Scheduler


@pytest.fixture
def tempo(fake_clock) -> TempoTracker:
    return TempoTracker(120, fake_clock)  # beat 0 at the fake start, 0.5 s per beat


@pytest.fixture
def sched(sink, tempo, events, fake_clock) -> Scheduler:
    return Scheduler(sink, tempo, events, fake_clock, wait=fake_clock.wait)


def run_to(sched: Scheduler, clock, t: float) -> None:
    """Pump at every due time up to ``t`` (what the thread does), then at ``t``."""
    while True:
        due = sched.pump()
        if due is None or due > t:
            break
        clock.set(max(due, clock()))
    clock.set(t)
    sched.pump()


def log(sink, t0: float) -> list[tuple[float, str, int]]:
    return [
        (round(t - t0, 6), m.type if m.type != "note_on" or m.velocity else "note_off", m.note)
        for t, m in sink.timed("note_on", "note_off")
    ]


def test_notes_go_out_at_their_beats_offs_first(sched, sink, fake_clock) -> None:
    t0 = fake_clock()
    assert sched.open_answer(1, anchor_beat=2.0, channel=3)  # beat 2 = t0 + 1 s
    sched.add_notes(
        1,
        [
            PlannedNote(0.0, 60, 100, 1.0),
            PlannedNote(1.0, 62, 90, 0.5),
            PlannedNote(1.0, 60, 80, 0.5),
        ],
    )
    sched.close_answer(1)
    run_to(sched, fake_clock, t0 + 5)
    assert log(sink, t0) == [
        (1.0, "note_on", 60),
        (1.5, "note_off", 60),
        (1.5, "note_on", 62),
        (1.5, "note_on", 60),
        (1.75, "note_off", 62),
        (1.75, "note_off", 60),
    ]
    assert {m.channel for m in sink.messages()} == {2}
    assert sched.active_answers == []
    assert sink.sounding() == set()


def test_tempo_change_mid_answer_is_followed(sched, sink, tempo, fake_clock) -> None:
    t0 = fake_clock()
    sched.open_answer(1, 0.0, 1)
    sched.add_notes(1, [PlannedNote(b, 60 + b, 100, 0.5) for b in range(4)])
    sched.close_answer(1)
    run_to(sched, fake_clock, t0 + 0.5)  # beat 1 played at 120 BPM
    tempo.set_bpm(60)  # from now on a beat lasts 1 s
    run_to(sched, fake_clock, t0 + 10)
    ons = [(t, p) for t, kind, p in log(sink, t0) if kind == "note_on"]
    assert ons == [(0.0, 60), (0.5, 61), (1.5, 62), (2.5, 63)]


def test_cancel_silences_sounding_notes_and_drops_the_rest(sched, sink, events, fake_clock) -> None:
    t0 = fake_clock()
    sched.open_answer(7, 0.0, 1)
    sched.add_notes(
        7,
        [
            PlannedNote(0.0, 60, 100, 4.0),
            PlannedNote(0.0, 64, 100, 4.0),
            PlannedNote(2.0, 67, 100, 1.0),
        ],
    )
    run_to(sched, fake_clock, t0 + 0.25)
    assert sink.sounding() == {(0, 60), (0, 64)}
    assert sched.cancel_answer(7)
    assert sink.sounding() == set()
    assert sched.sounding() == []
    run_to(sched, fake_clock, t0 + 10)
    assert 67 not in [m.note for m in sink.note_ons()]
    assert not sched.add_notes(7, [PlannedNote(5.0, 70, 100, 1.0)])
    assert events.names() == ["answer_begin", "answer_plan", "note", "note", "answer_end"]


def test_cancelled_ids_cannot_open_later(sched, sink) -> None:
    sched.cancel_all(before=5)
    assert not sched.open_answer(4, 0.0, 1)
    assert sched.open_answer(5, 0.0, 1)


def test_events_report_the_answer(sched, events, fake_clock) -> None:
    t0 = fake_clock()
    sched.open_answer(3, 0.0, 1)
    plan = [PlannedNote(0.0, 60, 100, 0.5), PlannedNote(0.5, 62, 90, 0.25)]
    sched.add_notes(3, plan)
    sched.close_answer(3)
    assert events.calls[:2] == [("answer_begin", (3,)), ("answer_plan", (3, plan))]
    run_to(sched, fake_clock, t0 + 3)
    assert events.calls[2:] == [
        ("note", (60, 100, 0.5)),
        ("note", (62, 90, 0.25)),
        ("answer_end", (3,)),
    ]


def test_end_callback_reports_playback(sink, tempo, events, fake_clock) -> None:
    ended: list[Playback] = []
    sched = Scheduler(sink, tempo, events, fake_clock, on_answer_end=ended.append)
    t0 = fake_clock()
    sched.open_answer(1, tempo.beat_at(t0 + 0.2), 1)
    sched.add_notes(1, [PlannedNote(0.0, 60, 100, 0.5)])
    sched.close_answer(1)
    run_to(sched, fake_clock, t0 + 2)
    assert len(ended) == 1
    assert ended[0].first_note_at == pytest.approx(t0 + 0.2)
    assert ended[0].notes_played == 1 and not ended[0].cancelled


def test_empty_closed_answer_ends_at_once(sched, events) -> None:
    sched.open_answer(2, 0.0, 1)
    sched.close_answer(2)
    assert events.names() == ["answer_begin", "answer_end"]


def test_panic_sends_all_notes_off_everywhere(sched, sink, fake_clock) -> None:
    sched.open_answer(1, 0.0, 5)
    sched.add_notes(1, [PlannedNote(0.0, 60, 100, 8.0)])
    sched.pump()
    sched.passthrough(mido.Message("note_on", note=40, velocity=70, channel=9))
    assert sink.sounding() == {(4, 60), (9, 40)}
    sched.panic()
    ccs = [m for m in sink.messages("control_change") if m.control == 123]
    assert sorted(m.channel for m in ccs) == list(range(16))
    offs = [m for m in sink.messages("note_off")]
    assert {(m.channel, m.note) for m in offs} == {(4, 60), (9, 40)}
    assert sched.active_answers == [] and sched.sounding() == []


def test_passthrough_notes_are_tracked_and_released_on_stop(sched, sink) -> None:
    sched.passthrough(mido.Message("note_on", note=50, velocity=70))
    sched.passthrough(mido.Message("note_on", note=52, velocity=70))
    sched.passthrough(mido.Message("note_off", note=50))
    sched.passthrough(mido.Message("pitchwheel", pitch=300))
    assert sink.sounding() == {(0, 52)}
    sched.stop()
    assert sink.sounding() == set()
    assert [m.type for m in sink.messages()][-1] == "note_off"


def test_answer_note_retriggered_by_a_later_note_keeps_sounding(sched, sink, fake_clock) -> None:
    t0 = fake_clock()
    sched.open_answer(1, 0.0, 1)
    sched.add_notes(1, [PlannedNote(0.0, 60, 100, 2.0), PlannedNote(1.0, 60, 100, 2.0)])
    run_to(sched, fake_clock, t0 + 1.1)  # beat 2.2: the first note's off is due, not ours
    assert sink.sounding() == {(0, 60)}
    run_to(sched, fake_clock, t0 + 1.6)
    assert sink.sounding() == set()


def test_note_events_report_how_long_a_retriggered_note_sounds(sched, events, fake_clock) -> None:
    """A note cut short by the same key struck again reports the time it really sounds."""
    t0 = fake_clock()
    sched.open_answer(1, 0.0, 1)
    sched.add_notes(
        1,
        [
            PlannedNote(0.0, 60, 100, 2.0),
            PlannedNote(1.0, 60, 90, 2.0),
            PlannedNote(0.5, 64, 80, 2.0),
        ],
    )
    sched.close_answer(1)
    run_to(sched, fake_clock, t0 + 3)
    notes = [args for name, args in events.calls if name == "note"]
    assert notes == [(60, 100, 1.0), (64, 80, 2.0), (60, 90, 2.0)]


def test_thread_plays_on_a_fake_clock_and_stop_silences(sched, sink, fake_clock, until) -> None:
    t0 = fake_clock()
    sched.start()
    try:
        sched.open_answer(1, 0.0, 1)
        sched.add_notes(1, [PlannedNote(0.0, 60, 100, 1.0), PlannedNote(0.5, 62, 100, 8.0)])
        assert until(lambda: len(sink.note_ons()) == 1)
        fake_clock.advance(0.25)
        assert until(lambda: len(sink.note_ons()) == 2)
        assert sink.timed("note_on")[1][0] == pytest.approx(t0 + 0.25)
        fake_clock.advance(0.5)
        assert until(lambda: sink.sounding() == {(0, 62)})
    finally:
        sched.stop()
    assert sink.sounding() == set()
    assert not sched.open_answer(2, 0.0, 1)  # stopped


def test_late_notes_are_played_and_counted(sched, sink, fake_clock) -> None:
    sched.open_answer(1, 0.0, 1)
    fake_clock.advance(1.0)  # beat 2: the note at beat 0.5 is late
    sched.add_notes(1, [PlannedNote(0.5, 60, 100, 4.0)])
    sched.pump()
    assert [m.note for m in sink.note_ons()] == [60]
    assert sched.late_notes == 1


def test_failing_sink_does_not_stop_the_scheduler(tempo, events, fake_clock) -> None:
    class Broken:
        def send(self, msg: mido.Message) -> None:
            raise OSError("port gone")

    sched = Scheduler(Broken(), tempo, events, fake_clock)
    sched.open_answer(1, 0.0, 1)
    sched.add_notes(1, [PlannedNote(0.0, 60, 100, 0.5)])
    sched.close_answer(1)
    run_to(sched, fake_clock, fake_clock() + 2)
    assert sched.active_answers == []


@pytest.mark.parametrize(
    "note",
    [
        PlannedNote(0.0, 128, 100, 1.0),
        PlannedNote(0.0, 60, 0, 1.0),
        PlannedNote(-1.0, 60, 100, 1.0),
        PlannedNote(0.0, 60, 100, float("nan")),
    ],
)
def test_unplayable_notes_are_refused(sched, note) -> None:
    sched.open_answer(1, 0.0, 1)
    with pytest.raises(ValueError):
        sched.add_notes(1, [PlannedNote(0.0, 60, 100, 1.0), note])
    assert sched.next_due() is None
