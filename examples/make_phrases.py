"""Write the example call phrases in ``examples/phrases/`` (run once; the .mid files are committed).

Every phrase is public-domain music or was written for Antiphon:

* ``bach_chorale.mid`` — the pickup and first two bars of J. S. Bach's chorale BWV 66.6 in four
  voices (one track per voice), taken from music21's corpus (needs the ``train`` extra).
* ``ode_to_joy.mid`` — the first phrase of Beethoven's "Ode to Joy" (Symphony No. 9) with a
  half-note bass.
* ``blues_riff.mid`` — a two-bar boogie riff in C, dotted-eighth shuffle, written for Antiphon.
* ``canon_chords.mid`` — the chord progression of Pachelbel's Canon in D as block chords.

Usage: ``python examples/make_phrases.py [--out examples/phrases]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bridge.midifile import TimedNote, write_midi

HERE = Path(__file__).resolve().parent

Track = tuple[str, list[TimedNote]]


def bach_chorale() -> list[Track]:
    """BWV 66.6, beats 0-9 (the one-beat pickup and two 4/4 bars), soprano..bass."""
    try:
        from music21 import corpus
    except ImportError:
        sys.exit("make_phrases: the Bach chorale needs music21 (pip install -e '.[train]')")
    score = corpus.parse("bach/bwv66.6")
    tracks: list[Track] = []
    for channel, part in enumerate(score.parts):
        notes = []
        for n in part.flatten().notes:
            onset = float(n.offset)
            if onset >= 9.0:
                break
            for pitch in n.pitches:
                notes.append(
                    TimedNote(onset, pitch.midi, float(n.quarterLength) * 0.95, 72, channel)
                )
        tracks.append((str(part.partName), notes))
    return tracks


def melody(
    steps: Sequence[tuple[int, float]],
    *,
    start: float = 0.0,
    velocity: int = 84,
    channel: int = 0,
    legato: float = 0.9,
) -> list[TimedNote]:
    """``(pitch, beats)`` pairs laid end to end; pitch 0 is a rest."""
    notes: list[TimedNote] = []
    t = start
    for pitch, beats in steps:
        if pitch:
            notes.append(TimedNote(t, pitch, beats * legato, velocity, channel))
        t += beats
    return notes


def ode_to_joy() -> list[Track]:
    e4, f4, g4, d4, c4 = 64, 65, 67, 62, 60
    tune = [
        (e4, 1),
        (e4, 1),
        (f4, 1),
        (g4, 1),
        (g4, 1),
        (f4, 1),
        (e4, 1),
        (d4, 1),
        (c4, 1),
        (c4, 1),
        (d4, 1),
        (e4, 1),
        (e4, 1.5),
        (d4, 0.5),
        (d4, 2),
    ]
    c3, g2, f2 = 48, 43, 41
    bass = [(c3, 2), (c3, 2), (g2, 2), (g2, 2), (f2, 2), (c3, 2), (g2, 2), (g2, 2)]
    return [("melody", melody(tune)), ("bass", melody(bass, velocity=64, channel=1))]


def blues_riff() -> list[Track]:
    """Dotted (shuffled) eighths on the sixteenth grid, C7 then F7 boogie pattern."""
    long, short = 0.75, 0.25
    c_riff = [
        (36, long),
        (43, short),
        (36, long),
        (45, short),
        (36, long),
        (46, short),
        (36, long),
        (45, short),
    ]
    f_riff = [(p + 5, d) for p, d in c_riff]
    top = [
        (0, 1.0),
        (70, 0.5),
        (72, 0.5),
        (75, 1.0),
        (72, 1.0),
        (0, 0.5),
        (75, 0.5),
        (77, 0.5),
        (75, 0.5),
        (72, 2.0),
    ]
    return [
        ("riff", melody(c_riff + f_riff, velocity=90)),
        ("lick", melody(top, velocity=96, channel=1, legato=0.8)),
    ]


def canon_chords() -> list[Track]:
    """D A Bm F#m G D G A, two beats each, root in the bass."""
    chords = [
        (50, (62, 66, 69)),
        (45, (61, 64, 69)),
        (47, (62, 66, 71)),
        (42, (61, 66, 69)),
        (43, (62, 67, 71)),
        (38, (62, 66, 69)),
        (43, (62, 67, 71)),
        (45, (61, 64, 69)),
    ]
    upper: list[TimedNote] = []
    bass: list[TimedNote] = []
    for i, (root, triad) in enumerate(chords):
        bass.append(TimedNote(2.0 * i, root, 1.9, 70, 1))
        upper.extend(TimedNote(2.0 * i, p, 1.9, 64, 0) for p in triad)
    return [("chords", upper), ("bass", bass)]


PHRASES = {
    "bach_chorale": (bach_chorale, 84.0),
    "ode_to_joy": (ode_to_joy, 120.0),
    "blues_riff": (blues_riff, 100.0),
    "canon_chords": (canon_chords, 72.0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "phrases",
        help="folder for the .mid files (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (make, bpm) in PHRASES.items():
        path = args.out / f"{name}.mid"
        write_midi(path, make(), bpm=bpm)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
