"""The engine end to end on a fake clock: capture → phrase end → generation → scheduler → sink."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import mido
import pytest

from bridge.config import Settings, SettingsBox
from bridge.engine import Engine
from bridge.errors import ConfigError, ModelError

STEP = 1 / 32  # seconds per fake-clock step (exact in binary, so beat times stay exact)


class Rig:
    """Plays into an engine and steps the fake clock, letting every thread catch up each step."""

    def __init__(self, engine: Engine, clock, sink, until) -> None:
        self.engine, self.clock, self.sink, self.until = engine, clock, sink, until

    def settle(self) -> None:
        assert self.engine.flush()
        generator = self.engine.generator
        assert self.until(lambda: not generator.busy or generator.waiting)
        assert self.until(lambda: not generator.priming)
        sched = self.engine.scheduler
        assert self.until(lambda: (due := sched.next_due()) is None or due > self.clock())

    def send(self, msg: mido.Message) -> None:
        self.engine.feed(msg, self.clock())
        self.settle()

    def advance(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            self.clock.advance(STEP)
            self.settle()

    def note(
        self,
        pitch: int,
        seconds: float = 0.25,
        gap: float = 0.25,
        channel: int = 0,
        velocity: int = 90,
    ) -> None:
        self.send(mido.Message("note_on", note=pitch, velocity=velocity, channel=channel))
        self.advance(seconds)
        self.send(mido.Message("note_off", note=pitch, channel=channel))
        self.advance(gap)

    def phrase(self, pitches=(60, 62, 64, 65), channel: int = 0) -> None:
        for i, pitch in enumerate(pitches):
            self.note(pitch, gap=0.25 if i < len(pitches) - 1 else 0, channel=channel)

    def answer_ons(self) -> list[mido.Message]:
        return self.sink.note_ons()

    def play_out(self, limit: float = 60.0) -> None:
        """Step until no answer is open (or ``limit`` fake seconds)."""
        for _ in range(round(limit / 0.25)):
            if not self.engine.scheduler.active_answers and not self.engine.generator.busy:
                return
            self.advance(0.25)
        raise AssertionError("the answer did not end")


@pytest.fixture
def make_rig(tiny_model, tiny_model_path, sink, events, fake_clock, until):
    engines: list[Engine] = []

    def make(
        model=None, sink_=None, clock=None, lookahead_beats=2.0, heard_until=None, **settings
    ) -> Rig:
        clock = clock or fake_clock
        values = {"length": 8, "seed": 1, "bpm": 120.0} | settings
        engine = Engine(
            model or tiny_model,
            SettingsBox(Settings(**values)),
            sink_ or sink,
            events,
            clock=clock,
            wait=clock.wait,
            model_dirs=[tiny_model_path.parent],
            lookahead_beats=lookahead_beats,
            heard_until=heard_until,
        )
        clock.on_advance(engine.wake)
        engine.start()
        engines.append(engine)
        return Rig(engine, clock, sink_ or sink, until)

    yield make
    for engine in engines:
        engine.stop()


def test_a_phrase_then_silence_is_answered(make_rig, sink, events, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bridge.engine")
    rig = make_rig(silence_beats=1.0)  # one beat = 0.5 s at 120 BPM
    rig.phrase()
    rig.advance(0.5 - 2 * STEP)
    assert rig.answer_ons() == []
    rig.advance(2 * STEP)
    assert rig.answer_ons(), "no answer after one beat of silence"
    rig.play_out()
    assert sink.sounding() == set()
    assert {m.channel for m in sink.messages()} == {0}
    assert rig.engine.counters["answers"] == 1
    assert events.names()[0] == "answer_begin" and events.names()[-1] == "answer_end"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("answer 1:")]
    assert len(lines) == 1
    match = re.search(r"call (\d+) events, answer (\d+) events .* first note ([\d.]+) ms", lines[0])
    assert match and match.group(1) == "4" and match.group(2) == "8"
    assert 0 <= float(match.group(3)) <= STEP * 1000
    assert rig.engine.stats()["last_latency_ms"] == pytest.approx(float(match.group(3)), abs=0.1)


def test_the_call_is_primed_while_it_is_played(make_rig, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bridge.engine")
    rig = make_rig()
    rig.phrase((60, 62, 64, 65, 67))
    assert rig.engine.generator.primes == 4  # 60, 62, 64 and 65 settled one by one
    rig.advance(1.0)
    rig.play_out()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("answer 1:"))
    # only the last event (67: the newest onset could still have gained a note) was left
    assert re.search(r"call 5 events.*\(prime [\d.]+ ms, 4 of 5 events primed while playing,", line)


def test_priming_stops_where_the_models_window_starts_to_slide(make_rig) -> None:
    from bridge.generate import MAX_CALL_EVENTS

    rig = make_rig()
    for i in range(MAX_CALL_EVENTS + 6):
        rig.note(48 + i % 24, seconds=STEP, gap=STEP)
    # one prime per settled note while the call has at most MAX_CALL_EVENTS onsets; after
    # that a primed prefix could never be reused, so none is computed
    assert rig.engine.generator.primes == MAX_CALL_EVENTS


def test_the_phrase_end_waits_for_input_played_before_it(make_rig, fake_clock) -> None:
    """Issue 9: a late JACK cycle (or a drain thread kept from the GIL) delivered a note after
    the silence had run out on the clock, and the call was answered in two halves.  The phrase
    end is judged on when notes were played: not before the input has been heard that far."""
    stalled: list[float] = []  # the input's watermark while it is stalled

    def heard_until() -> float:
        return stalled[0] if stalled else fake_clock()

    rig = make_rig(silence_beats=1.0, heard_until=heard_until)  # one beat = 0.5 s
    rig.note(60, seconds=0.25, gap=0.0)
    released = rig.clock()
    stalled.append(released)  # the input stalls: nothing played since has been delivered
    rig.advance(0.75)
    assert rig.answer_ons() == [] and rig.engine.counters["answers"] == 0
    # the late note arrives, stamped when it was played (before the silence was over)
    rig.engine.feed(mido.Message("note_on", note=64, velocity=90), released + 0.4)
    stalled.clear()
    rig.settle()
    rig.send(mido.Message("note_off", note=64))
    rig.advance(0.5)
    assert rig.engine.counters["answers"] == 1
    rig.play_out()
    assert rig.engine.counters["answers"] == 1


def test_holding_a_note_is_not_silence(make_rig) -> None:
    rig = make_rig()
    rig.send(mido.Message("note_on", note=60, velocity=80))
    rig.advance(3.0)
    assert rig.answer_ons() == []
    rig.send(mido.Message("note_off", note=60))
    rig.advance(0.6)
    assert rig.answer_ons()


def test_playing_during_an_answer_interrupts_it(make_rig, sink) -> None:
    rig = make_rig(length=64)
    rig.phrase()
    rig.advance(0.5)
    rig.advance(1.0)
    assert rig.engine.scheduler.active_answers
    assert sink.sounding() or rig.answer_ons()
    before = len(sink.messages())
    rig.send(mido.Message("note_on", note=72, velocity=100))
    assert sink.sounding() == set(), "answer notes still sound after the interrupt"
    assert rig.engine.scheduler.active_answers == []
    assert rig.engine.counters["interrupts"] == 1
    rig.advance(2.0)
    assert all(m.type == "note_off" for m in sink.messages()[before:])
    rig.send(mido.Message("note_off", note=72))
    rig.advance(0.6)  # the new phrase (one note) is answered
    assert rig.engine.counters["answers"] == 2


def test_the_daws_transport_stop_ends_the_answer(make_rig, sink) -> None:
    """Found with Ardour (tests/daw): after its MIDI Stop the bridge played the rest of the
    answer, new note-ons included, for 1.5 s.  Stop ends it, note-offs sent."""
    rig = make_rig(length=64)
    rig.send(mido.Message("start"))
    rig.phrase()
    rig.advance(1.5)
    assert rig.engine.scheduler.active_answers and (sink.sounding() or rig.answer_ons())
    before = len(sink.messages())
    rig.send(mido.Message("stop"))
    assert sink.sounding() == set() and rig.engine.scheduler.active_answers == []
    rig.advance(2.0)
    assert all(m.type == "note_off" for m in sink.messages()[before:])
    assert rig.engine.counters["transport_stops"] == 1
    rig.send(mido.Message("stop"))  # a Stop with nothing playing changes nothing
    assert rig.engine.counters["transport_stops"] == 1


def test_trigger_mode_answers_on_demand_only(make_rig, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bridge.engine")
    rig = make_rig(mode="trigger", trigger_cc=20, trigger_note=36)
    rig.phrase()
    rig.advance(5.0)
    assert rig.answer_ons() == []
    rig.engine.trigger()
    rig.settle()
    rig.play_out()
    assert rig.engine.counters["answers"] == 1
    rig.send(mido.Message("control_change", control=20, value=0))  # release: nothing
    rig.send(mido.Message("control_change", control=20, value=127))
    rig.play_out()
    assert rig.engine.counters["answers"] == 2
    rig.note(48)
    rig.send(mido.Message("note_on", note=36, velocity=100))  # the trigger note
    rig.send(mido.Message("note_off", note=36))
    rig.play_out()
    assert rig.engine.counters["answers"] == 3
    seeds = [
        int(m.group(1))
        for r in caplog.records
        if (m := re.search(r"call (\d+) events", r.getMessage()))
    ]
    assert seeds == [4, 4, 1]  # a trigger repeats the last phrase; the trigger note is no seed


def test_listen_mode_never_answers(make_rig) -> None:
    rig = make_rig(mode="listen")
    rig.phrase()
    rig.advance(2.0)
    rig.engine.trigger()
    rig.advance(1.0)
    assert rig.answer_ons() == []
    assert rig.engine.counters["triggers_ignored"] == 1


def test_stop_sends_every_note_off_and_joins(make_rig, sink) -> None:
    rig = make_rig(length=64, passthrough=True, mode="trigger")
    rig.phrase()
    rig.send(mido.Message("note_on", note=40, velocity=50, channel=3))  # held, passed through
    rig.engine.trigger()  # answer while the key is still down
    rig.advance(1.0)
    assert (3, 40) in sink.sounding()
    assert len(sink.sounding()) >= 2
    rig.engine.stop()
    assert sink.sounding() == set()
    assert not rig.engine.worker.alive
    assert not rig.engine.generator.worker.alive
    assert not rig.engine.scheduler.worker.alive


def test_passthrough_and_input_channel_filter(make_rig, sink) -> None:
    rig = make_rig(passthrough=True, in_channel=2)
    rig.note(60, channel=0)  # filtered out: not captured, not passed through
    rig.advance(2.0)
    assert sink.messages() == []
    rig.note(62, channel=1, gap=0)
    passed = sink.messages()
    assert [(m.type, m.note, m.channel) for m in passed[:2]] == [
        ("note_on", 62, 1),
        ("note_off", 62, 1),
    ]
    rig.advance(0.6)
    assert rig.engine.counters["answers"] == 1


def test_model_swap_stops_the_answer_and_keeps_the_old_model_on_failure(
    make_rig, sink, tiny_model_path, model_builder
) -> None:
    model_builder(tiny_model_path.parent / "other.onnx", seed=7)
    (tiny_model_path.parent / "broken.onnx").write_bytes(b"not onnx at all")
    rig = make_rig(length=64)
    rig.phrase()
    rig.advance(1.0)
    assert sink.sounding()
    assert rig.engine.swap_model("other") == "other"
    assert sink.sounding() == set()
    assert rig.engine.model.name == "other"
    for bad in ("broken", "missing", "../other", str(tiny_model_path)):
        with pytest.raises(ModelError):
            rig.engine.swap_model(bad)
        assert rig.engine.model.name == "other"
    rig.phrase()
    rig.advance(0.6)
    assert rig.engine.counters["answers"] == 2  # answers with the new model


class FlakyModel:
    """A model that fails on some run() calls (an inference error mid-answer)."""

    def __init__(self, model, fail_calls: range) -> None:
        self._model, self.fail_calls, self.calls = model, fail_calls, 0
        self.scheme, self.name = model.scheme, "flaky"

    def initial_state(self):
        return self._model.initial_state()

    def run(self, tokens, state):
        self.calls += 1
        if self.calls in self.fail_calls:
            raise RuntimeError("inference failed")
        return self._model.run(tokens, state)


def test_generation_error_silences_and_the_bridge_goes_on(make_rig, sink, tiny_model) -> None:
    flaky = FlakyModel(tiny_model, range(60, 61))  # fails once, mid-answer
    rig = make_rig(model=flaky, length=64)
    rig.phrase()
    for _ in range(200):  # the worker stays ~2 beats ahead, so call 60 comes while it plays
        rig.advance(0.25)
        if rig.engine.counters["generation_errors"]:
            break
    assert rig.engine.counters["generation_errors"] == 1
    assert sink.note_ons(), "the answer had started before the error"
    assert rig.engine.scheduler.active_answers == []
    assert sink.sounding() == set()
    rig.phrase()
    rig.advance(0.6)
    assert rig.engine.scheduler.active_answers  # the next answer plays
    assert rig.engine.counters["generation_errors"] == 1
    rig.engine.stop()
    assert sink.sounding() == set()


def answer_of(make_rig, fake_clock, sink_factory, **settings) -> list[tuple[int, int]]:
    sink = sink_factory(fake_clock)
    rig = make_rig(sink_=sink, **settings)
    rig.phrase()
    rig.advance(0.5)
    rig.play_out()
    rig.engine.stop()
    return [(m.note, m.velocity) for m in sink.note_ons()]


@pytest.fixture
def sink_factory(sink):
    return type(sink)


def test_same_seed_same_answer(make_rig, fake_clock, sink_factory) -> None:
    first = answer_of(make_rig, fake_clock, sink_factory, seed=11)
    second = answer_of(make_rig, fake_clock, sink_factory, seed=11)
    other = answer_of(make_rig, fake_clock, sink_factory, seed=12)
    assert first == second and first
    assert other != first


def test_length_and_temperature_changes_alter_the_next_answer(
    make_rig, fake_clock, sink_factory, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.engine")
    base = answer_of(make_rig, fake_clock, sink_factory, seed=5, length=12)
    rig = make_rig(seed=5, length=12)
    rig.engine.update_settings(temperature=0.3)
    rig.phrase()
    rig.advance(0.5)
    rig.play_out()
    colder = [(m.note, m.velocity) for m in rig.sink.note_ons()[len(base) :]]
    assert colder != base
    rig.engine.update_settings(length=3)
    rig.phrase()
    rig.advance(0.5)
    rig.play_out()
    counts = [
        int(m.group(1))
        for r in caplog.records
        if (m := re.search(r"answer (\d+) events", r.getMessage()))
    ]
    assert counts[-1] == 3


def test_cc_binding_sets_a_setting(make_rig) -> None:
    rig = make_rig(cc_bindings={"temperature": 21, "length": 22})
    rig.send(mido.Message("control_change", control=21, value=0))
    rig.send(mido.Message("control_change", control=22, value=127))
    settings = rig.engine.status()
    assert settings["temperature"] == pytest.approx(0.05)
    assert settings["length"] == 128
    assert rig.engine.counters["cc_changes"] == 2


def test_update_settings_validates_and_applies_tempo(make_rig) -> None:
    rig = make_rig()
    with pytest.raises(ConfigError):
        rig.engine.update_settings(temperature=-1)
    assert rig.engine.status()["temperature"] == 1.0
    rig.engine.update_settings(bpm=90, beats_per_bar=3)
    assert rig.engine.tempo.bpm == 90
    assert rig.engine.tempo.beats_per_bar == 3


def test_midi_clock_sets_tempo_and_answers_start_on_the_beat(make_rig, sink) -> None:
    rig = make_rig(start="auto", bpm=120)
    rig.send(mido.Message("start"))
    tick = 60 / (100 * 24)
    for _ in range(24 * 8):
        rig.engine.feed(mido.Message("clock"), rig.clock())
        rig.clock.advance(tick)
    rig.settle()
    assert rig.engine.tempo.bpm == pytest.approx(100, abs=0.5)
    assert rig.engine.tempo.clock_running
    rig.send(mido.Message("note_on", note=60, velocity=90))
    rig.clock.advance(0.1)
    rig.send(mido.Message("note_off", note=60))
    # keep the clock running while waiting for the answer
    for _ in range(24 * 4):
        rig.engine.feed(mido.Message("clock"), rig.clock())
        rig.clock.advance(tick)
        rig.settle()
        if sink.note_ons():
            break
    first_time = sink.timed("note_on")[0][0]
    beat = rig.engine.tempo.beat_at(first_time)
    assert beat == pytest.approx(round(beat), abs=0.05)


def test_start_on_the_next_bar(make_rig, sink) -> None:
    rig = make_rig(start="bar", beats_per_bar=3)
    rig.advance(0.25)
    rig.phrase()
    rig.advance(3.0)
    first_time = sink.timed("note_on")[0][0]
    beat = rig.engine.tempo.beat_at(first_time)
    assert beat % 3 == pytest.approx(0, abs=1e-6)


def test_a_full_queue_drops_and_counts(tiny_model, sink, events, fake_clock) -> None:
    engine = Engine(tiny_model, SettingsBox(), sink, events, clock=fake_clock, input_queue_size=2)
    assert engine.feed(mido.Message("note_on", note=60))
    assert engine.feed(mido.Message("note_on", note=61))
    assert not engine.feed(mido.Message("note_on", note=62))
    assert engine.stats()["dropped"] == 1
    engine.stop()


def test_garbage_in_the_queue_does_not_stop_the_engine(make_rig) -> None:
    rig = make_rig()
    garbage: Any = "not a message"
    rig.engine.input_queue.put((rig.clock(), garbage))
    rig.settle()
    assert rig.engine.counters["bad_messages"] == 1
    rig.phrase()
    rig.advance(0.6)
    assert rig.answer_ons()


def test_panic_and_stop_answer(make_rig, sink) -> None:
    rig = make_rig(length=64)
    rig.phrase()
    rig.advance(1.0)
    assert sink.sounding()
    rig.engine.stop_answer()
    assert sink.sounding() == set()
    rig.phrase()
    rig.advance(1.0)
    rig.engine.panic()
    assert sink.sounding() == set()
    assert len([m for m in sink.messages("control_change") if m.control == 123]) == 16
    rig.advance(2.0)
    assert sink.sounding() == set()


def test_status_reports_settings_and_state(make_rig, tiny_model_path: Path) -> None:
    rig = make_rig(length=16)
    status = rig.engine.status()
    assert status["length"] == 16 and status["model"] == tiny_model_path.stem
    for key in ("tempo_bpm", "clock_running", "answering", "last_latency_ms", "dropped"):
        assert key in status
    rig.clock.advance(0.75)  # at 120 BPM: a beat and a half further on the grid
    assert rig.engine.status()["beat"] == pytest.approx(status["beat"] + 1.5, abs=1e-3)
