"""Answers to audio calls: are folk calls heard through the audio path answered as well as the
same calls played as MIDI?

The first held-out folk calls of the quality section (:mod:`benchmarks.quality`: the melody
model's split, every 10th piece; 4-bar calls, the composer's next 8 bars as the real
continuation) are rendered through FluidSynth (at ``--bpm``, notes 95 % of their length) on a
flute and on voice "oohs", transcribed offline (:func:`bridge.audio_transcribe.transcribe`),
put on the grid at the known tempo and moved back by the render's octave shift, then answered
exactly as the quality section's automatic choice answers (:class:`bridge.follow.Follower`,
T = 1, top-p 0.95, the default key lock), each with several seeds; the MIDI calls are answered
with a second set of seeds too, to show how far sampling alone moves the figures.  Each answer
is measured against the *played* call and the real continuation with
:func:`benchmarks.quality.aggregate`.

``python -m benchmarks.transcription_answers [--cases N] [--out FILE]`` prints (and writes) the
Markdown.  Needs fluidsynth, fluid-soundfont-gm, the ``audio`` extra, music21's corpus and the
shipped models.  Main thread only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality import BEATS_PER_BAR, CORPORA, STEPS_PER_BEAT, Case, aggregate
from benchmarks.transcription import REPO, Call, octave_shift, render
from bridge.midifile import TimedNote

__all__ = ["answer_rows", "call_to_audio_notes", "folk_cases", "main"]

INSTRUMENTS = ("flute", "voice oohs")
CALL_BARS = 4
ANSWER_BARS = 8


def folk_cases(count: int) -> tuple[list[Case], Any]:
    """The first ``count`` held-out folk cases and the melody model's token scheme."""
    from bridge.model import load_model
    from training.corpus import composer_files, load_corpus
    from training.dataset import split_pieces

    style = next(s for s in CORPORA if s.name == "folk")
    melody = load_model(REPO / "models" / "melody.onnx")
    paths = sorted(p for c in style.composers for p in composer_files(c))
    corpus = load_corpus(paths, melody.scheme, progress=False, warn=lambda _line: None)
    held = split_pieces(corpus.pieces, style.every).held_out
    from benchmarks.quality import cases_from_pieces

    call_steps = CALL_BARS * BEATS_PER_BAR * STEPS_PER_BEAT
    answer_steps = ANSWER_BARS * BEATS_PER_BAR * STEPS_PER_BEAT
    return cases_from_pieces(held, call_steps, answer_steps, limit=count), melody.scheme


def call_to_audio_notes(
    case: Case, instrument: str, bpm: float, scheme: Any, workdir: Path
) -> tuple[list[Any], float]:
    """Render ``case.call`` on ``instrument``, transcribe it, and quantize it back to grid
    notes; also the share of call notes recovered (same step, same pitch)."""
    from bridge.audio_transcribe import to_timed_notes, transcribe

    timed = tuple(
        TimedNote(
            n.onset / STEPS_PER_BEAT,
            n.pitch,
            max(0.05, 0.95 * n.duration / STEPS_PER_BEAT),
            int(np.clip(n.velocity, 40, 110)),
        )
        for n in case.call
    )
    call = Call(case.name, timed, bpm)
    rendered = render(call, instrument, "clean", workdir, rng=np.random.default_rng(0))
    shift = octave_shift(call, _centre(instrument))
    notes = transcribe(rendered.samples, rendered.rate)
    beats = to_timed_notes(notes, bpm, steps_per_beat=STEPS_PER_BEAT, origin=0.0)
    heard = scheme.quantize(
        [(t.onset, t.pitch - shift, t.duration, t.velocity) for t in beats], origin=0.0
    )
    played = {(n.onset, n.pitch) for n in case.call}
    recovered = len(played & {(n.onset, n.pitch) for n in heard}) / max(1, len(played))
    return heard, recovered


def _centre(instrument: str) -> int:
    from benchmarks.transcription import INSTRUMENTS as ALL

    return ALL[instrument][1]


