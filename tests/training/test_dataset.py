"""Held-out split, chord vocabulary, augmentation and windows."""

from __future__ import annotations

import numpy as np
import pytest
from training_support import SCHEME

from bridge.tokens import Note
from training.corpus import Piece
from training.dataset import (
    build_dataset,
    concat,
    split_pieces,
    transpose,
    transpose_windows,
    transposition_table,
    windows,
)


def _pieces(count: int) -> list[Piece]:
    return [
        Piece(f"p{i:03d}", (Note(0, 60 + i % 12, 4), Note(4, 64, 4), Note(4, 67, 4)))
        for i in range(count)
    ]


def test_split_holds_out_every_tenth_piece_by_name() -> None:
    pieces = _pieces(433)
    split = split_pieces(list(reversed(pieces)))  # input order does not matter
    assert (len(split.train), len(split.held_out)) == (390, 43)
    assert [p.name for p in split.held_out[:3]] == ["p009", "p019", "p029"]
    assert not {p.name for p in split.train} & {p.name for p in split.held_out}
    assert split_pieces(pieces) == split


def test_split_needs_every_of_at_least_two() -> None:
    with pytest.raises(ValueError, match="every >= 2"):
        split_pieces(_pieces(5), every=1)


def test_chord_vocabulary_comes_from_the_training_split_only() -> None:
    train_chord = (Note(0, 48, 4, 72), Note(0, 52, 4, 72))  # 72: a velocity bucket centre
    held_chord = (Note(0, 50, 4, 72), Note(0, 53, 4, 72))
    pieces = [Piece(f"p{i}", held_chord if i == 1 else train_chord) for i in range(4)]
    data = build_dataset(pieces, SCHEME, chord_cap=8, every=2)
    assert data.scheme.chords == ((48, 52),)
    # the held-out chord is not in the vocabulary: it is played as its two notes at shift 0
    assert data.scheme.decode(data.held_out[0]) == sorted(held_chord)
    assert len(data.held_out[0]) == 1 + 2 * 4


def test_augmentation_transposes_training_pieces_only() -> None:
    pieces = _pieces(20)
    plain = build_dataset(pieces, SCHEME, augment=0, every=10)
    wide = build_dataset(pieces, SCHEME, augment=2, every=10)
    assert len(wide.train) == 5 * len(plain.train)
    assert len(wide.held_out) == len(plain.held_out)
    for a, b in zip(wide.held_out, plain.held_out, strict=True):  # same notes, other chord ids
        assert wide.scheme.decode(a) == plain.scheme.decode(b)
    pitches = {n.pitch for t in wide.train for n in wide.scheme.decode(t)}
    assert min(pitches) == 60 - 2 and max(pitches) == 71 + 2
    assert wide.summary()["augment_semitones"] == 2


def test_transpose_drops_notes_outside_midi_range() -> None:
    notes = (Note(0, 2, 1), Note(0, 126, 1))
    assert transpose(notes, -3) == (Note(0, 126 - 3, 1),)
    assert transpose(notes, 2) == (Note(0, 4, 1),)


def test_windows_predict_every_next_token() -> None:
    stream = np.arange(11, dtype=np.int32)
    x, y = windows(stream, 4)
    assert x.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert y.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    x, _ = windows(stream, 4, stride=3)
    assert x[:, 0].tolist() == [0, 3, 6]
    assert windows(stream[:3], 4)[0].shape == (0, 4)


def test_streams_start_with_bos_and_concatenate() -> None:
    data = build_dataset(_pieces(10), SCHEME, every=5)
    assert all(t[0] == SCHEME.bos for t in data.train + data.held_out)
    assert len(concat(data.train)) == sum(len(t) for t in data.train)
    assert data.summary()["held_out_events"] == 2 * 2  # two pieces, two events each


def test_transposition_table_moves_notes_and_known_chords_only() -> None:
    scheme = SCHEME.with_chords_from(
        [[Note(0, 60, 4, 80), Note(0, 64, 4, 80), Note(4, 62, 4, 80), Note(4, 66, 4, 80)]], 8
    )
    table = transposition_table(scheme, 2)
    assert table.shape == (5, scheme.vocab_size)
    assert (table[2] == np.arange(scheme.vocab_size)).all()  # row N is the identity
    c4, e4 = scheme.note_base + 60, scheme.pitches_token([60, 64])
    d4_fs4 = scheme.pitches_token([62, 66])
    assert table[4, c4] == scheme.note_base + 62 and table[0, c4] == scheme.note_base + 58
    assert table[4, e4] == d4_fs4 and table[0, d4_fs4] == e4
    assert table[3, e4] == -1  # (61, 65) is not in the vocabulary
    assert table[0, scheme.note_base] == -1 and table[4, scheme.note_base + 127] == -1
    assert table[0, scheme.shift_token(3)] == scheme.shift_token(3)  # no pitch: unchanged
    with pytest.raises(ValueError, match=r"0\.\.12"):
        transposition_table(scheme, 13)


def test_each_window_gets_its_own_valid_shift() -> None:
    notes = [Note(4 * i, 60 + (i % 5), 4, 80) for i in range(64)]
    stream = np.asarray(SCHEME.encode(notes), np.int32)
    x, y = windows(stream, 16, stride=4)
    table = transposition_table(SCHEME, 6)
    moved_x, moved_y = transpose_windows(x, y, table, np.random.default_rng(0))
    assert moved_x.shape == x.shape and (moved_x[:, 1:] == moved_y[:, :-1]).all()
    pitch = (x >= SCHEME.note_base) & (x < SCHEME.note_base + 128)
    shifts = set()
    for row in range(len(x)):
        delta = set((moved_x[row] - x[row])[pitch[row]].tolist())
        assert len(delta) == 1  # one shift per window
        shifts |= delta
        assert (moved_x[row][~pitch[row]] == x[row][~pitch[row]]).all()
    assert len(shifts) >= 8  # windows are spread over many keys
    high = np.asarray(SCHEME.encode([Note(0, 125, 4, 80), Note(4, 127, 4, 80)]), np.int32)
    hx, hy = windows(np.concatenate([high, high]), 8)
    for seed in range(10):  # only shifts that keep 127 in range: ≤ 0
        mx, _ = transpose_windows(hx, hy, table, np.random.default_rng(seed))
        held = (hx >= SCHEME.note_base) & (hx < SCHEME.note_base + 128)
        assert (mx[held] <= hx[held]).all() and (mx[~held] == hx[~held]).all()
