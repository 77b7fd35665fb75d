"""Audio calls offline: the note segmenter on made-up frames, tempo and grid, transcription of
FluidSynth renders against the notes they were rendered from, and ``antiphon continue`` on a WAV.

Thresholds come from ``benchmarks/TRANSCRIPTION.md`` with a margin: the offline transcriber
scores F = 1.00 on the flute Ode to Joy melody and 0.97 on clean guitar; the tests ask 0.8.
"""

from __future__ import annotations

import math
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile

from benchmarks.transcription import Call, example_calls, render, score
from bridge.audio_transcribe import (
    CALL_VELOCITY,
    AudioFileError,
    AudioNote,
    Frames,
    NoteSegmenter,
    TrackerParams,
    centre_velocities,
    estimate_tempo,
    level_to_velocity,
    pair_events,
    read_call,
    segment,
    to_timed_notes,
    transcribe,
    tuned,
    tuning,
)
from bridge.cli import main
from bridge.midifile import read_midi

HOP = 0.01
PARAMS = TrackerParams(hop_s=HOP, frame_s=0.04, confirm_s=0.03, release_s=0.03, min_note_s=0.05)


def _frames(*spans: tuple[float, float]) -> Frames:
    """Frames every 10 ms from ``(seconds, midi)`` spans (NaN midi = silence), with the level
    -10 dB while voiced, -80 dB silent, and onset flags where the level rises."""
    midi: list[float] = []
    for seconds, pitch in spans:
        midi += [pitch] * round(seconds / HOP)
    m = np.array(midi, dtype=float)
    level = np.where(np.isfinite(m), -10.0, -80.0)
    onset = np.zeros(len(m), dtype=bool)
    onset[1:] = (level[1:] - level[:-1]) > 6
    onset[0] = np.isfinite(m[0])
    return Frames(np.arange(len(m)) * HOP, m, level, onset)


def _pitches(notes: list[AudioNote]) -> list[int]:
    return [n.pitch for n in notes]


def test_params_are_checked_when_built() -> None:
    with pytest.raises(TypeError, match="gate_db"):
        TrackerParams(gate_db="loud")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fmin_hz"):
        TrackerParams(fmin_hz=500.0, fmax_hz=400.0)
    with pytest.raises(ValueError, match="two periods"):
        TrackerParams(fmin_hz=30.0, frame_s=0.04)
    with pytest.raises(ValueError, match="confirm_s"):
        TrackerParams(confirm_s=2.0)


def test_segmenter_cuts_notes_at_pitch_changes_and_silences() -> None:
    frames = _frames((0.3, 60.0), (0.3, 62.1), (0.1, math.nan), (0.4, 64.0), (0.2, math.nan))
    notes = segment(frames, PARAMS)
    assert _pitches(notes) == [60, 62, 64]
    assert notes[0].onset == pytest.approx(0.0, abs=0.011)
    assert notes[1].onset == pytest.approx(0.3, abs=0.021)
    assert notes[1].offset == pytest.approx(0.6, abs=0.011)  # the silence ends it
    assert notes[2].onset == pytest.approx(0.7, abs=0.011)


def test_vibrato_within_the_hysteresis_stays_one_note() -> None:
    t = np.arange(100) * HOP
    wobble = 67.2 + 0.45 * np.sin(2 * np.pi * 5.5 * t)  # ±45 cents around +20 cents
    level = np.full(100, -12.0)
    notes = segment(Frames(t, wobble, level, np.zeros(100, dtype=bool)), PARAMS)
    assert _pitches(notes) == [67]


def test_a_note_outlasts_a_short_unvoiced_gap_while_it_stays_loud() -> None:
    # a bend the pitch tracker loses for 60 ms: the note goes on; silence as long ends it
    frames = _frames((0.3, 64.0), (0.06, math.nan), (0.3, 64.0))
    loud = frames.level_db.copy()
    loud[30:36] = -11.0
    assert _pitches(segment(Frames(frames.times, frames.midi, loud, frames.onset), PARAMS)) == [64]
    assert _pitches(segment(frames, PARAMS)) == [64, 64]


def test_a_blip_shorter_than_the_confirmation_is_no_note() -> None:
    frames = _frames((0.3, 60.0), (0.02, 72.0), (0.3, 60.0))
    assert _pitches(segment(frames, PARAMS)) == [60]


def test_a_dip_and_a_new_attack_restrike_the_same_pitch() -> None:
    n = 80
    t = np.arange(n) * HOP
    level = np.full(n, -10.0)
    level[35:40] = -20.0  # the bow lifts / the singer breathes
    onset = np.zeros(n, dtype=bool)
    onset[40] = True
    notes = segment(Frames(t, np.full(n, 70.0), level, onset), PARAMS)
    assert _pitches(notes) == [70, 70]
    assert notes[1].onset == pytest.approx(0.39, abs=0.011)  # where the rise from the dip began