def answer_rows(
    cases: Sequence[Case], scheme: Any, bpm: float, seed: int = 1234, seeds: int = 4
) -> str:
    """The Markdown table: real continuation, answers to MIDI calls (with two sets of ``seeds``
    seeds: how far sampling alone moves the figures), answers to the audio calls."""
    from benchmarks.answerers import TOP_P
    from bridge.config import Settings
    from bridge.follow import Follower
    from bridge.generate import continue_notes

    follower = Follower.from_dirs([REPO / "models"])  # every shipped model, as the bridge
    lock = Settings().key_lock
    beats = ANSWER_BARS * BEATS_PER_BAR

    def answer(call: Sequence[Any], i: int) -> list[Any]:
        plan = follower.plan(list(call), None, "auto", lock)
        return continue_notes(
            plan.model,
            list(call),
            length=ANSWER_BARS,
            length_unit="bars",
            temperature=1.0,
            top_p=TOP_P,
            seed=seed + i,
            beats_per_bar=BEATS_PER_BAR,
            bias=plan.bias,
        )

    def answers(calls: Sequence[Sequence[Any]], first_seed: int) -> dict[str, float]:
        """Every call answered with ``seeds`` seeds, measured as the quality section does."""
        many = [c for _ in range(seeds) for c in cases]
        said = [
            answer(call, first_seed + 1000 * k + i) if call else []
            for k in range(seeds)
            for i, call in enumerate(calls)
        ]
        return aggregate(many, said, beats)

    rows: list[tuple[str, dict[str, float], str]] = []
    real = aggregate(cases, [c.continuation for c in cases], beats)
    rows.append(("real continuation", real, "–"))
    played = [c.call for c in cases]
    rows.append(("answer to the MIDI call", answers(played, seed), "–"))
    rows.append(("answer to the MIDI call, other seeds", answers(played, seed + 500), "–"))
    with tempfile.TemporaryDirectory(prefix="antiphon-audio-answers-") as tmp:
        for instrument in INSTRUMENTS:
            heard: list[list[Any]] = []
            recovered: list[float] = []
            for case in cases:
                notes, share = call_to_audio_notes(case, instrument, bpm, scheme, Path(tmp))
                heard.append(notes)
                recovered.append(share)
            stats = answers(heard, seed)
            rows.append(
                (f"answer to the {instrument} audio call", stats, f"{np.mean(recovered):.0%}")
            )
            print(f"answers: {instrument} done", file=sys.stderr, flush=True)
    lines = [
        "| call | call notes recovered | in call's key | mean pitch | median Δ pitch vs real "
        "| density vs real | PC overlap | degenerate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s, recovered_text in rows:
        lines.append(
            f"| {name} | {recovered_text} | {s['in_key']:.0%} | {s['mean_pitch']:.1f} | "
            f"{s['pitch_gap']:.1f} | {s['density_ratio']:.0%} | {s['pc_overlap']:.2f} | "
            f"{s['degenerate']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.transcription_answers",
        description="Answer held-out folk calls heard through the audio path and compare the "
        "answers with those to the same calls as MIDI (quality-section metrics).",
    )
    parser.add_argument("--cases", type=int, default=12, help="folk calls (default %(default)s)")
    parser.add_argument("--bpm", type=float, default=100.0, help="render tempo (default 100)")
    parser.add_argument(
        "--seeds", type=int, default=4, help="answers per call (default %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    cases, scheme = folk_cases(args.cases)
    if not cases:
        print("transcription_answers: no held-out folk cases", file=sys.stderr)
        return 2
    text = (
        f"{len(cases)} held-out folk calls ({CALL_BARS} bars; real continuation {ANSWER_BARS} "
        f"bars), rendered at {args.bpm:g} BPM, {args.seeds} answers per call (T = 1).\n\n"
        + answer_rows(cases, scheme, args.bpm, seeds=args.seeds)
    )
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
