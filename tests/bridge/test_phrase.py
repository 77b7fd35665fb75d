"""PhraseCapture and call quantization, with injected timestamps."""

from __future__ import annotations

import mido
import pytest

from bridge.clock import TempoTracker
from bridge.phrase import CapturedNote, PhraseCapture, quantize_call
from bridge.tokens import Note, TokenScheme


def on(pitch: int, velocity: int = 90, channel: int = 0) -> mido.Message:
    return mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)


def off(pitch: int, channel: int = 0) -> mido.Message:
    return mido.Message("note_off", note=pitch, channel=channel)


def pedal(down: bool, channel: int = 0) -> mido.Message:
    return mido.Message("control_change", control=64, value=127 if down else 0, channel=channel)


def test_note_on_velocity_zero_is_a_note_off() -> None:
    cap = PhraseCapture(chord_window_s=0.0)
    assert cap.feed(on(60), 1.0)
    assert cap.is_playing
    assert not cap.feed(on(60, velocity=0), 1.5)
    assert not cap.is_playing
    assert cap.take(2.0) == [CapturedNote(60, 1.0, 0.5, 90)]


def test_sustain_pedal_extends_durations() -> None:
    cap = PhraseCapture(chord_window_s=0.0)
    cap.feed(pedal(True), 0.9)
    cap.feed(on(60), 1.0)
    cap.feed(off(60), 1.2)
    assert cap.is_playing  # still sounding under the pedal
    cap.feed(on(64), 1.5)
    cap.feed(off(64), 1.6)
    cap.feed(pedal(False), 2.0)
    assert not cap.is_playing
    assert cap.last_activity == 2.0
    notes = cap.take(3.0)
    assert [(n.pitch, n.onset_s, n.duration_s) for n in notes] == [
        (60, 1.0, pytest.approx(1.0)),
        (64, 1.5, pytest.approx(0.5)),
    ]


def test_pedal_on_another_channel_does_not_sustain() -> None:
    cap = PhraseCapture(chord_window_s=0.0)
    cap.feed(pedal(True, channel=1), 0.0)
    cap.feed(on(60), 1.0)
    cap.feed(off(60), 1.2)
    assert not cap.is_playing


def test_restruck_note_under_the_pedal_ends_the_old_one() -> None:
    cap = PhraseCapture(chord_window_s=0.0)
    cap.feed(pedal(True), 0.0)
    cap.feed(on(60), 1.0)
    cap.feed(off(60), 1.1)
    cap.feed(on(60), 2.0)
    cap.feed(off(60), 2.1)
    cap.feed(pedal(False), 3.0)
    assert [(n.onset_s, n.duration_s) for n in cap.take(4.0)] == [
        (1.0, pytest.approx(1.0)),
        (2.0, pytest.approx(1.0)),
    ]


def test_notes_within_the_chord_window_share_an_onset() -> None:
    cap = PhraseCapture(chord_window_s=0.03)
    cap.feed(on(60), 1.000)
    cap.feed(on(64), 1.012)
    cap.feed(on(67), 1.025)
    cap.feed(on(72), 1.080)  # too late: a new onset
    for p in (60, 64, 67, 72):
        cap.feed(off(p), 1.5)
    onsets = {n.pitch: n.onset_s for n in cap.take(2.0)}
    assert onsets == {60: 1.0, 64: 1.0, 67: 1.0, 72: 1.080}


def test_channel_filter() -> None:
    cap = PhraseCapture(chord_window_s=0.0, channel=2)
    assert not cap.feed(on(60, channel=0), 1.0)
    assert cap.feed(on(62, channel=1), 1.0)
    cap.feed(off(62, channel=1), 1.5)
    cap.feed(off(60, channel=0), 1.5)
    assert [n.pitch for n in cap.take(2.0)] == [62]
    with pytest.raises(ValueError):
        PhraseCapture(channel=17)


def test_phrase_ends_after_silence_not_while_held() -> None:
    cap = PhraseCapture()
    assert not cap.ended(10.0, 0.5)  # nothing played
    cap.feed(on(60), 1.0)
    assert not cap.ended(5.0, 0.5)  # held
    cap.feed(off(60), 1.4)
    assert not cap.ended(1.8, 0.5)
    assert cap.ended(1.9, 0.5)


def test_take_closes_held_notes_and_clears() -> None:
    cap = PhraseCapture()
    cap.feed(on(60), 1.0)
    cap.feed(on(67), 1.2)
    cap.feed(off(60), 1.5)
    notes = cap.take(2.0)
    assert [(n.pitch, n.duration_s) for n in notes] == [
        (60, pytest.approx(0.5)),
        (67, pytest.approx(0.8)),
    ]
    assert not cap.has_notes and not cap.is_playing
    cap.feed(off(67), 2.5)  # the late note-off of a taken note is ignored
    assert cap.take(3.0) == []


def test_unrelated_messages_are_ignored() -> None:
    cap = PhraseCapture()
    assert not cap.feed(mido.Message("pitchwheel", pitch=100), 1.0)
    assert not cap.feed(off(50), 1.0)  # never started
    assert cap.last_activity is None


def test_quantize_call_on_the_beat_grid(fake_clock) -> None:
    scheme = TokenScheme(steps_per_beat=4)
    tempo = TempoTracker(120, fake_clock)  # beat 0 at the fake start, 0.5 s per beat
    t0 = fake_clock()
    notes = [
        CapturedNote(60, t0 + 0.26, 0.24, 100),  # beat 0.52 → step 2 (origin), one step
        CapturedNote(64, t0 + 0.51, 0.49, 64),  # beat 1.02 → step 4 → onset 2
        CapturedNote(67, t0 + 0.87, 1.0, 30),  # beat 1.74 → step 7 → onset 5, 8 steps
    ]
    seed = quantize_call(notes, scheme, tempo)
    assert [(n.onset, n.pitch, n.duration) for n in seed] == [(0, 60, 2), (2, 64, 4), (5, 67, 8)]
    assert all(isinstance(n, Note) for n in seed)
    assert quantize_call([], scheme, tempo) == []


def test_quantize_call_follows_the_tempo(fake_clock) -> None:
    scheme = TokenScheme(steps_per_beat=4)
    tempo = TempoTracker(60, fake_clock)  # one beat per second
    t0 = fake_clock()
    seed = quantize_call(
        [CapturedNote(60, t0, 0.5, 80), CapturedNote(62, t0 + 0.5, 0.5, 80)], scheme, tempo
    )
    assert [(n.onset, n.duration) for n in seed] == [(0, 2), (2, 2)]
