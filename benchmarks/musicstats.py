"""Model-agnostic statistics of note lists, in the manner of Yang & Lerch (2018).

"On the evaluation of generative models in music" compares generated and real music through
the distributions of simple features rather than through listening tests or model likelihoods.
Here the features are computed on :class:`bridge.tokens.Note` lists (grid steps), so the
shipped model, the reference-method model and the Markov baseline are measured by one ruler.
Pure numpy; the main thread of ``benchmarks.quality`` calls it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from bridge.tokens import Note

__all__ = [
    "KEY_NAMES",
    "duration_values",
    "estimate_key",
    "histogram_overlap",
    "interval_ngrams",
    "ioi_values",
    "is_degenerate",
    "key_consistency",
    "mean_pitch",
    "motif_echo",
    "notes_per_onset",
    "onsets_per_beat",
    "pitch_class_distance",
    "pitch_class_histogram",
    "pitch_range",
    "polyphony",
    "single_onset_share",
    "top_line",
]

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor plus the leading tone (harmonic)
_PC_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
KEY_NAMES = tuple(f"{n} major" for n in _PC_NAMES) + tuple(f"{n} minor" for n in _PC_NAMES)
"""Key index → name: 0..11 major keys on C..B, 12..23 minor keys."""


def pitch_class_histogram(notes: Iterable[Note], *, weighted: bool = False) -> np.ndarray:
    """Normalised 12-bin pitch-class histogram (by count, or by duration when ``weighted``)."""
    hist = np.zeros(12)
    for n in notes:
        hist[n.pitch % 12] += n.duration if weighted else 1.0
    total = hist.sum()
    return hist / total if total > 0 else hist


def pitch_class_distance(a: Iterable[Note], b: Iterable[Note]) -> float:
    """Total-variation distance (0 same, 1 disjoint) of two pitch-class histograms; NaN if empty."""
    ha, hb = pitch_class_histogram(a), pitch_class_histogram(b)
    if ha.sum() == 0 or hb.sum() == 0:
        return float("nan")
    return float(0.5 * np.abs(ha - hb).sum())


def estimate_key(notes: Iterable[Note]) -> int | None:
    """Krumhansl–Schmuckler key finding on the duration-weighted histogram; ``None`` if empty."""
    hist = pitch_class_histogram(notes, weighted=True)
    if hist.sum() == 0 or np.allclose(hist, hist[0]):
        return None
    scores = []
    for profile in (_MAJOR_PROFILE, _MINOR_PROFILE):
        for tonic in range(12):
            scores.append(float(np.corrcoef(hist, np.roll(profile, tonic))[0, 1]))
    return int(np.argmax(scores))


def key_consistency(notes: Sequence[Note], key: int | None) -> float:
    """Share of ``notes`` whose pitch class lies in ``key``'s scale; NaN without notes or key."""
    if key is None or not notes:
        return float("nan")
    tonic, minor = key % 12, key >= 12
    scale = {(tonic + step) % 12 for step in (_MINOR_SCALE if minor else _MAJOR_SCALE)}
    return float(np.mean([n.pitch % 12 in scale for n in notes]))


def duration_values(notes: Iterable[Note]) -> list[int]:
    """Note durations in grid steps."""
    return [n.duration for n in notes]


def ioi_values(notes: Iterable[Note]) -> list[int]:
    """Inter-onset intervals in grid steps between successive distinct onsets."""
    onsets = sorted({n.onset for n in notes})
    return [b - a for a, b in itertools.pairwise(onsets)]


def histogram_overlap(a: Sequence[int], b: Sequence[int], *, bins: int = 33) -> float:
    """Overlapping area (Σ min) of two normalised integer histograms on ``0..bins-1`` (larger
    values share the last bin); 1 = identical distributions, 0 = disjoint; NaN if either empty."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    ha = np.bincount(np.clip(np.asarray(a, dtype=int), 0, bins - 1), minlength=bins) / len(a)
    hb = np.bincount(np.clip(np.asarray(b, dtype=int), 0, bins - 1), minlength=bins) / len(b)
    return float(np.minimum(ha, hb).sum())


def polyphony(notes: Iterable[Note]) -> float:
    """Mean number of notes sounding per occupied grid step (1 = monophonic); NaN if empty."""
    sounding: Counter[int] = Counter()
    for n in notes:
        for step in range(n.onset, n.onset + n.duration):
            sounding[step] += 1
    return float(np.mean(list(sounding.values()))) if sounding else float("nan")


def pitch_range(notes: Sequence[Note]) -> float:
    """Highest minus lowest pitch in semitones; NaN if empty."""
    if not notes:
        return float("nan")
    pitches = [n.pitch for n in notes]
    return float(max(pitches) - min(pitches))


def is_degenerate(notes: Sequence[Note], *, share: float = 0.5, min_events: int = 4) -> bool:
    """True when one onset group (same pitches, same duration) makes up more than ``share`` of the
    answer's onsets, or the answer has fewer than ``min_events`` onsets: the "predicts the same
    note over and over" failure of the reference method (and an answer that dies out)."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for n in notes:
        groups.setdefault(n.onset, []).append((n.pitch, n.duration))
    if len(groups) < min_events:
        return True
    counts = Counter(tuple(sorted(g)) for g in groups.values())
    return counts.most_common(1)[0][1] > share * len(groups)


def notes_per_onset(notes: Iterable[Note]) -> float:
    """Texture: notes per distinct onset (1 = a single line); NaN if empty."""
    onsets: Counter[int] = Counter(n.onset for n in notes)
    return sum(onsets.values()) / len(onsets) if onsets else float("nan")


def single_onset_share(notes: Iterable[Note]) -> float:
    """Share of distinct onsets that sound exactly one note; NaN if empty."""
    onsets: Counter[int] = Counter(n.onset for n in notes)
    return sum(1 for c in onsets.values() if c == 1) / len(onsets) if onsets else float("nan")


def mean_pitch(notes: Sequence[Note]) -> float:
    """Register: the mean MIDI pitch of the notes; NaN if empty."""
    return float(np.mean([n.pitch for n in notes])) if notes else float("nan")


def onsets_per_beat(notes: Iterable[Note], beats: float, steps_per_beat: int = 4) -> float:
    """Rhythmic density: distinct onsets inside the first ``beats`` beats, per beat."""
    limit = beats * steps_per_beat
    return len({n.onset for n in notes if n.onset < limit}) / beats


def top_line(notes: Iterable[Note]) -> list[int]:
    """The highest pitch of each onset, in time order (the melody of a chordal texture)."""
    tops: dict[int, int] = {}
    for n in notes:
        tops[n.onset] = max(tops.get(n.onset, -1), n.pitch)
    return [tops[t] for t in sorted(tops)]


def interval_ngrams(notes: Iterable[Note], n: int = 3) -> set[tuple[int, ...]]:
    """The ``n``-grams of successive melodic intervals (semitones) of the top line."""
    line = top_line(notes)
    steps = [b - a for a, b in itertools.pairwise(line)]
    return {tuple(steps[i : i + n]) for i in range(len(steps) - n + 1)}


def motif_echo(call: Iterable[Note], answer: Iterable[Note], n: int = 3) -> float:
    """Share of the call's interval ``n``-grams (its motifs, transposition-free) that the answer
    plays again; NaN when the call has none."""
    motifs = interval_ngrams(call, n)
    if not motifs:
        return float("nan")
    return len(motifs & interval_ngrams(answer, n)) / len(motifs)
