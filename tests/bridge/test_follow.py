"""Answers follow the call: model auto (single line → melody model), key, key lock, status."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
from test_engine import Rig

from bridge.config import Settings, SettingsBox
from bridge.engine import Engine
from bridge.errors import ConfigError, ModelError
from bridge.follow import Follower, single_line_share
from bridge.generate import call_chunks, continue_notes
from bridge.key import Key
from bridge.model import load_model
from bridge.prime import run_chunks
from bridge.tokens import Note


def _line(pitches: list[int]) -> list[Note]:
    return [Note(4 * i, p, 4, 80) for i, p in enumerate(pitches)]


def _chords(*chords: tuple[int, ...]) -> list[Note]:
    return [Note(8 * i, p, 8, 80) for i, chord in enumerate(chords) for p in chord]


@pytest.fixture(scope="module")
def shipped(model_builder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory holding a ``default`` (chordal) and a ``melody`` model."""
    folder = tmp_path_factory.mktemp("shipped")
    model_builder(folder / "default.onnx", seed=1)
    model_builder(folder / "melody.onnx", seed=2)
    return folder


def test_single_line_share_counts_onsets() -> None:
    assert single_line_share(_line([60, 62, 64])) == 1.0
    assert single_line_share(_chords((60, 64), (62,), (64, 67), (65,))) == 0.5
    assert math.isnan(single_line_share([]))


def test_auto_answers_a_line_with_the_melody_model_and_chords_with_the_chordal(
    shipped: Path,
) -> None:
    follower = Follower.from_dirs([shipped])
    assert follower.melody is not None and follower.melody.name == "melody"
    line = _line([76, 74, 72, 74, 76, 76, 76])
    chords = _chords((48, 60, 64, 67), (53, 60, 65, 69), (55, 62, 67, 71))
    assert follower.plan(line, None, "auto", 0.0).model.name == "melody"
    assert follower.plan(chords, None, "auto", 0.0).model.name == "default"
    assert follower.plan([], None, "auto", 0.0).model.name == "default"
    # nine single onsets in ten is still a line; eight in ten is not
    almost = [*_line([60, 62, 64, 65, 67, 69, 71, 72, 74, 76]), Note(36, 79, 4, 80)]
    assert follower.choose(almost)[1] == "single"
    two = [*almost, Note(32, 77, 4, 80)]
    assert follower.choose(two)[1] == "chordal"
    fixed = follower.plan(line, follower.chordal, "auto", 0.0)
    assert fixed.model is follower.chordal and fixed.texture == "single"


def test_a_chordal_call_goes_to_the_chordal_model_that_finds_it_likeliest(
    shipped: Path, model_builder, tmp_path: Path
) -> None:
    for name in ("default", "melody"):
        (tmp_path / f"{name}.onnx").write_bytes((shipped / f"{name}.onnx").read_bytes())
    model_builder(tmp_path / "classical.onnx", seed=3)
    follower = Follower.from_dirs([tmp_path])
    assert [m.name for m in follower.chordals] == ["default", "classical"]
    assert [m.name for m in follower.models] == ["default", "classical", "melody"]
    calls = [
        _chords((48, 60, 64, 67), (53, 60, 65, 69), (55, 62, 67, 71)),
        [*_chords((48, 64), (55, 67)), *_line([72, 74, 76, 77, 79])],
    ]
    # what each model plays itself is likelier under it than under the other
    for model in follower.chordals:
        calls.append(continue_notes(model, calls[0], length=24, temperature=0.7, seed=5))
    chosen = []
    for call in calls:
        bits = {}
        for model in follower.chordals:
            chunks, _ = call_chunks(model.scheme, call)
            bits[model.name] = run_chunks(model, chunks, score=True)[-1][2] / len(call)
        expected = min(bits, key=bits.__getitem__)
        assert follower.likeliest(call).name == expected, bits
        if single_line_share(call) < 0.9:
            assert follower.choose(call) == (follower.likeliest(call), "chordal")
        chosen.append(expected)
    assert chosen[-2:] == ["default", "classical"]
    # growing the call scores only the new events (the chain is kept per model)
    classical = follower.chordals[1]
    grown = [*calls[0], *(Note(24, p, 8, 80) for p in (48, 60, 64, 67))]
    follower.likeliest(calls[0])
    known = len(call_chunks(classical.scheme, calls[0])[0])
    chunks = call_chunks(classical.scheme, grown)[0]
    assert len(chunks) > known
    scored = follower._scores.prime(classical, chunks)
    assert (scored.reused, scored.ran) == (known, len(chunks) - known)
    assert follower.likeliest([]) is follower.chordal  # nothing to judge by
    fixed = follower.plan(calls[0], follower.chordals[1], "auto", 0.0)
    assert fixed.model is follower.chordals[1]  # a chosen model is never second-guessed


