"""``antiphon continue``: files in, input + continuation out (.mid or .musicxml), clean failures."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.midifile import TimedNote, read_midi, write_midi

PHRASES = Path(__file__).resolve().parents[2] / "examples" / "phrases"
ODE = PHRASES / "ode_to_joy.mid"
BLUES = PHRASES / "blues_riff.mid"


def _tracks(path: Path) -> dict[str, list[TimedNote]]:
    """Notes per track name (the output has an 'input' and a 'continuation' track)."""
    import mido

    midi = mido.MidiFile(path)
    out: dict[str, list[TimedNote]] = {}
    for track in midi.tracks[1:]:
        single = mido.MidiFile(type=1, ticks_per_beat=midi.ticks_per_beat)
        single.tracks.append(track)
        tmp = path.with_suffix(f".{track.name}.mid")
        single.save(tmp)
        out[track.name] = list(read_midi(tmp).notes)
    return out


def _tracks_from_midi_twin(xml: Path) -> list[TimedNote]:
    """The continuation written as .mid with the same flags (the twin of a .musicxml output)."""
    return _tracks(xml.with_suffix(".mid"))["continuation"]


def _continue(*args: str, model: Path) -> int:
    return main(["continue", *args, "--model", str(model)])


def test_single_file_keeps_the_input_and_appends_a_reproducible_continuation(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_a, out_b = tmp_path / "a.mid", tmp_path / "b.mid"
    for out in (out_a, out_b):
        assert (
            _continue(
                str(ODE), "-o", str(out), "--length", "12", "--seed", "5", model=tiny_model_path
            )
            == 0
        )
    printed = capsys.readouterr()
    assert printed.err == ""
    assert f"wrote {out_a}: 1 input file(s), 23 notes + " in printed.out
    assert out_a.read_bytes() == out_b.read_bytes()  # --seed makes it reproducible

    seed = read_midi(ODE)
    tracks = _tracks(out_a)
    assert set(tracks) == {"input", "continuation"}
    assert tracks["input"] == list(seed.notes)
    added = tracks["continuation"]
    assert added, "the continuation is empty"
    last_onset = max(n.onset for n in seed.notes)
    assert min(n.onset for n in added) >= last_onset
    assert read_midi(out_a).bpm == seed.bpm == 120.0


def test_different_seeds_give_different_continuations(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"s{seed}.mid"
        assert (
            _continue(
                str(ODE),
                "-o",
                str(out),
                "--length",
                "16",
                "--seed",
                seed,
                "--temperature",
                "1.5",
                model=tiny_model_path,
            )
            == 0
        )
        outs.append(_tracks(out)["continuation"])
    assert outs[0] != outs[1]


def test_several_files_are_joined_in_order(tmp_path: Path, tiny_model_path: Path) -> None:
    out = tmp_path / "joined.mid"
    assert (
        _continue(
            str(ODE),
            str(BLUES),
            "-o",
            str(out),
            "--seed",
            "0",
            "--bpm",
            "90",
            model=tiny_model_path,
        )
        == 0
    )
    ode, blues = read_midi(ODE), read_midi(BLUES)
    start = math.ceil(ode.end)  # the second file starts on the beat after the first ends
    expected = sorted([*ode.notes, *(n.shifted(start) for n in blues.notes)])
    tracks = _tracks(out)
    assert tracks["input"] == expected
    assert min(n.onset for n in tracks["continuation"]) >= max(n.onset for n in expected)
    assert read_midi(out).bpm == 90.0


def test_length_in_beats_bounds_the_continuation(tmp_path: Path, tiny_model_path: Path) -> None:
    out = tmp_path / "beats.mid"
    assert (
        _continue(
            str(BLUES),
            "-o",
            str(out),
            "--length",
            "4",
            "--unit",
            "beats",
            "--seed",
            "3",
            model=tiny_model_path,
        )
        == 0
    )
    added = _tracks(out)["continuation"]
    first = min(n.onset for n in added)
    assert first >= max(n.onset for n in read_midi(BLUES).notes)
    assert all(n.onset < first + 4 - 1e-9 for n in added)  # 4 beats from its first note


def test_musicxml_output_parses_back_as_a_two_part_score(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    music21 = pytest.importorskip("music21")
    out = tmp_path / "score.musicxml"
    for target in (out, out.with_suffix(".mid")):
        assert (
            _continue(
                str(ODE), "-o", str(target), "--length", "8", "--seed", "4", model=tiny_model_path
            )
            == 0
        )
    score = music21.converter.parse(str(out))
    assert [p.partName for p in score.parts] == ["input", "continuation"]

    def struck(part: object) -> list[int]:  # pitches of notes that start (not tie ends)
        return sorted(
            p.midi
            for n in part.flatten().notes  # type: ignore[attr-defined]
            for p in n.pitches
            if not (n.tie and n.tie.type in ("stop", "continue"))
        )

    assert struck(score.parts[0]) == sorted(n.pitch for n in read_midi(ODE).notes)
    assert struck(score.parts[1]) == sorted(n.pitch for n in _tracks_from_midi_twin(out))


def test_file_without_notes_is_one_line_and_exit_1(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.mid"
    write_midi(empty, [("nothing", [])])
    assert _continue(str(empty), "-o", str(tmp_path / "x.mid"), model=tiny_model_path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no notes" in err and str(empty) in err


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        (["{bad}", "-o", "{out}.mid"], 1, "not a readable MIDI file"),
        (["{missing}", "-o", "{out}.mid"], 1, "no such file"),
        (["{ode}", "-o", "{out}.wav"], 2, "cannot tell the output format"),
        (["{ode}", "-o", "{out}.mid", "--temperature", "0"], 2, "temperature"),
        (["{ode}", "-o", "{out}.mid", "--length", "0"], 2, "length"),
        (["{ode}", "-o", "{out}.mid", "--top-p", "1.5"], 2, "top_p"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_status(
    tmp_path: Path,
    tiny_model_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    status: int,
    needle: str,
) -> None:
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    names = {
        "bad": str(bad),
        "missing": str(tmp_path / "nope.mid"),
        "ode": str(ODE),
        "out": str(tmp_path / "out"),
    }
    argv = [a.format(**names) for a in args]
    assert _continue(*argv, model=tiny_model_path) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out.mid").exists()


def test_missing_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "continue",
            str(ODE),
            "-o",
            str(tmp_path / "o.mid"),
            "--model",
            str(tmp_path / "none.onnx"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "none.onnx" in err


def test_model_dir_finds_a_model_by_name(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "solo.onnx").write_bytes(tiny_model_path.read_bytes())
    args = ["continue", str(ODE), "-o", str(tmp_path / "o.mid"), "--model", "solo", "--length", "4"]
    assert main(args) == 1  # not among the shipped models
    assert "'solo' not found" in capsys.readouterr().err
    assert main([*args, "--model-dir", str(mine)]) == 0, capsys.readouterr().err
    assert (tmp_path / "o.mid").exists()


def test_console_script_end_to_end(
    tmp_path: Path, tiny_model_path: Path, antiphon: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    out = tmp_path / "cli.mid"
    done = antiphon(
        "continue",
        str(ODE),
        str(BLUES),
        "-o",
        str(out),
        "--model",
        str(tiny_model_path),
        "--length",
        "2",
        "--unit",
        "bars",
        "--seed",
        "9",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}: 2 input file(s), 47 notes + ")
    assert out.exists()
    bad = antiphon("continue", str(tmp_path / "missing.mid"), "-o", str(out))
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no such file" in bad.stderr
