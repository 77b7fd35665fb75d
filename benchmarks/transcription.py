"""Audio calls: how well ``bridge.audio_transcribe`` (and the live tracker) hear known notes.

Calls whose notes we know — the monophonic tracks of ``examples/phrases/*.mid`` and the soprano
lines of held-out Bach chorales (every 10th by sorted path, as the quality section) — are
rendered through FluidSynth (FluidR3 GM, 48 kHz, its default reverb and chorus) with five
General MIDI instruments, each call moved by octaves into the instrument's range.  Three
variants: clean; white noise at 20 dB SNR; and detuned by +20 cents with a ±35 cent, 5.5 Hz
vibrato (pitch bend every 10 ms).  Each render is transcribed offline (pYIN) and by the live
tracker (streaming YIN, fed 256-sample blocks, the render scaled to a -3 dBFS peak), and scored with
``mir_eval.transcription`` (onset tolerance 50 ms; F with offsets: offset within 20 % of the
note or 50 ms).  Targets (issue 14): F ≥ 0.9 clean, ≥ 0.8 with noise or vibrato.

``python -m benchmarks.transcription [--quick] [--out FILE]`` writes a RESULTS-style Markdown
table (default ``benchmarks/TRANSCRIPTION.md``); ``python -m benchmarks`` runs a smaller set as
its section 7 (:func:`run`; ``--quick``: one call, one instrument, clean).  Needs fluidsynth,
fluid-soundfont-gm and the ``audio`` extra.  Main thread only.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Any

import mido
import numpy as np

from benchmarks.options import Options
from benchmarks.report import Section, Table
from bridge.audio_transcribe import AudioNote
from bridge.midifile import TimedNote, read_midi

__all__ = [
    "HARNESS_CALLS",
    "INSTRUMENTS",
    "VARIANTS",
    "Call",
    "Render",
    "chorale_calls",
    "example_calls",
    "measure",
    "render",
    "run",
    "score",
]

REPO = Path(__file__).resolve().parent.parent
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
RATE = 48000
INSTRUMENTS: dict[str, tuple[int, int]] = {
    # name: (General MIDI program, pitch the call's mean is moved near, by octaves)
    "flute": (73, 79),
    "voice oohs": (53, 62),
    "violin": (40, 72),
    "clean guitar": (27, 60),
    "piano": (0, 66),
}
VARIANTS = ("clean", "noise", "vibrato")
SNR_DB = 20.0
DETUNE_CENTS = 20.0
VIBRATO_CENTS = 35.0
VIBRATO_HZ = 5.5
ONSET_TOLERANCE = 0.05
TARGETS = {"clean": 0.9, "noise": 0.8, "vibrato": 0.8}


@dataclass(frozen=True)
class Call:
    """A monophonic call we know the notes of (beats) and its tempo."""

    name: str
    notes: tuple[TimedNote, ...]
    bpm: float

    def seconds(self, transpose: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """mir_eval reference: intervals (s) and pitches (Hz), moved by ``transpose``."""
        beat = 60.0 / self.bpm
        intervals = np.array([[n.onset * beat, n.end * beat] for n in self.notes])
        pitches = np.array([_hz(n.pitch + transpose) for n in self.notes])
        return intervals, pitches


@dataclass(frozen=True)
class Render:
    """One call rendered: mono samples at ``rate`` and its reference notes."""

    samples: np.ndarray
    rate: int
    intervals: np.ndarray
    pitches: np.ndarray


def example_calls(folder: Path = REPO / "examples" / "phrases") -> list[Call]:
    """Every channel of the example phrases in which no two notes overlap."""
    calls = []
    for path in sorted(folder.glob("*.mid")):
        song = read_midi(path)
        by_channel: dict[int, list[TimedNote]] = defaultdict(list)
        for n in song.notes:
            by_channel[n.channel].append(n)
        for channel, notes in sorted(by_channel.items()):
            notes.sort()
            if all(a.end <= b.onset + 1e-9 for a, b in itertools.pairwise(notes)):
                calls.append(Call(f"{path.stem}/{channel + 1}", tuple(notes), song.bpm))
    return calls


def chorale_calls(count: int, beats: float = 16.0, bpm: float = 84.0) -> list[Call]:
    """Soprano lines (first ``beats``) of the first ``count`` held-out chorales."""
    import music21

    from training.corpus import composer_files

    held = [p for i, p in enumerate(composer_files("bach")) if i % 10 == 9][:count]
    calls = []
    for path in held:
        parsed: Any = music21.converter.parse(str(path))
        soprano = parsed.parts[0].stripTies()
        notes = []
        for n in soprano.flatten().notes:
            onset = float(n.offset)
            if onset >= beats:
                break
            if isinstance(n, music21.note.Note):
                notes.append(TimedNote(onset, n.pitch.midi, float(n.quarterLength) * 0.95, 84))
        if len(notes) >= 4:
            calls.append(Call(f"chorale {path.stem}", tuple(notes), bpm))
    return calls


def octave_shift(call: Call, centre: int) -> int:
    """Octaves (in semitones) that bring the call's mean pitch nearest ``centre``."""
    mean = float(np.mean([n.pitch for n in call.notes]))
    return 12 * round((centre - mean) / 12)


