"""Corpus reading: round trips over real chorales, MIDI details, cache, bad files."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest
from training_support import SCHEME, notes_to_midi

from bridge.tokens import TokenScheme
from training.corpus import composer_files, load_corpus, load_sources, midi_files, read_midi


def test_composer_files_leave_out_roman_numeral_analyses() -> None:
    paths = composer_files("bach")
    assert len(paths) > 400
    assert not [p for p in paths if p.suffix == ".rntxt"]
    assert paths == sorted(paths)


def test_unknown_composer_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="no corpus for composer"):
        composer_files("nobody-at-all")


@pytest.mark.parametrize("cap", [0, 16, 512])
@pytest.mark.parametrize("index", range(8))
def test_round_trip_real_pieces(chorales, index: int, cap: int) -> None:
    """Quantized phrase → tokens → phrase is exact, whatever the chord vocabulary holds."""
    notes = chorales[index].notes
    scheme = SCHEME.with_chords_from([p.notes for p in chorales], cap)
    assert len(notes) > 50
    tokens = scheme.encode(notes)
    assert scheme.decode(tokens) == list(notes)
    assert TokenScheme.from_json(scheme.to_json()).decode(tokens) == list(notes)


@pytest.mark.parametrize("index", range(0, 8, 2))
def test_round_trip_through_midi_file(chorales, tmp_path: Path, index: int) -> None:
    notes = list(chorales[index].notes)
    notes_to_midi(tmp_path / "piece.mid", notes)
    corpus = load_corpus([tmp_path / "piece.mid"], SCHEME, cache_dir=None, progress=False)
    assert list(corpus.pieces[0].notes) == notes
    scheme = SCHEME.with_chords_from([notes], 64)
    assert scheme.decode(scheme.encode(corpus.pieces[0].notes)) == notes


def _track(*events: tuple[str, int, int, int, int]) -> mido.MidiTrack:
    track = mido.MidiTrack()
    for kind, note, velocity, channel, time in events:
        track.append(mido.Message(kind, note=note, velocity=velocity, channel=channel, time=time))
    return track


def test_read_midi_merges_tracks_skips_drums_and_ignores_tempo(tmp_path: Path) -> None:
    midi = mido.MidiFile(type=1, ticks_per_beat=96)
    tempo = mido.MidiTrack()
    tempo.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(60), time=0))
    tempo.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(180), time=96))
    midi.tracks.append(tempo)
    # note_on with velocity 0 ends a note, as running-status files write it
    midi.tracks.append(
        _track(
            ("note_on", 60, 100, 0, 0),
            ("note_on", 60, 0, 0, 96),
            ("note_on", 64, 50, 0, 48),
            ("note_off", 64, 0, 0, 48),
        )
    )
    midi.tracks.append(
        _track(
            ("note_on", 36, 90, 9, 0),
            ("note_off", 36, 0, 9, 96),  # drums
            ("note_on", 67, 70, 2, 0),
            ("note_off", 67, 0, 2, 192),
        )
    )
    midi.save(tmp_path / "mixed.mid")
    notes = sorted(read_midi(tmp_path / "mixed.mid"))
    assert notes == [(0.0, 60, 1.0, 100), (1.0, 67, 2.0, 70), (1.5, 64, 0.5, 50)]


def test_midi_files_are_found_recursively_in_several_folders(tmp_path: Path) -> None:
    for name in ("a/x.mid", "a/deep/y.MIDI", "b/z.midi", "b/readme.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = midi_files([tmp_path / "a", tmp_path / "b"])
    assert [p.name for p in found] == ["y.MIDI", "x.mid", "z.midi"]
    with pytest.raises(ValueError, match="not found"):
        midi_files([tmp_path / "missing"])


def test_second_run_is_served_from_the_cache(midi_corpus: Path, tmp_path: Path) -> None:
    paths = midi_files([midi_corpus])
    first = load_corpus(paths, SCHEME, cache_dir=tmp_path, progress=False, workers=2)
    assert (first.converted, first.cached) == (len(paths), 0)
    second = load_corpus(paths, SCHEME, cache_dir=tmp_path, progress=False)
    assert (second.converted, second.cached) == (0, len(paths))
    assert second.pieces == first.pieces
    assert not list(tmp_path.glob("*.pkl")) and list(tmp_path.glob("*.npy"))
    triplets = TokenScheme(steps_per_beat=12, max_shift=96, max_duration=96)
    other_grid = load_corpus(paths, triplets, cache_dir=tmp_path, progress=False)
    assert other_grid.converted == len(paths)  # the grid is part of the cache key


def test_changed_file_is_converted_again(chorales, tmp_path: Path) -> None:
    path = tmp_path / "song.mid"
    notes_to_midi(path, list(chorales[0].notes))
    load_corpus([path], SCHEME, cache_dir=tmp_path / "cache", progress=False)
    notes_to_midi(path, list(chorales[1].notes))
    again = load_corpus([path], SCHEME, cache_dir=tmp_path / "cache", progress=False)
    assert again.converted == 1
    assert again.pieces[0].notes == chorales[1].notes


def test_corrupt_and_empty_files_are_skipped_and_counted(chorales, tmp_path: Path) -> None:
    notes_to_midi(tmp_path / "good.mid", list(chorales[0].notes))
    (tmp_path / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage that is not midi")
    (tmp_path / "truncated.mid").write_bytes((tmp_path / "good.mid").read_bytes()[:40])
    empty = mido.MidiFile()
    empty.tracks.append(mido.MidiTrack())
    empty.save(tmp_path / "empty.mid")
    lines: list[str] = []
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # uncached, then cold, then warm
        lines.clear()
        corpus = load_corpus(
            midi_files([tmp_path]), SCHEME, cache_dir=cache, progress=False, warn=lines.append
        )
        assert [Path(p.name).name for p in corpus.pieces] == ["good.mid"]
        assert sorted(Path(p).name for p, _ in corpus.skipped) == [
            "corrupt.mid",
            "empty.mid",
            "truncated.mid",
        ]
        assert len(lines) == 4 and lines[-1] == "skipped 3 of 4 files"
        assert all(line.startswith("warning: skipped ") for line in lines[:3])
        assert any("no notes" in line for line in lines)


def test_no_readable_piece_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "bad.mid").write_bytes(b"nope")
    with pytest.raises(ValueError, match="no readable pieces"):
        load_sources(
            SCHEME, midi_dirs=[tmp_path], cache_dir=None, progress=False, warn=lambda line: None
        )


def test_max_pieces_keeps_the_first_files(midi_corpus: Path) -> None:
    corpus = load_sources(
        SCHEME, midi_dirs=[midi_corpus], max_pieces=3, cache_dir=None, progress=False
    )
    assert [p.name for p in corpus.pieces] == [str(p) for p in midi_files([midi_corpus])[:3]]
    assert corpus.summary()["pieces"] == 3
