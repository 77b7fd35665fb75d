"""The token scheme: quantize, notes ⇄ events ⇄ tokens, grammar, decoder, persistence."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import TokenError
from bridge.tokens import Decoder, Event, Kind, Note, TokenScheme

SCHEME = TokenScheme(chords=((60, 64, 67), (48, 55, 64, 72)))
V = SCHEME.bucket_velocity(SCHEME.velocity_bucket(80))  # a velocity that survives quantizing


def notes_strategy(scheme: TokenScheme) -> st.SearchStrategy[list[Note]]:
    velocities = [scheme.bucket_velocity(b) for b in range(scheme.velocity_buckets)]
    note = st.builds(
        Note,
        onset=st.integers(0, 200),
        pitch=st.integers(0, 127),
        duration=st.integers(1, scheme.max_duration),
        velocity=st.sampled_from(velocities),
    )
    # A quantized phrase has one note per (onset, pitch): what quantize() produces.
    return st.lists(note, max_size=40, unique_by=lambda n: (n.onset, n.pitch)).map(sorted)


@settings(max_examples=300, deadline=None)
@given(notes_strategy(SCHEME))
def test_quantized_notes_round_trip_exactly(notes: list[Note]) -> None:
    tokens = SCHEME.encode(notes)
    assert tokens[0] == SCHEME.bos
    assert SCHEME.decode(tokens) == notes


@settings(max_examples=100, deadline=None)
@given(notes_strategy(SCHEME))
def test_every_encoded_sequence_obeys_the_grammar(notes: list[Note]) -> None:
    tokens = SCHEME.encode(notes)
    for last, token in itertools.pairwise(tokens):
        assert SCHEME.allowed(last)[token], (last, token)


def test_a_chord_outside_the_vocabulary_becomes_its_notes() -> None:
    notes = [Note(0, p, 4, 80) for p in (61, 65, 68)]  # C# major: not in the vocabulary
    events = SCHEME.events_from_notes(notes)
    assert [e.pitches for e in events] == [(61,), (65,), (68,)]
    assert [e.shift for e in events] == [0, 0, 0]
    assert SCHEME.decode(SCHEME.encode(notes)) == SCHEME.quantize(
        [(0, p, 1, 80) for p in (61, 65, 68)]
    )


def test_a_known_chord_is_one_event_and_four_tokens() -> None:
    notes = SCHEME.quantize([(0.0, p, 1.0, 100) for p in (60, 64, 67)])
    tokens = SCHEME.encode(notes, bos=False)
    assert len(tokens) == 4
    assert SCHEME.token_value(tokens[1]) == (60, 64, 67)


def test_a_long_silence_is_bridged_by_rests() -> None:
    notes = [Note(0, 60, 2, V), Note(100, 62, 2, V)]
    events = SCHEME.events_from_notes(notes)
    assert [e.is_rest for e in events] == [False, True, True, True, False]
    assert sum(e.shift for e in events) == 100
    assert SCHEME.decode(SCHEME.encode(notes)) == notes


def test_same_onset_different_durations_are_separate_events() -> None:
    notes = [Note(0, 60, 4, 80), Note(0, 64, 8, 80)]
    events = SCHEME.events_from_notes(notes)
    assert [(e.shift, e.pitches, e.duration) for e in events] == [(0, (60,), 4), (0, (64,), 8)]


def test_quantize_snaps_clamps_and_dedupes() -> None:
    scheme = TokenScheme()
    got = scheme.quantize(
        [
            (10.02, 60, 0.49, 127),  # onset snaps to the grid, duration to 2 steps
            (10.0, 60, 1.0, 127),  # same key, same step: the longer one stays
            (10.5, 62, 100.0, 1),  # duration clamped to max_duration
            (11.0, 200, 1.0, 64),  # not a MIDI pitch: dropped
        ]
    )
    top = scheme.bucket_velocity(scheme.velocity_bucket(127))
    low = scheme.bucket_velocity(scheme.velocity_bucket(1))
    assert got == [Note(0, 60, 4, top), Note(2, 62, scheme.max_duration, low)]
    assert scheme.quantize([]) == []


def test_velocity_buckets_map_back_to_themselves() -> None:
    for buckets in (1, 4, 8, 16, 127):
        scheme = TokenScheme(velocity_buckets=buckets)
        for b in range(buckets):
            assert scheme.velocity_bucket(scheme.bucket_velocity(b)) == b
        assert scheme.velocity_bucket(0) == 0 and scheme.velocity_bucket(500) == buckets - 1


def test_layout_covers_the_vocabulary_once() -> None:
    kinds = [SCHEME.kind(t) for t in range(SCHEME.vocab_size)]
    assert kinds[0] is Kind.BOS
    assert kinds.count(Kind.SHIFT) == SCHEME.max_shift + 1
    assert kinds.count(Kind.REST) == 1
    assert kinds.count(Kind.PITCHES) == 128 + len(SCHEME.chords)
    assert kinds.count(Kind.DURATION) == SCHEME.max_duration
    assert kinds.count(Kind.VELOCITY) == SCHEME.velocity_buckets
    with pytest.raises(TokenError):
        SCHEME.kind(SCHEME.vocab_size)


def test_grammar_masks_follow_the_event_cycle() -> None:
    shift = SCHEME.shift_token(2)
    pitch = SCHEME.pitches_token((60,))
    assert pitch is not None
    duration = SCHEME.duration_token(4)
    velocity = SCHEME.velocity_token(3)
    assert SCHEME.next_kinds(None) == {Kind.SHIFT}
    assert SCHEME.next_kinds(SCHEME.bos) == {Kind.SHIFT}
    assert SCHEME.next_kinds(shift) == {Kind.PITCHES, Kind.REST}
    assert SCHEME.next_kinds(pitch) == {Kind.DURATION}
    assert SCHEME.next_kinds(duration) == {Kind.VELOCITY}
    assert SCHEME.next_kinds(velocity) == {Kind.SHIFT}
    assert SCHEME.next_kinds(SCHEME.rest) == {Kind.SHIFT}
    mask = SCHEME.allowed(shift)
    assert mask[pitch] and mask[SCHEME.rest] and not mask[duration]
    assert not mask.flags.writeable


def test_decoder_skips_what_breaks_the_grammar() -> None:
    decoder = Decoder(SCHEME)
    pitch = SCHEME.pitches_token((60,))
    assert pitch is not None
    stream = [
        SCHEME.bos,
        pitch,
        SCHEME.vocab_size + 5,
        -1,  # out of grammar / range
        SCHEME.shift_token(3),
        pitch,
        SCHEME.duration_token(2),
        SCHEME.velocity_token(1),
        SCHEME.shift_token(1),
        SCHEME.rest,
    ]
    events = list(decoder.feed_all(stream))
    assert events == [Event(3, (60,), 2, 1), Event(1, ())]
    assert decoder.skipped == 3
    assert decoder.last == SCHEME.rest


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-5, SCHEME.vocab_size + 5), max_size=60))
def test_decoding_random_tokens_never_raises(tokens: list[int]) -> None:
    for note in SCHEME.decode(tokens):
        assert 0 <= note.pitch <= 127 and note.duration >= 1


def test_scheme_round_trips_through_json() -> None:
    again = TokenScheme.from_json(SCHEME.to_json())
    assert again == SCHEME and again.vocab_size == SCHEME.vocab_size
    assert again.pitches_token((48, 55, 64, 72)) == SCHEME.pitches_token((48, 55, 64, 72))


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"version": 1}',
        '{"version": 99, "steps_per_beat": 4, "max_shift": 32, "max_duration": 32,'
        ' "velocity_buckets": 8, "chords": []}',
        '{"version": 1, "steps_per_beat": 4, "max_shift": 32, "max_duration": 32,'
        ' "velocity_buckets": 8, "chords": [[64, 60]]}',
        '{"version": 1, "steps_per_beat": 0, "max_shift": 32, "max_duration": 32,'
        ' "velocity_buckets": 8, "chords": []}',
    ],
)
def test_bad_schemes_are_token_errors(text: str) -> None:
    with pytest.raises(TokenError):
        TokenScheme.from_json(text)


def test_chord_vocabulary_is_the_most_frequent_chords() -> None:
    c_major = [Note(0, p, 4, 80) for p in (60, 64, 67)]
    f_major = [Note(8, p, 4, 80) for p in (53, 57, 60)]
    phrases = [c_major + f_major, c_major, c_major]
    scheme = TokenScheme().with_chords_from(phrases, cap=1)
    assert scheme.chords == ((60, 64, 67),)
    assert TokenScheme().with_chords_from(phrases, cap=5).chords == ((60, 64, 67), (53, 57, 60))


@pytest.mark.parametrize(
    "bad",
    [
        dict(onset=-1, pitch=60, duration=1),
        dict(onset=0, pitch=128, duration=1),
        dict(onset=0, pitch=60, duration=0),
        dict(onset=0, pitch=60, duration=1, velocity=0),
    ],
)
def test_notes_are_checked_when_built(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Note(**bad)
    with pytest.raises(TypeError):
        Note(0.5, 60, 1)  # type: ignore[arg-type]


def test_numpy_ints_are_accepted() -> None:
    note = Note(np.int64(0), np.int64(60), np.int64(2), np.int64(V))  # type: ignore[arg-type]
    assert SCHEME.decode(SCHEME.encode([note])) == [Note(0, 60, 2, V)]


def test_close_gaps_shortens_only_long_silences() -> None:
    from bridge.tokens import close_gaps

    notes = [Note(0, 60, 2, V), Note(4, 62, 2, V), Note(1000, 64, 2, V), Note(1003, 65, 2, V)]
    assert [n.onset for n in close_gaps(notes, 16)] == [0, 4, 20, 23]
    # by whole quanta: the remainder of the gap modulo the quantum survives
    assert [n.onset for n in close_gaps(notes, 64, quantum=32)] == [0, 4, 1000 - 928, 1003 - 928]
    assert close_gaps(notes, 10_000) == notes
    with pytest.raises(ValueError):
        close_gaps(notes, 4, quantum=0)