def test_a_broken_optional_model_is_refused_not_skipped(shipped: Path, tmp_path: Path) -> None:
    (tmp_path / "default.onnx").write_bytes((shipped / "default.onnx").read_bytes())
    (tmp_path / "classical.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError):
        Follower.from_dirs([tmp_path])


def test_without_a_melody_model_auto_uses_the_chordal_one(shipped: Path, tmp_path: Path) -> None:
    (tmp_path / "default.onnx").write_bytes((shipped / "default.onnx").read_bytes())
    follower = Follower.from_dirs([tmp_path])
    assert follower.melody is None
    assert follower.plan(_line([60, 62, 64]), None, "auto", 0.0).model.name == "default"


def test_plan_hears_or_takes_the_key_and_locks_it(shipped: Path) -> None:
    follower = Follower.from_dirs([shipped])
    call = _line([69, 71, 72, 74, 76, 72, 69, 68, 69])  # A minor
    heard = follower.plan(call, None, "auto", 1.0)
    assert heard.key == Key(9, True)
    scheme = heard.model.scheme
    assert heard.bias is not None
    out_of_key = [scheme.note_base + p for p in (61, 66, 73)]  # C#, F#, C#
    assert np.isneginf(heard.bias[out_of_key]).all()
    assert np.isfinite(heard.bias[scheme.note_base + 72])
    told = follower.plan(call, None, "F#m", 0.5)
    assert told.key == Key(6, True) and told.bias is not None
    assert told.bias[scheme.note_base + 72] == pytest.approx(math.log(0.5))  # C not in F#m
    free = Follower(follower.chordal, follow_register=False).plan(call, None, "auto", 0.0)
    assert free.bias is None and free.key == Key(9, True)


def test_key_settings_are_validated() -> None:
    assert Settings(key="Bb", key_lock=0.25).key == "Bb"
    with pytest.raises(ConfigError, match="key must be auto or a key"):
        Settings(key="H#")
    with pytest.raises(ConfigError, match="key_lock"):
        Settings(key_lock=1.5)


@pytest.fixture
def auto_rig(shipped, sink, events, fake_clock, until):
    engines: list[Engine] = []

    def make(
        auto: bool = True, follower: bool = True, shipped: Path = shipped, **settings: Any
    ) -> Rig:
        values: dict[str, Any] = {"length": 12, "seed": 3, "bpm": 120.0} | settings
        found = Follower.from_dirs([shipped]) if follower else None
        model = found.chordal if found else load_model(shipped / "default.onnx")
        engine = Engine(
            model,
            SettingsBox(Settings(**values)),
            sink,
            events,
            clock=fake_clock,
            wait=fake_clock.wait,
            model_dirs=[shipped],
            lookahead_beats=2.0,
            follower=found,
            auto=auto,
        )
        fake_clock.on_advance(engine.wake)
        engine.start()
        engines.append(engine)
        return Rig(engine, fake_clock, sink, until)

    yield make
    for engine in engines:
        engine.stop()


def _play_chord(rig: Rig, pitches: tuple[int, ...]) -> None:
    for pitch in pitches:
        rig.send(mido.Message("note_on", note=pitch, velocity=90))
    rig.advance(0.25)
    for pitch in pitches:
        rig.send(mido.Message("note_off", note=pitch))


def test_engine_auto_picks_per_call_and_reports_the_key(auto_rig, sink) -> None:
    rig = auto_rig(key_lock=1.0)
    assert rig.engine.status()["model"] == "auto"
    rig.phrase((69, 71, 72, 74, 76, 72, 69))  # A minor, one note at a time
    rig.advance(0.5)
    rig.play_out()
    status = rig.engine.status()
    assert (status["answer_model"], status["heard_key"]) == ("melody", "Am")
    answer = [m.note for m in sink.note_ons()]
    assert answer and {p % 12 for p in answer} <= Key(9, True).scale  # locked to A minor
    for chord in ((60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)):
        _play_chord(rig, chord)
        rig.advance(0.25)
    rig.advance(0.5)
    rig.play_out()
    status = rig.engine.status()
    assert (status["answer_model"], status["heard_key"]) == ("default", "C")


@pytest.fixture(scope="module")
def shipped_three(shipped: Path, model_builder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``shipped`` plus a ``classical`` chordal model."""
    folder = tmp_path_factory.mktemp("shipped3")
    for name in ("default", "melody"):
        (folder / f"{name}.onnx").write_bytes((shipped / f"{name}.onnx").read_bytes())
    model_builder(folder / "classical.onnx", seed=CLASSICAL_SEED)
    return folder


CLASSICAL_SEED = 16  # a tiny model under which CHORDS are likelier than under "default"
CHORDS = ((60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67))


def test_engine_auto_sends_chords_to_the_likeliest_chordal_model(
    auto_rig, shipped_three: Path, caplog: pytest.LogCaptureFixture, until
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.engine")
    rig = auto_rig(shipped=shipped_three)
    for chord in CHORDS:
        _play_chord(rig, chord)
        rig.advance(0.25)
    rig.advance(0.5)
    rig.play_out()
    heard = list(rig.engine._last_call)  # the quantized call the engine answered
    judge = Follower.from_dirs([shipped_three])
    scores = {}
    for model in judge.chordals:
        chunks, _ = call_chunks(model.scheme, heard, first=True)
        scores[model.name] = run_chunks(model, chunks, score=True)[-1][2]
    # this call is likelier under the tiny "classical" than under the tiny "default"
    assert min(scores, key=scores.__getitem__) == "classical", (scores, heard)
    assert rig.engine.status()["answer_model"] == "classical"
    assert until(lambda: any(" by classical in " in r.getMessage() for r in caplog.records))


def test_engine_swaps_between_a_named_model_and_auto(auto_rig) -> None:
    rig = auto_rig()
    assert rig.engine.swap_model("melody") == "melody"
    assert rig.engine.status()["model"] == "melody"
    rig.phrase((60, 64, 67))
    rig.advance(0.5)
    rig.play_out()
    assert rig.engine.status()["answer_model"] == "melody"
    assert rig.engine.swap_model("auto") == "auto"
    assert rig.engine.status()["model"] == "auto"


def test_auto_needs_a_follower(auto_rig) -> None:
    rig = auto_rig(auto=False, follower=False)
    with pytest.raises(ModelError, match="auto"):
        rig.engine.swap_model("auto")
    assert rig.engine.status()["model"] == "default"


def test_osc_sets_key_key_lock_and_model_auto(auto_rig) -> None:
    from support.osc import OscClient

    from bridge.osc import OscControl

    rig = auto_rig(auto=False)
    osc = OscControl("127.0.0.1", 0, rig.engine)
    osc.start()
    client = OscClient(osc.address[1])
    try:
        client.send("/antiphon/key", "F#m")
        client.send("/antiphon/key_lock", 0.75)
        assert client.ask("/antiphon/model", "auto") == ("/antiphon/model", ["auto"])
        status = client.status()
        assert (status["key"], status["key_lock"], status["model"]) == ("F#m", 0.75, "auto")
        assert status["heard_key"] == "none"  # nothing heard yet
        assert client.ask("/antiphon/key", "H")[0] == "/antiphon/error"
        assert rig.engine.status()["key"] == "F#m"
    finally:
        client.close()
        osc.stop()


def test_continue_follows_the_input(shipped: Path) -> None:
    from bridge.continuation import continue_song
    from bridge.midifile import TimedNote

    follower = Follower.from_dirs([shipped])
    line = [TimedNote(i * 0.5, p, 0.5, 90) for i, p in enumerate([62, 64, 66, 67, 69, 71, 73])]
    settings = Settings(length=24, seed=4, key="auto", key_lock=1.0)
    result = continue_song(
        line, follower.chordal, settings, bpm=100.0, follower=follower, auto=True
    )
    assert result.continuation
    assert {n.pitch % 12 for n in result.continuation} <= Key(2).scale  # D major, locked
    told = continue_song(
        line, follower.chordal, settings.replace(key="Eb"), bpm=100.0, follower=follower, auto=True
    )
    assert {n.pitch % 12 for n in told.continuation} <= Key(3).scale


def test_the_style_is_judged_on_the_calls_opening(
    shipped: Path, model_builder, tmp_path: Path
) -> None:
    (tmp_path / "default.onnx").write_bytes((shipped / "default.onnx").read_bytes())
    model_builder(tmp_path / "classical.onnx", seed=3)
    follower = Follower.from_dirs([tmp_path])
    long_call = _chords(*((48 + i % 7, 60 + i % 5) for i in range(80)))
    chosen = follower.likeliest(long_call[:140])  # 70 onsets: beyond the window already
    assert follower.likeliest(long_call) is chosen
    for model in follower.chordals:
        chunks, events = call_chunks(model.scheme, long_call, first=True)
        assert events == 64 and chunks == call_chunks(model.scheme, long_call[:140], first=True)[0]
        scored = follower._scores.prime(model, chunks)
        assert scored.ran == 0  # scored once, never again however long the call grows
