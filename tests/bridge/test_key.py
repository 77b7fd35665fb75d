"""Key estimate (Krumhansl-Schmuckler), key parsing, key-lock bias, register shift."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bridge.key import (
    Key,
    estimate_key,
    in_key_share,
    key_bias,
    parse_key,
    register_bias,
    register_shift,
)
from bridge.sampling import sample
from bridge.tokens import Note, TokenScheme


def _line(pitches: list[int], duration: int = 4) -> list[Note]:
    return [Note(i * duration, p, duration, 80) for i, p in enumerate(pitches)]


@pytest.mark.parametrize(
    ("text", "tonic", "minor", "shown"),
    [
        ("C", 0, False, "C"),
        ("F#m", 6, True, "F#m"),
        ("Bb", 10, False, "Bb"),
        ("ebm", 3, True, "Ebm"),
        ("A minor", 9, True, "Am"),
        ("Cb", 11, False, "B"),
        ("G major", 7, False, "G"),
    ],
)
def test_parse_key(text: str, tonic: int, minor: bool, shown: str) -> None:
    key = parse_key(text)
    assert (key.tonic, key.minor, str(key)) == (tonic, minor, shown)


@pytest.mark.parametrize("bad", ["", "H", "C##", "Cmm", "auto", "12"])
def test_parse_key_rejects_nonsense(bad: str) -> None:
    with pytest.raises(ValueError, match="not a key"):
        parse_key(bad)


@pytest.mark.parametrize("tonic", range(12))
def test_scales_are_found_in_every_key(tonic: int) -> None:
    major = _line([60 + tonic + s for s in (0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0)])
    assert estimate_key(major) == Key(tonic, False)
    # harmonic minor with the tonic and fifth held longest
    minor = [
        Note(0, 57 + tonic, 8),
        *_line([57 + tonic + s for s in (2, 3, 5, 7, 8, 11)]),
        Note(40, 64 + tonic, 8),
        Note(48, 57 + tonic, 8),
    ]
    assert estimate_key(minor) == Key((9 + tonic) % 12, True)


def test_durations_weigh_the_estimate() -> None:
    # the same pitch set; the C major triad held long → C, the A minor triad → Am
    c_major = [Note(0, 60, 16), Note(16, 64, 8), Note(24, 67, 16), *_line([62, 65, 69, 71], 1)]
    a_minor = [Note(0, 57, 16), Note(16, 60, 8), Note(24, 64, 16), *_line([62, 65, 67, 71], 1)]
    assert estimate_key(c_major) == Key(0)
    assert estimate_key(a_minor) == Key(9, True)


def test_no_estimate_without_spread() -> None:
    assert estimate_key([]) is None
    assert estimate_key(_line([60, 72, 48])) is None  # one pitch class


def test_in_key_share_counts_notes() -> None:
    assert in_key_share(_line([60, 61, 62, 64]), Key(0)) == 0.75
    assert math.isnan(in_key_share([], Key(0)))
    assert Key(9, True).scale == {9, 11, 0, 2, 4, 5, 7, 8}  # leading tone G# counts in A minor


def test_key_bias_masks_or_leans() -> None:
    scheme = TokenScheme().with_chords_from(
        [[Note(0, 60, 4), Note(0, 64, 4)], [Note(0, 61, 4), Note(0, 65, 4)]], 8
    )
    assert key_bias(scheme, Key(0), 0.0) is None and key_bias(scheme, None, 1.0) is None
    full = key_bias(scheme, Key(0), 1.0)
    half = key_bias(scheme, Key(0), 0.5)
    assert full is not None and half is not None
    assert full[scheme.note_base + 61] == -np.inf and full[scheme.note_base + 62] == 0
    assert half[scheme.note_base + 61] == pytest.approx(math.log(0.5))
    assert full[scheme.pitches_token([60, 64])] == 0
    assert full[scheme.pitches_token([61, 65])] == -np.inf
    assert (full[: scheme.note_base] == 0).all() and (full[scheme.duration_base :] == 0).all()
    with pytest.raises(ValueError, match=r"0\.\.1"):
        key_bias(scheme, Key(0), 1.5)


def test_full_lock_samples_scale_tones_only() -> None:
    scheme = TokenScheme()
    bias = key_bias(scheme, Key(6, True), 1.0)
    assert bias is not None
    mask = np.zeros(scheme.vocab_size, bool)
    mask[scheme.note_base : scheme.note_base + 128] = True
    rng = np.random.default_rng(3)
    logits = rng.normal(size=scheme.vocab_size)
    picked = {sample(logits + bias, mask, rng=rng) - scheme.note_base for _ in range(300)}
    assert {p % 12 for p in picked} == Key(6, True).scale
    # half lock: out-of-scale tones still occur, but about half as often as unbiased
    half = key_bias(scheme, Key(0), 0.5)
    assert half is not None
    flat = np.zeros(scheme.vocab_size)
    outside = [p for p in range(128) if p % 12 not in Key(0).scale]
    probs = np.exp(flat + half)[scheme.note_base : scheme.note_base + 128]
    share = probs[outside].sum() / probs.sum()
    assert share == pytest.approx((len(outside) * 0.5) / (128 - len(outside) * 0.5))


def test_register_shift_moves_by_octaves_towards_the_call() -> None:
    call = _line([76, 79, 81, 79])  # around E5
    low = _line([52, 55, 57, 60])  # two octaves below
    assert register_shift(call, low) == 24
    assert register_shift(call, _line([74, 77])) == 0
    assert register_shift([], low) == 0 and register_shift(call, []) == 0
    assert register_shift(_line([127]), _line([100, 120])) == 0  # 132 would leave MIDI


def test_register_bias_pulls_towards_the_call_range() -> None:
    scheme = TokenScheme().with_chords_from([[Note(0, 40, 4), Note(0, 76, 4)]], 4)
    call = _line([72, 76, 79])
    bias = register_bias(scheme, call, margin=5, slope=0.5)
    assert bias is not None and register_bias(scheme, []) is None
    note = scheme.note_base
    assert bias[note + 67] == 0 and bias[note + 84] == 0  # inside the widened range
    assert bias[note + 66] == -0.5 and bias[note + 96] == pytest.approx(-6.0)
    chord = scheme.pitches_token([40, 76])
    assert chord is not None and bias[chord] == pytest.approx(-0.5 * 27 / 2)
    assert (bias[:note] == 0).all()