def write_call_midi(call: Call, path: Path, *, program: int, transpose: int, vibrato: bool) -> None:
    """A type-0 file: program change, the notes, and for ``vibrato`` pitch bends every 10 ms."""
    tpb = 480
    beat_s = 60.0 / call.bpm
    events: list[tuple[int, int, mido.Message]] = [
        (0, 0, mido.Message("program_change", program=program)),
    ]
    for n in call.notes:
        pitch = n.pitch + transpose
        events.append(
            (round(n.onset * tpb), 2, mido.Message("note_on", note=pitch, velocity=n.velocity))
        )
        events.append((round(n.end * tpb), 1, mido.Message("note_off", note=pitch)))
    if vibrato:
        end_s = max(n.end for n in call.notes) * beat_s + 0.5
        for t in np.arange(0.0, end_s, 0.01):
            cents = DETUNE_CENTS + VIBRATO_CENTS * np.sin(2 * np.pi * VIBRATO_HZ * t)
            bend = int(np.clip(round(cents / 200.0 * 8192), -8192, 8191))
            events.append((round(t / beat_s * tpb), 0, mido.Message("pitchwheel", pitch=bend)))
    events.sort(key=lambda e: (e[0], e[1]))
    midi = mido.MidiFile(type=0, ticks_per_beat=tpb)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(call.bpm), time=0))
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    midi.tracks.append(track)
    midi.save(path)


def render(
    call: Call, instrument: str, variant: str, workdir: Path, *, rng: np.random.Generator
) -> Render:
    """Render ``call`` on ``instrument`` in ``variant`` through FluidSynth."""
    import soundfile

    program, centre = INSTRUMENTS[instrument]
    transpose = octave_shift(call, centre)
    mid = workdir / "call.mid"
    wav = workdir / "call.wav"
    write_call_midi(call, mid, program=program, transpose=transpose, vibrato=variant == "vibrato")
    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-F", str(wav), "-r", str(RATE), str(SOUNDFONT), str(mid)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data, rate = soundfile.read(str(wav), dtype="float32", always_2d=True)
    samples = data.mean(axis=1)
    intervals, pitches = call.seconds(transpose)
    if variant == "noise":
        samples = add_noise(samples, rate, intervals, SNR_DB, rng)
    return Render(samples.astype(np.float32), rate, intervals, pitches)


def add_noise(
    samples: np.ndarray, rate: int, intervals: np.ndarray, snr_db: float, rng: np.random.Generator
) -> np.ndarray:
    """White noise ``snr_db`` below the signal's RMS while notes sound."""
    mask = np.zeros(len(samples), dtype=bool)
    for start, end in intervals:
        mask[int(start * rate) : int(end * rate)] = True
    power = float(np.mean(samples[mask] ** 2)) if mask.any() else float(np.mean(samples**2))
    noise = rng.standard_normal(len(samples)) * np.sqrt(power / 10 ** (snr_db / 10))
    return samples + noise.astype(np.float32)


def score(
    ref_intervals: np.ndarray, ref_pitches: np.ndarray, notes: Sequence[AudioNote]
) -> dict[str, float]:
    """mir_eval note precision/recall/F, without and with offsets."""
    import mir_eval

    if notes:
        est_intervals = np.array([[n.onset, max(n.offset, n.onset + 1e-3)] for n in notes])
        est_pitches = np.array([_hz(n.pitch) for n in notes])
    else:
        est_intervals, est_pitches = np.zeros((0, 2)), np.zeros(0)
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_intervals,
        ref_pitches,
        est_intervals,
        est_pitches,
        onset_tolerance=ONSET_TOLERANCE,
        offset_ratio=None,
    )
    _, _, f_off, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_intervals,
        ref_pitches,
        est_intervals,
        est_pitches,
        onset_tolerance=ONSET_TOLERANCE,
        offset_ratio=0.2,
        offset_min_tolerance=0.05,
    )
    return {"P": p, "R": r, "F": f, "F_offsets": f_off}