def test_a_swelling_attack_is_not_a_second_note() -> None:
    n = 60
    t = np.arange(n) * HOP
    level = np.linspace(-30.0, -8.0, n)  # rises all the way: no dip after a peak
    onset = np.zeros(n, dtype=bool)
    onset[[5, 25, 45]] = True
    assert _pitches(segment(Frames(t, np.full(n, 65.0), level, onset), PARAMS)) == [65]


def test_a_subharmonic_start_is_corrected_not_kept() -> None:
    # the first frames of a leap to 81 read an octave low, then settle
    frames = _frames((0.3, 72.0), (0.2, math.nan), (0.05, 69.0), (0.3, 81.0))
    notes = segment(frames, PARAMS)
    assert _pitches(notes) == [72, 81]
    assert notes[1].onset == pytest.approx(0.5, abs=0.011)


def test_a_subharmonic_that_holds_longer_than_the_attack_is_still_corrected() -> None:
    # a bowed start can read a twelfth low for 150 ms (longer than attack_s) before it settles
    frames = _frames((0.3, 72.0), (0.2, math.nan), (0.15, 62.0), (0.3, 81.0))
    notes = segment(frames, PARAMS)
    assert _pitches(notes) == [72, 81]
    assert notes[1].onset == pytest.approx(0.5, abs=0.011)


def test_two_notes_overlapping_in_a_release_send_no_note_at_their_common_period() -> None:
    # 76 fading into 73 (a minor third): for 40 ms the mix repeats every 5 periods of 73 and
    # reads as 45; live, a note-on sent for it could only be taken back as a zero-length note
    seg = NoteSegmenter(PARAMS)
    spans = [(0.3, 76.0), (0.04, 45.0), (0.3, 73.0)]
    events = []
    t = 0.0
    for seconds, pitch in spans:
        for _ in range(round(seconds / HOP)):
            events += seg.push(t, pitch, -10.0, t == 0.0)
            t += HOP
    assert [(e.pitch, e.is_on) for e in events] == [(76, True), (76, False), (73, True)]


def test_a_note_after_a_breath_begins_at_the_level_floor() -> None:
    # the bow or the breath changes: 40 ms unvoiced but audible, then the next pitch settles
    frames = _frames((0.3, 60.0), (0.04, math.nan), (0.3, 62.0))
    level = frames.level_db.copy()
    level[30:34] = -20.0  # above the gate: a transition, not silence
    notes = segment(Frames(frames.times, frames.midi, level, frames.onset), PARAMS)
    assert _pitches(notes) == [60, 62]
    assert notes[1].onset == pytest.approx(0.30, abs=0.011)


def test_a_detuned_call_is_heard_in_tune() -> None:
    t = np.arange(200) * HOP
    pitch = np.where(t < 1.0, 64.45, 66.45) + 0.35 * np.sin(2 * np.pi * 5.5 * t)
    frames = Frames(t, pitch, np.full(200, -12.0), np.zeros(200, dtype=bool))
    assert tuning(pitch) == pytest.approx(0.45, abs=0.03)
    assert _pitches(segment(tuned(frames), PARAMS)) == [64, 66]
    assert tuning(np.array([math.nan])) == 0.0


def test_finish_ends_a_sounding_note_and_pairing_drops_short_ones() -> None:
    seg = NoteSegmenter(PARAMS)
    events = []
    for i in range(10):
        events += seg.push(i * HOP, 60.0, -10.0, i == 0)
    assert seg.sounding == 60
    events += seg.finish(0.1)
    assert [e.is_on for e in events] == [True, False]
    assert pair_events(events, 0.05) == [AudioNote(0.0, 0.1, 60, events[0].velocity)]
    assert pair_events(events, 0.2) == []


def test_velocity_follows_loudness() -> None:
    velocities = [level_to_velocity(db) for db in (-90.0, -48.0, -24.0, -6.0, 0.0)]
    assert velocities == sorted(velocities)
    assert velocities[0] == 16 and velocities[-1] == 127
    assert level_to_velocity(float("-inf")) == 16


def test_velocities_are_centred_on_the_call_not_the_recording_level() -> None:
    quiet = [AudioNote(i * 0.5, i * 0.5 + 0.4, 60 + i, v) for i, v in enumerate((40, 50, 46))]
    loud = [AudioNote(n.onset, n.offset, n.pitch, n.velocity + 55) for n in quiet]
    assert centre_velocities(quiet) == centre_velocities(loud)
    assert [n.velocity for n in centre_velocities(quiet)] == [74, 84, CALL_VELOCITY]
    assert centre_velocities([]) == []


