"""bridge.midifile: .mid ⇄ notes in beats (round trip, multi-track, drums, bad files)."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest

from bridge.errors import AntiphonError
from bridge.midifile import MidiFileError, TimedNote, read_midi, write_midi

PHRASES = Path(__file__).resolve().parents[2] / "examples" / "phrases"


def test_round_trip_keeps_notes_tracks_and_tempo(tmp_path: Path) -> None:
    melody = [
        TimedNote(0.0, 60, 1.0, 90),
        TimedNote(1.0, 62, 0.5, 70),
        TimedNote(1.5, 64, 0.25, 100),
        TimedNote(4.0, 67, 2.0, 40),
    ]
    bass = [TimedNote(0.0, 36, 4.0, 80, channel=1), TimedNote(0.0, 43, 4.0, 80, channel=1)]
    path = tmp_path / "x.mid"
    write_midi(path, [("melody", melody), ("bass", bass)], bpm=96.0)
    song = read_midi(path)
    assert song.bpm == 96.0
    assert list(song.notes) == sorted(melody + bass)
    assert song.end == 6.0
    names = [t.name for t in mido.MidiFile(path).tracks]
    assert names[1:] == ["melody", "bass"]


def test_repeated_note_is_not_cut_by_its_own_note_on(tmp_path: Path) -> None:
    notes = [TimedNote(0.0, 60, 1.0, 80), TimedNote(1.0, 60, 1.0, 80)]
    path = tmp_path / "rep.mid"
    write_midi(path, [("t", notes)])
    assert list(read_midi(path).notes) == notes


def _write_raw(path: Path, messages: list[mido.Message], tpb: int = 96) -> None:
    midi = mido.MidiFile(type=0, ticks_per_beat=tpb)
    track = mido.MidiTrack(messages)
    midi.tracks.append(track)
    midi.save(path)


def test_note_on_velocity_zero_is_note_off_and_drums_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "raw.mid"
    _write_raw(
        path,
        [
            mido.Message("note_on", note=60, velocity=100, time=0),
            mido.Message("note_on", channel=9, note=36, velocity=100, time=0),
            mido.Message("note_on", note=60, velocity=0, time=48),
            mido.Message("note_off", channel=9, note=36, time=0),
            mido.Message("note_on", note=64, velocity=50, time=48),  # never released
            mido.Message("control_change", control=64, value=127, time=96),
        ],
    )
    song = read_midi(path)
    assert song.bpm == 120.0  # no tempo in the file
    assert list(song.notes) == [TimedNote(0.0, 60, 0.5, 100), TimedNote(1.0, 64, 1.0, 50)]
    with_drums = read_midi(path, include_drums=True)
    assert TimedNote(0.0, 36, 0.5, 100, channel=9) in with_drums.notes


def test_example_phrases_read_back() -> None:
    files = sorted(PHRASES.glob("*.mid"))
    assert len(files) >= 3
    for path in files:
        song = read_midi(path)
        assert len(song.notes) >= 8, path
        assert 4.0 <= song.end <= 16.0, path
    chorale = read_midi(PHRASES / "bach_chorale.mid")
    assert {n.channel for n in chorale.notes} == {0, 1, 2, 3}  # four voices, four tracks


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no such file"),
        (b"", "not a readable MIDI file"),
        (b"MThd\x00\x00\x00\x06\x00\x01", "not a readable MIDI file"),
        (b"hello, I am a text file", "not a readable MIDI file"),
    ],
)
def test_bad_files_raise_one_line(tmp_path: Path, content: bytes | None, needle: str) -> None:
    path = tmp_path / "bad.mid"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MidiFileError) as info:
        read_midi(path)
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message
    assert isinstance(info.value, AntiphonError) and isinstance(info.value, ValueError)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MidiFileError, match="directory"):
        read_midi(tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(onset=-1.0),
        dict(duration=0.0),
        dict(pitch=128),
        dict(velocity=0),
        dict(channel=16),
        dict(onset=float("nan")),
    ],
)
def test_timed_note_is_validated(kwargs: dict[str, float]) -> None:
    values: dict[str, float] = dict(onset=0.0, pitch=60, duration=1.0, velocity=80, channel=0)
    values.update(kwargs)
    with pytest.raises(ValueError):
        TimedNote(**values)  # type: ignore[arg-type]


def test_timed_note_rejects_wrong_types() -> None:
    with pytest.raises(TypeError):
        TimedNote(0.0, 60.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TimedNote(True, 60, 1.0)


def test_write_rejects_bad_tempo(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_midi(tmp_path / "x.mid", [], bpm=0.0)