LIVE_PEAK_DB = -3.0
"""The live tracker hears each render scaled to this peak (an input gain set for the singer);
the offline transcriber scales every file itself."""


def latencies(
    ref_intervals: np.ndarray,
    ref_pitches: np.ndarray,
    notes: Sequence[AudioNote],
    emitted: Sequence[tuple[float, float]],
) -> list[float]:
    """Per reference note heard (same pitch, onset within 50 ms): seconds from its true onset
    to the end of the audio block that sent its note-on."""
    out = []
    for (onset, _end), hz in zip(ref_intervals, ref_pitches, strict=True):
        pitch = round(69 + 12 * np.log2(hz / 440.0))
        hits = [
            sent
            for n, (_on, sent) in zip(notes, emitted, strict=True)
            if n.pitch == pitch and abs(n.onset - onset) <= ONSET_TOLERANCE
        ]
        if hits:
            out.append(min(hits) - float(onset))
    return out


def measure(
    calls: Sequence[Call],
    *,
    instruments: Sequence[str] = tuple(INSTRUMENTS),
    variants: Sequence[str] = VARIANTS,
    live: bool = True,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Render, transcribe and score every (transcriber, variant, instrument, call)."""
    from bridge.audio_live import track_stream
    from bridge.audio_transcribe import transcribe

    rng = np.random.default_rng(1234)
    rows: dict[tuple[str, str, str], list[dict[str, float]]] = defaultdict(list)
    per_call: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    cost: dict[str, list[float]] = defaultdict(list)
    delays: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    with tempfile.TemporaryDirectory(prefix="antiphon-transcription-") as tmp:
        for variant in variants:
            for instrument in instruments:
                for call in calls:
                    rendered = render(call, instrument, variant, Path(tmp), rng=rng)
                    seconds = len(rendered.samples) / rendered.rate
                    found: dict[str, list[AudioNote]] = {}
                    start = time.perf_counter()
                    found["offline (pYIN)"] = transcribe(rendered.samples, rendered.rate)
                    cost["offline (pYIN)"].append((time.perf_counter() - start) / seconds)
                    if live:
                        peak = float(np.max(np.abs(rendered.samples))) or 1.0
                        scaled = rendered.samples * (10 ** (LIVE_PEAK_DB / 20) / peak)
                        start = time.perf_counter()
                        notes, emitted = track_stream(scaled, rendered.rate, counts=counts[variant])
                        cost["live tracker"].append((time.perf_counter() - start) / seconds)
                        found["live tracker"] = notes
                        delays[variant].extend(
                            latencies(rendered.intervals, rendered.pitches, notes, emitted)
                        )
                    for method, notes in found.items():
                        result = score(rendered.intervals, rendered.pitches, notes)
                        rows[(method, variant, instrument)].append(result)
                        per_call[(method, variant, call.name)].append(result["F"])
                progress(f"{variant} {instrument}: done")
    return {
        "rows": rows,
        "per_call": per_call,
        "cost": cost,
        "delays": delays,
        "counts": counts,
    }


def markdown(results: dict[str, Any], calls: Sequence[Call]) -> str:
    """The benchmark's Markdown: method, the table by variant and instrument, the verdicts."""
    rows: dict[tuple[str, str, str], list[dict[str, float]]] = results["rows"]
    per_call: dict[tuple[str, str, str], list[float]] = results["per_call"]
    cost: dict[str, list[float]] = results["cost"]
    notes = sum(len(c.notes) for c in calls)
    lines = [
        "# Audio calls: transcription accuracy",
        "",
        __doc__.split("\n\n")[1].replace("\n", " ").strip(),
        "",
        f"{len(calls)} calls, {notes} notes in all: {', '.join(c.name for c in calls)}.",
        "",
        "| transcriber | variant | instrument | F (onsets) | F (onsets + offsets) | P | R |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (method, variant, instrument), results_ in rows.items():
        means = {k: float(np.mean([r[k] for r in results_])) for k in results_[0]}
        verdicts[(method, variant)].extend(r["F"] for r in results_)
        lines.append(
            f"| {method} | {variant} | {instrument} | {means['F']:.3f} | "
            f"{means['F_offsets']:.3f} | {means['P']:.3f} | {means['R']:.3f} |"
        )
    lines += [
        "",
        "| transcriber | variant | mean F | target | met | worst call (F) |",
        "|---|---|---|---|---|---|",
    ]
    for (method, variant), scores in verdicts.items():
        target = TARGETS[variant]
        mean = float(np.mean(scores))
        calls_f = {
            name: float(np.mean(v))
            for (m, var, name), v in per_call.items()
            if m == method and var == variant
        }
        worst = min(calls_f, key=lambda k: calls_f[k])
        lines.append(
            f"| {method} | {variant} | {mean:.3f} | ≥ {target} | "
            f"{'yes' if mean >= target else 'no'} | {worst} ({calls_f[worst]:.2f}) |"
        )
    lines += ["", "| transcriber | seconds of compute per second of audio (mean) |", "|---|---|"]
    for method, values in cost.items():
        lines.append(f"| {method} | {float(np.mean(values)):.3f} |")
    delays: dict[str, list[float]] = results["delays"]
    if delays:
        lines += [
            "",
            "Live tracker latency: true onset → end of the 256-sample block whose "
            "processing emits the note-on (the tracker's own delay, without JACK's "
            "period; notes heard right only).  Retracted: note-ons the tracker sent and then "
            "ended at their own onset when its pitch decision changed (a stream cannot unsend "
            "them: the phrase capture gets a zero-length wrong note).",
            "",
            "| variant | notes | p50 ms | p90 ms | p99 ms | target p99 | note-ons | retracted |",
            "|---|---|---|---|---|---|---|---|",
        ]
        counts: dict[str, dict[str, int]] = results.get("counts", {})
        for variant, values in delays.items():
            ms = 1000 * np.array(values)
            sent = counts.get(variant, {}).get("note_ons", 0)
            retracted = counts.get(variant, {}).get("retracted", 0)
            share = f" ({100 * retracted / sent:.1f} %)" if sent else ""
            lines.append(
                f"| {variant} | {len(ms)} | {np.percentile(ms, 50):.0f} | "
                f"{np.percentile(ms, 90):.0f} | {np.percentile(ms, 99):.0f} | ≤ 60 | "
                f"{sent} | {retracted}{share} |"
            )
    return "\n".join(lines) + "\n"


def through_jack(
    calls: Sequence[Call],
    instruments: Sequence[str],
    server: str,
    progress: Callable[[str], None] = lambda _line: None,
) -> str:
    """Play renders into "Antiphon Audio In" on the running JACK ``server`` in real time; the
    Markdown of the added latency (true onset → note-on in the engine's queue) and CPU share.

    A player client writes the render into the port period by period; the true onset of a note
    is the player's first period (monotonic clock) plus the note's time in the render.  Notes
    count when heard at the right pitch within 80 ms of the true onset.
    """
    import os

    import jack

    from bridge.audio_live import AudioInput

    os.environ["JACK_DEFAULT_SERVER"] = server
    os.environ["JACK_NO_START_SERVER"] = "1"
    delays: list[float] = []
    shares: list[float] = []
    period = 0
    missed = 0
    with tempfile.TemporaryDirectory(prefix="antiphon-transcription-") as tmp:
        for instrument in instruments:
            for call in calls:
                rendered = render(
                    call, instrument, "clean", Path(tmp), rng=np.random.default_rng(0)
                )
                peak = float(np.max(np.abs(rendered.samples))) or 1.0
                samples = rendered.samples * (10 ** (LIVE_PEAK_DB / 20) / peak)
                queue: Queue[Any] = Queue()
                audio = AudioInput(queue, client_name="antiphon-bench-audio")
                audio.start()
                player = jack.Client("antiphon-bench-player", no_start_server=True)
                out = player.outports.register("out")
                state: dict[str, Any] = {"pos": 0, "t0": None}
                done = threading.Event()

                def process(
                    frames: int,
                    out: Any = out,
                    state: dict[str, Any] = state,
                    samples: np.ndarray = samples,
                    done: Any = done,
                ) -> None:
                    buf = out.get_array()
                    buf.fill(0.0)
                    pos = state["pos"]
                    if pos >= len(samples):
                        done.set()
                        return
                    if state["t0"] is None:
                        state["t0"] = time.monotonic()
                    chunk = samples[pos : pos + frames]
                    buf[: len(chunk)] = chunk
                    state["pos"] = pos + frames

                player.set_process_callback(process)
                player.activate()
                period = player.blocksize
                player.connect(out, audio.port_name)
                done.wait(len(samples) / rendered.rate + 30)
                time.sleep(0.3)
                player.deactivate()
                player.close()
                audio.stop()
                shares.append(audio.cpu_share())
                t0: float = state["t0"]
                heard = list(audio.heard)
                for (onset, _end), hz in zip(rendered.intervals, rendered.pitches, strict=True):
                    pitch = round(69 + 12 * np.log2(hz / 440.0))
                    true = t0 + float(onset)
                    hits = [
                        h.queued - true
                        for h in heard
                        if h.pitch == pitch and abs(h.onset - true) <= 0.08
                    ]
                    if hits:
                        delays.append(min(hits))
                    else:
                        missed += 1
            progress(f"through JACK, {instrument}: done")
    ms = 1000 * np.array(delays)
    return "\n".join(
        [
            "",
            f"## Live through JACK (server {server!r}, period {period} frames)",
            "",
            'Renders played in real time into "Antiphon Audio In" by a JACK client; latency = '
            "the note-on entering the engine's queue minus the true onset (player's first period + "
            "the note's time).  CPU = the tracker thread's CPU time plus the process callback's, "
            "over the wall time.",
            "",
            "| notes heard | missed | p50 ms | p90 ms | p99 ms | target p99 | CPU (mean) |",
            "|---|---|---|---|---|---|---|",
            f"| {len(ms)} | {missed} | {np.percentile(ms, 50):.0f} | "
            f"{np.percentile(ms, 90):.0f} | {np.percentile(ms, 99):.0f} | ≤ 60 | "
            f"{100 * float(np.mean(shares)):.1f} % of a core |",
            "",
        ]
    )


HARNESS_CALLS = ("ode_to_joy/1", "blues_riff/1", "bach_chorale/1")
"""The example calls section 7 of ``python -m benchmarks`` renders (quick: the first)."""


def run(options: Options, context: dict[str, object]) -> Section:
    """Section 7 of ``python -m benchmarks``: :func:`measure` on :data:`HARNESS_CALLS` with
    every instrument and variant (quick: one call, the flute, clean); ``context`` is unused."""
    if shutil.which("fluidsynth") is None or not SOUNDFONT.is_file():
        raise RuntimeError("needs fluidsynth and fluid-soundfont-gm (Debian packages)")
    by_name = {c.name: c for c in example_calls()}
    calls = [by_name[name] for name in HARNESS_CALLS[: 1 if options.quick else None]]
    instruments = ("flute",) if options.quick else tuple(INSTRUMENTS)
    variants = ("clean",) if options.quick else VARIANTS
    results = measure(calls, instruments=instruments, variants=variants)
    section = Section(7, "Audio calls: transcription")
    section.method = (
        f"{len(calls)} example call(s) ({', '.join(c.name for c in calls)}; "
        f"{sum(len(c.notes) for c in calls)} notes) rendered through FluidSynth on "
        f"{', '.join(instruments)}, variants {', '.join(variants)} (noise: 20 dB SNR; vibrato: "
        "+20 cents, ±35 cents at 5.5 Hz), transcribed offline (pYIN) and by the live tracker "
        "(streaming YIN, 256-sample blocks), scored with mir_eval (note F, onsets within 50 ms, "
        "no offsets).  The full table (12 calls, 5 instruments, through JACK too): "
        "`python -m benchmarks.transcription` → benchmarks/TRANSCRIPTION.md."
    )
    rows: dict[tuple[str, str, str], list[dict[str, float]]] = results["rows"]
    by_variant: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (method, variant, _instrument), scores in rows.items():
        by_variant[(method, variant)].extend(r["F"] for r in scores)
    table = Table(["transcriber", "variant", "note F (mean)", "target", "met"])
    for (method, variant), values in by_variant.items():
        mean = float(np.mean(values))
        met = "yes" if mean >= TARGETS[variant] else "no"
        table.rows.append([method, variant, f"{mean:.3f}", f"≥ {TARGETS[variant]}", met])
        section.headline.append(
            (
                f"audio call note F, {variant} ({method})",
                f"{mean:.3f}",
                "–",
                f"target ≥ {TARGETS[variant]}: {met}",
            )
        )
    section.tables.append(table)
    per_instrument = Table(["transcriber", "variant", "instrument", "note F", "F with offsets"])
    for (method, variant, instrument), scores in rows.items():
        per_instrument.rows.append(
            [
                method,
                variant,
                instrument,
                f"{np.mean([r['F'] for r in scores]):.3f}",
                f"{np.mean([r['F_offsets'] for r in scores]):.3f}",
            ]
        )
    section.tables.append(per_instrument)
    delays: dict[str, list[float]] = results["delays"]
    latency = Table(
        ["variant", "notes", "p50 ms", "p99 ms", "target p99"],
        caption="Live tracker latency: true onset → end of the block that sends the note-on.",
    )
    for variant, values in delays.items():
        if values:
            ms = 1000 * np.array(values)
            latency.rows.append(
                [
                    variant,
                    str(len(ms)),
                    f"{np.percentile(ms, 50):.0f}",
                    f"{np.percentile(ms, 99):.0f}",
                    "≤ 60",
                ]
            )
    section.tables.append(latency)
    section.data["mean_f"] = {f"{m} / {v}": float(np.mean(x)) for (m, v), x in by_variant.items()}
    return section


def answers_section(count: int, bpm: float = 100.0, seeds: int = 4) -> str:
    """Markdown: :mod:`benchmarks.transcription_answers` on ``count`` folk calls."""
    from benchmarks.transcription_answers import answer_rows, folk_cases

    cases, scheme = folk_cases(count)
    return (
        "\n## Answers to audio calls\n\n"
        + f"{len(cases)} held-out folk calls of the quality section (4 bars; the real "
        + f"continuation: the next 8), rendered at {bpm:g} BPM on a flute and voice oohs, "
        + "transcribed offline, quantized at the known tempo and answered as the quality "
        + f"section's automatic choice does (T = 1, {seeds} seeds per call); measured against "
        + "the played call and the real continuation (`benchmarks.quality.aggregate`).  "
        + "`python -m benchmarks.transcription_answers`.\n\n"
        + answer_rows(cases, scheme, bpm, seeds=seeds)
    )


def _hz(midi: float) -> float:
    return float(440.0 * 2 ** ((midi - 69) / 12))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.transcription",
        description="Render calls with known notes through FluidSynth and score how well "
        "Antiphon's audio transcription hears them (mir_eval).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="two calls, two instruments (a smoke run; the numbers mean little)",
    )
    parser.add_argument(
        "--chorales",
        type=int,
        default=3,
        help="held-out chorale soprano lines to add (default %(default)s)",
    )
    parser.add_argument("--no-live", action="store_true", help="score only the offline transcriber")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "TRANSCRIPTION.md",
        help="Markdown output (default %(default)s)",
    )
    parser.add_argument(
        "--jack-server",
        default=None,
        metavar="NAME",
        help="also play the example calls in real time into 'Antiphon Audio In' "
        "on this running JACK server (latency, CPU); default: skip",
    )
    parser.add_argument(
        "--jack-only",
        action="store_true",
        help="with --jack-server: only that part, printed, nothing written",
    )
    parser.add_argument(
        "--answers",
        type=int,
        default=0,
        metavar="N",
        help="also answer N held-out folk calls heard as audio (benchmarks.transcription_answers)",
    )
    args = parser.parse_args(argv)
    if args.jack_only:
        if not args.jack_server:
            parser.error("--jack-only needs --jack-server")
        print(
            through_jack(
                example_calls(),
                ("flute", "voice oohs", "clean guitar"),
                args.jack_server,
                progress=lambda line: print(line, file=sys.stderr, flush=True),
            )
        )
        return 0
    if shutil.which("fluidsynth") is None or not SOUNDFONT.is_file():
        print("transcription: needs fluidsynth and fluid-soundfont-gm", file=sys.stderr)
        return 2
    calls = example_calls()
    if args.quick:
        calls = calls[:2]
        instruments: Sequence[str] = ("flute", "voice oohs")
    else:
        calls += chorale_calls(args.chorales)
        instruments = tuple(INSTRUMENTS)
    started = time.perf_counter()
    results = measure(
        calls,
        instruments=instruments,
        live=not args.no_live,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    text = markdown(results, calls)
    if args.jack_server:
        text += through_jack(
            example_calls(), ("flute", "voice oohs", "clean guitar"), args.jack_server
        )
    if args.answers:
        text += answers_section(args.answers)
    text += f"\n_Wall time: {time.perf_counter() - started:.0f} s._\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
