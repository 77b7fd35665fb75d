"""Priming, sampling loop, lengths, reproducibility, and the streaming generation worker."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bridge.clock import TempoTracker
from bridge.generate import (
    AnswerGenerator,
    AnswerJob,
    AnswerReport,
    EventStream,
    SamplingParams,
    answer_events,
    answer_rng,
    call_chunks,
    call_tokens,
    continue_notes,
)
from bridge.prime import PrimedStates
from bridge.schedule import Scheduler
from bridge.tokens import Note, TokenScheme

SEED = [Note(0, 60, 2, 80), Note(2, 64, 2, 80), Note(4, 67, 4, 100), Note(8, 72, 2, 60)]


class CountingModel:
    """Wraps a model, recording how many tokens each run() call gets; can fail on call N, after
    ``before_failing()`` returned (a test waits there for what must happen first)."""

    def __init__(self, model, fail_on: int | None = None, before_failing=None) -> None:
        self._model = model
        self.scheme = model.scheme
        self.name = model.name
        self.calls: list[int] = []
        self.fail_on = fail_on
        self.before_failing = before_failing

    def initial_state(self):
        return self._model.initial_state()

    def run(self, tokens, state):
        self.calls.append(len(tokens))
        if self.fail_on is not None and len(self.calls) >= self.fail_on:
            if self.before_failing is not None:
                self.before_failing()
            raise RuntimeError("inference exploded")
        return self._model.run(tokens, state)


def test_call_tokens_keep_the_last_events(tiny_model) -> None:
    scheme = tiny_model.scheme
    tokens, count = call_tokens(scheme, SEED)
    assert tokens == scheme.encode(SEED) and count == 4
    long = [Note(3 * i, 48 + i % 24, 2, 80) for i in range(100)]
    tokens, count = call_tokens(scheme, long, max_events=10)
    assert count == 10 and len(tokens) == 1 + 40
    assert scheme.decode(tokens) == [Note(3 * i, 48 + (90 + i) % 24, 2, 80) for i in range(10)]


def test_call_is_primed_event_by_event_then_one_token_per_step(tiny_model) -> None:
    model = CountingModel(tiny_model)
    stream = EventStream(model, SEED, SamplingParams(), answer_rng(1))  # type: ignore[arg-type]
    assert model.calls == [1, 4, 4, 4, 4]  # the BOS, then each event (bridge.prime)
    assert stream.call_events == 4 and stream.primed_events == 0
    for _ in range(5):
        stream.next_event()
    assert model.calls[5:] == [1] * stream.tokens_sampled
    assert stream.tokens_sampled >= 10


def test_a_call_primed_while_played_starts_from_its_state(tiny_model) -> None:
    model = CountingModel(tiny_model)
    primed = PrimedStates()
    primed.prime(model, call_chunks(tiny_model.scheme, SEED[:-1])[0])  # played so far
    model.calls.clear()
    stream = EventStream(model, SEED, SamplingParams(), answer_rng(1), primed=primed)  # type: ignore[arg-type]
    assert model.calls == [4] and stream.primed_events == 3  # only the last event is left
    fresh = EventStream(tiny_model, SEED, SamplingParams(), answer_rng(1))
    assert [stream.next_event() for _ in range(8)] == [fresh.next_event() for _ in range(8)]


def test_empty_call_primes_with_bos(tiny_model) -> None:
    notes = continue_notes(tiny_model, [], length=4, seed=3)
    assert notes


def test_events_follow_the_grammar(tiny_model) -> None:
    stream = EventStream(tiny_model, SEED, SamplingParams(temperature=2.0), answer_rng(5))
    scheme = tiny_model.scheme
    for _ in range(100):
        event = stream.next_event()
        assert 0 <= event.shift <= scheme.max_shift
        if not event.is_rest:
            assert scheme.pitches_token(event.pitches) is not None
            assert 1 <= event.duration <= scheme.max_duration
            assert 0 <= event.velocity_bucket < scheme.velocity_buckets


def test_length_in_events(tiny_model) -> None:
    stream = EventStream(tiny_model, SEED, SamplingParams(), answer_rng(2))
    events = list(answer_events(stream, 12, "events"))
    assert len(events) == 12
    assert all(not e.is_rest for _, e in events)
    positions = [p for p, _ in events]
    assert positions == sorted(positions)


@pytest.mark.parametrize(("unit", "beats"), [("beats", 6), ("bars", 2 * 3)])
def test_length_in_beats_and_bars(tiny_model, unit: str, beats: int) -> None:
    stream = EventStream(tiny_model, SEED, SamplingParams(), answer_rng(4))
    events = list(answer_events(stream, 6 if unit == "beats" else 2, unit, beats_per_bar=3))
    steps = tiny_model.scheme.steps_per_beat * beats
    first = events[0][0]
    assert all(p - first < steps for p, _ in events)
    assert len(events) > 1


def test_bad_length_is_refused(tiny_model) -> None:
    stream = EventStream(tiny_model, SEED, SamplingParams(), answer_rng(4))
    with pytest.raises(ValueError):
        list(answer_events(stream, 0))
    with pytest.raises(ValueError):
        list(answer_events(stream, 4, "minutes"))


def test_continue_notes_is_reproducible_with_a_seed(tiny_model) -> None:
    a = continue_notes(tiny_model, SEED, length=16, seed=42)
    b = continue_notes(tiny_model, SEED, length=16, seed=42)
    c = continue_notes(tiny_model, SEED, length=16, seed=43)
    assert a == b
    assert a != c


def test_temperature_and_length_change_the_answer(tiny_model) -> None:
    base = continue_notes(tiny_model, SEED, length=16, seed=42)
    assert continue_notes(tiny_model, SEED, length=16, seed=42, temperature=0.2) != base
    longer = continue_notes(tiny_model, SEED, length=24, seed=42)
    assert longer[: len(base)] == base  # same rng stream, just further
    assert len({n.onset for n in longer}) > len({n.onset for n in base})


def test_answer_rng() -> None:
    assert answer_rng(5, 0).random() == answer_rng(5, 0).random()
    assert answer_rng(5, 0).random() != answer_rng(5, 1).random()


# ----- the worker -------------------------------------------------------------------------------
@pytest.fixture
def rig(fake_clock, sink, events):
    tempo = TempoTracker(120, fake_clock)
    sched = Scheduler(sink, tempo, events, fake_clock, wait=fake_clock.wait)
    reports: list[AnswerReport] = []
    done = threading.Event()

    def on_report(report: AnswerReport) -> None:
        reports.append(report)
        done.set()

    gen = AnswerGenerator(
        sched,
        tempo,
        clock=fake_clock,
        wait=fake_clock.wait,
        lookahead_beats=2.0,
        on_report=on_report,
    )
    sched.start()
    gen.start()
    yield SimpleNamespace(tempo=tempo, sched=sched, gen=gen, reports=reports, done=done)
    gen.stop()
    sched.stop()


def job(model, answer_id: int = 1, **kwargs) -> AnswerJob:
    values: dict[str, Any] = {"length": 24, "rng": answer_rng(9, answer_id), "call": tuple(SEED)}
    values.update(kwargs)
    return AnswerJob(answer_id=answer_id, model=model, **values)


def test_worker_streams_ahead_of_the_playhead(rig, tiny_model, until) -> None:
    rig.gen.submit(job(tiny_model, length=64))
    assert until(lambda: rig.sched.active_answers == [1])
    # The clock stands still: the worker stops about lookahead_beats ahead and waits.
    assert until(lambda: rig.sched.next_due() is not None)
    assert not rig.done.wait(0.2)
    assert rig.gen.busy
    planned = rig.sched._heap  # inspecting the queue is the point
    assert max(e.beat for e in planned) - rig.tempo.beat_at(rig.sched._clock()) < 2.0 + 8 + 1e-9
    rig.gen.cancel()
    assert rig.done.wait(2)
    assert rig.reports[0].cancelled


def test_worker_anchors_on_the_next_beat(rig, tiny_model, fake_clock, until) -> None:
    fake_clock.advance(0.3)  # beat 0.6
    rig.gen.submit(job(tiny_model, start="beat", length=4))
    assert until(lambda: rig.sched.next_due() is not None)
    assert rig.sched.next_due() == pytest.approx(rig.tempo.time_at_beat(1.0))


def test_an_answer_starting_now_is_anchored_where_the_output_is_exact(
    fake_clock, sink, events, tiny_model, until
) -> None:
    tempo = TempoTracker(120, fake_clock)
    sched = Scheduler(sink, tempo, events, fake_clock, wait=fake_clock.wait)
    asked: list[float] = []

    def earliest(t: float) -> float:  # e.g. the native backend's next period boundary
        asked.append(t)
        return t + 0.004

    gen = AnswerGenerator(sched, tempo, clock=fake_clock, wait=fake_clock.wait, earliest=earliest)
    sched.start()
    gen.start()
    try:
        t0 = fake_clock()
        gen.submit(job(tiny_model, start="now", length=4))
        assert until(lambda: sched.next_due() is not None)
        assert asked == [t0] and sched.next_due() == pytest.approx(t0 + 0.004)
        fake_clock.advance(0.3)  # beat 0.6: a beat start is found after the earliest time
        gen.submit(job(tiny_model, answer_id=2, start="beat", length=4))
        assert until(lambda: 2 in sched.active_answers and sched.next_due() is not None)
        assert sched.next_due() == pytest.approx(tempo.time_at_beat(1.0))
    finally:
        gen.stop()
        sched.stop()


def test_worker_failure_silences_the_answer_and_survives(
    rig, tiny_model, sink, fake_clock, until
) -> None:
    rig.gen.lookahead_beats = 1e6  # the fake clock stands still: generate everything at once
    # fail only once the scheduler (its own thread) has started the first notes
    failing = CountingModel(
        tiny_model, fail_on=30, before_failing=lambda: until(lambda: len(sink.note_ons()) > 0)
    )
    rig.gen.submit(job(failing, length=64, start="now"))
    assert rig.done.wait(2)
    assert rig.reports[0].error is not None and "exploded" in rig.reports[0].error
    assert until(lambda: rig.sched.active_answers == [])
    assert len(sink.note_ons()) > 0  # the first notes had started (the clock stands still)
    assert sink.sounding() == set()
    assert rig.gen.errors == 1
    rig.done.clear()
    rig.gen.submit(job(tiny_model, answer_id=2, length=2))  # the worker still works
    assert until(lambda: 2 in rig.sched.active_answers or rig.done.is_set())


def test_submit_replaces_the_job_in_progress(rig, tiny_model, until) -> None:
    rig.gen.submit(job(tiny_model, answer_id=1, length=200))
    assert until(lambda: 1 in rig.sched.active_answers)
    rig.sched.cancel_all(before=2)
    rig.gen.submit(job(tiny_model, answer_id=2, length=2))
    assert until(lambda: len(rig.reports) >= 1 and rig.reports[0].answer_id == 1)
    assert rig.reports[0].cancelled
    assert until(lambda: 2 in rig.sched.active_answers or len(rig.reports) == 2)


def test_same_rng_seed_same_worker_answer(rig, tiny_model, sink, events, fake_clock, until) -> None:
    rig.gen.lookahead_beats = 1e6
    plans = []
    for answer_id in (1, 2):
        rig.done.clear()
        rig.gen.submit(job(tiny_model, answer_id=answer_id, length=8, rng=np.random.default_rng(3)))
        assert until(rig.done.is_set)
        plans.append(
            [
                args[1]
                for name, args in events.calls
                if name == "answer_plan" and args[0] == answer_id
            ]
        )
    assert plans[0] == plans[1] and plans[0]


def _play_out(rig, fake_clock, until, steps: int = 1000) -> None:
    """Step the fake clock an eighth of a second at a time until the answer has played."""
    for _ in range(steps):
        if rig.reports and not rig.sched.active_answers:
            return
        assert until(lambda: not rig.gen.busy or rig.gen.waiting)
        woke = rig.gen.playhead_waits
        fake_clock.advance(0.125)
        assert until(lambda: (d := rig.sched.next_due()) is None or d > fake_clock())
        # the worker saw the new time (else this loop could outrun it)
        assert until(lambda w=woke: not rig.gen.busy or rig.gen.playhead_waits > w)


def test_plans_come_in_batches_before_their_notes(
    rig, tiny_model, events, fake_clock, until
) -> None:
    rig.gen.submit(job(tiny_model, length=32, start="now"))
    _play_out(rig, fake_clock, until)
    assert rig.reports and not rig.reports[0].cancelled
    plans = [args[1] for name, args in events.calls if name == "answer_plan"]
    assert 2 <= len(plans) < rig.reports[0].answer_events
    assert len(plans[0]) == len(set(plans[0])) >= 1
    assert sum(len(p) for p in plans) == rig.reports[0].notes
    planned_so_far = 0
    played = 0
    for name, args in events.calls:  # every note was announced before it started
        if name == "answer_plan":
            planned_so_far += len(args[1])
        elif name == "note":
            played += 1
            assert played <= planned_so_far


def test_answer_events_never_strike_one_key_twice_at_once() -> None:
    """The model may repeat a pitch at the same onset; the answer plays it once."""
    from bridge.generate import answer_events
    from bridge.tokens import Event

    class Scripted:
        scheme = TokenScheme()

        def __init__(self) -> None:
            self.events = iter(
                [
                    Event(0, (60, 64), 4, 3),
                    Event(0, (64,), 8, 3),  # 64 again at the same onset: dropped
                    Event(0, (64, 67), 2, 3),  # only 67 is new
                    Event(4, (64,), 4, 3),  # a later onset: a new note
                ]
            )

        def next_event(self) -> Event:
            return next(self.events)

    got = list(answer_events(Scripted(), 3))  # type: ignore[arg-type]
    assert [(pos, e.pitches) for pos, e in got] == [(0, (60, 64)), (0, (67,)), (4, (64,))]


def test_a_chord_split_over_events_leaves_in_one_batch(
    rig, tiny_model, events, fake_clock, monkeypatch, until
) -> None:
    """Issue 9: the first event went out alone, so under load a chord's notes reached the
    scheduler (and the port) milliseconds apart.  Every batch now holds whole onsets."""
    from bridge.tokens import Event

    def chords(stream, length, unit="events", *, beats_per_bar=4):
        position = 0
        for onset in range(6):
            position += 4 if onset else 0
            for pitch in (60, 64, 67):  # one chord written as three events at one onset
                yield position, Event(0, (pitch + onset,), 2, 3)

    monkeypatch.setattr("bridge.generate.answer_events", chords)
    rig.gen.submit(job(tiny_model, length=18, start="now"))
    _play_out(rig, fake_clock, until)
    assert rig.reports and rig.reports[0].notes == 18
    plans = [args[1] for name, args in events.calls if name == "answer_plan"]
    batches = [{note.beat for note in plan} for plan in plans]
    for i, beats in enumerate(batches):
        for other in batches[i + 1 :]:
            assert not beats & other, f"an onset was split over two batches: {plans}"
    assert all(len(plan) % 3 == 0 for plan in plans)