def test_a_rendered_call_is_heard_near_the_call_velocity(tmp_path: Path) -> None:
    call = next(c for c in example_calls() if c.name == "ode_to_joy/1")
    rendered = render(call, "flute", "clean", tmp_path, rng=np.random.default_rng(0))
    for gain in (1.0, 0.05):  # a hot and a quiet recording of the same playing
        notes = transcribe(rendered.samples * gain, rendered.rate)
        assert float(np.median([n.velocity for n in notes])) == pytest.approx(80, abs=1)


def test_tempo_estimate_and_grid() -> None:
    quarter = [AudioNote(0.2 + 0.5 * i, 0.2 + 0.5 * i + 0.45, 60 + i, 90) for i in range(8)]
    assert estimate_tempo(quarter) == 120.0
    assert estimate_tempo(quarter[:2]) is None
    timed = to_timed_notes(quarter, 120.0, steps_per_beat=4)
    assert [n.onset for n in timed] == [float(i) for i in range(8)]
    assert all(n.duration == 1.0 for n in timed)  # 0.9 beats rounds to the grid
    jittered = [
        AudioNote(n.onset + 0.02 * (-1) ** i, n.offset, n.pitch, n.velocity)
        for i, n in enumerate(quarter)
    ]
    assert [n.onset for n in to_timed_notes(jittered, 120.0)] == [float(i) for i in range(8)]
    with pytest.raises(ValueError, match="bpm"):
        to_timed_notes(quarter, 0.0)


# ---- rendered audio ------------------------------------------------------------------------------


def _call(name: str) -> Call:
    return next(c for c in example_calls() if c.name == name)


@pytest.mark.parametrize(("instrument", "least"), [("flute", 0.8), ("clean guitar", 0.8)])
def test_transcribes_a_rendered_melody(tmp_path: Path, instrument: str, least: float) -> None:
    call = _call("ode_to_joy/1")
    rendered = render(call, instrument, "clean", tmp_path, rng=np.random.default_rng(0))
    notes = transcribe(rendered.samples, rendered.rate)
    result = score(rendered.intervals, rendered.pitches, notes)
    assert result["F"] >= least, (result, notes)


def test_noise_is_not_heard_as_notes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    noise = (0.05 * rng.standard_normal(48000)).astype(np.float32)
    assert transcribe(noise, 48000) == []
    assert transcribe(np.zeros(48000, dtype=np.float32), 48000) == []


def test_read_call_from_wav_flac_and_a_bad_file(tmp_path: Path) -> None:
    call = _call("ode_to_joy/1")
    rendered = render(call, "flute", "clean", tmp_path, rng=np.random.default_rng(0))
    flac = tmp_path / "call.flac"
    soundfile.write(str(flac), rendered.samples, rendered.rate)
    heard = read_call(flac)
    assert heard.estimated and heard.bpm == pytest.approx(120.0, abs=2.0)  # the Ode is at 120
    expected = [n.pitch for n in call.notes]
    shift = heard.song.notes[0].pitch - expected[0]
    assert shift % 12 == 0  # rendered moved by octaves into the flute's range
    assert [n.pitch - shift for n in heard.song.notes] == expected
    assert [n.onset for n in heard.song.notes] == [n.onset for n in call.notes]
    given = read_call(flac, bpm=60.0)
    assert not given.estimated
    assert given.song.notes[1].onset == 0.5  # half a second is half a beat at 60 BPM
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio")
    with pytest.raises(AudioFileError, match=r"bad\.wav: not a readable audio file"):
        read_call(bad)
    with pytest.raises(AudioFileError, match="no such file"):
        read_call(tmp_path / "missing.ogg")


def test_continue_command_on_a_wav(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call = _call("ode_to_joy/1")
    rendered = render(call, "flute", "clean", tmp_path, rng=np.random.default_rng(0))
    wav = tmp_path / "played.wav"
    soundfile.write(str(wav), rendered.samples, rendered.rate)
    out = tmp_path / "out.mid"
    code = main(
        [
            "continue",
            str(wav),
            "-o",
            str(out),
            "--model",
            str(tiny_model_path),
            "--length",
            "8",
            "--seed",
            "3",
            "--bpm",
            "120",
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "notes in" in printed.out and "at 120 BPM (from --bpm)" in printed.out
    assert read_midi(out).bpm == 120.0
    tracks = {
        t.name: [m for m in t if m.type == "note_on" and m.velocity]
        for t in mido.MidiFile(out).tracks[1:]
    }
    assert 14 <= len(tracks["input"]) <= 16  # the 15 notes played (F = 1.00 on this one)
    assert tracks["continuation"]

    silent = tmp_path / "silent.wav"
    soundfile.write(str(silent), np.zeros(24000, dtype=np.float32), 48000)
    assert main(["continue", str(silent), "-o", str(out), "--model", str(tiny_model_path)]) == 1
    assert "no notes heard" in capsys.readouterr().err
