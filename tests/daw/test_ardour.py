"""Ardour plays the call, sends its clock and records the bridge's answer.

Three takes, each recorded once (see ``daw_take``) and read by several tests:

- ``clock90`` / ``clock140``: Ardour's MIDI clock drives the bridge (``--start bar``, the same
  ``--seed``) at 90 and 140 BPM; the call is blues_riff then bach_chorale; at 140 BPM a third
  phrase's answer is cut by Ardour stopping its transport one bar and a bit into it;
- ``free``: no clock reaches the bridge (``--bpm`` = Ardour's tempo, ``--start now``); the call is
  canon_chords then ode_to_joy.

So every example phrase is answered and recorded.  Grid checks use the clock ticks a second JACK
client heard, in JACK frames (Ardour's beats), and Ardour's own take file (beats of its grid).
Tolerances: a note may leave up to a JACK period late and a busy machine delays a few; medians
and nearest-sixteenth checks keep one late note from deciding, never a wall-clock bound.
"""

from __future__ import annotations

import math

import pytest
from daw_take import (
    Note,
    Take,
    TakeSpec,
    grid_offsets_s,
    median,
    record_take,
    sounding_at_end,
)

# A take (Ardour session, recording, up to daw_take.ATTEMPTS attempts) is paid by the first
# test using it.
pytestmark = [pytest.mark.jack, pytest.mark.timeout(1200)]

CLOCK_PHRASES = ("blues_riff", "bach_chorale")
STOP_GRACE_S = 0.25  # after Ardour's MIDI Stop the bridge must be silent within this
MATCH_S = 0.002  # a note in Ardour's take vs the same note heard by the listener
DURATION_BEATS = 0.125  # a note's length at 90 vs 140 BPM (half a sixteenth)


def _record(spec: TakeSpec, request: pytest.FixtureRequest) -> Take:
    return record_take(
        spec,
        binary=request.getfixturevalue("ardour_lua"),
        server=request.getfixturevalue("daw_server"),
        workdir=request.getfixturevalue("tmp_path_factory").mktemp("daw"),
        start_bridge=request.getfixturevalue("start_bridge_fn"),
    )


@pytest.fixture(scope="module")
def clock90(request: pytest.FixtureRequest) -> Take:
    return _record(TakeSpec("clock90", 90.0, True, CLOCK_PHRASES), request)


@pytest.fixture(scope="module")
def clock140(request: pytest.FixtureRequest) -> Take:
    return _record(
        TakeSpec("clock140", 140.0, True, (*CLOCK_PHRASES, "blues_riff"), stop_into_last=4.375),
        request,
    )


@pytest.fixture(scope="module")
def free(request: pytest.FixtureRequest) -> Take:
    return _record(TakeSpec("free", 150.0, False, ("canon_chords", "ode_to_joy")), request)


TAKES = ("clock90", "clock140", "free")


@pytest.fixture(params=TAKES)
def take(request: pytest.FixtureRequest) -> Take:
    return request.getfixturevalue(request.param)


def _on_grid(answer: list[Note], bar: float) -> list[tuple[int, int, int, float]]:
    """An answer relative to its bar: (onset in sixteenths, pitch, velocity, duration in beats),
    in the order the answer plays."""
    return sorted((round((o - bar) * 4), p, v, round(d, 3)) for o, p, d, v in answer)


def test_every_phrase_is_answered_and_recorded(take: Take) -> None:
    heard = take.answers(take.heard_notes())
    for segment, recorded, listened in zip(take.segments, take.answers(), heard, strict=True):
        assert recorded, f"no answer to {segment.phrase} in Ardour's take\n{take.describe()}"
        assert listened, f"the listener heard no answer to {segment.phrase}\n{take.describe()}"
    stray = [n for n in take.recorded if not any(s.end <= n[0] < s.until for s in take.segments)]
    assert not stray, f"notes recorded while a phrase was playing: {stray}\n{take.describe()}"


def test_no_stuck_notes_and_clean_exit(take: Take) -> None:
    stuck = sounding_at_end(take.answer_messages())
    assert not stuck, f"notes never ended (channel, pitch): {stuck}\n{take.describe()}"
    assert take.unterminated == 0, f"Ardour's take holds unended notes\n{take.describe()}"
    assert take.bridge_exit == 0, take.describe()


def test_recorded_take_equals_what_a_second_client_heard(take: Take) -> None:
    """The same notes (pitch, velocity) and lengths (within ``MATCH_S``); each onset in Ardour's
    take lags what the listener heard by at most one JACK period (``MATCH_S`` either side):
    Ardour feeds the bridge and the bridge feeds Ardour, and JACK runs that loop a period behind
    (measured: 4.7-5.4 ms at 256 frames, every note).  A note that sounded across the stop is
    recorded only up to the stop; what the bridge played after it is not recorded at all."""
    stop = take.beat_at(take.stop) if take.stop is not None else math.inf
    heard_notes = [n for n in take.heard_notes() if n[0] < stop]
    recorded, heard = _by_pitch(take.recorded), _by_pitch(heard_notes)
    assert {p: len(n) for p, n in recorded.items()} == {p: len(n) for p, n in heard.items()}, (
        f"recorded {take.recorded}\nheard {heard_notes}\n{take.describe()}"
    )
    spb = take.seconds_per_beat
    pairs = [pair for p in recorded for pair in zip(recorded[p], heard[p], strict=True)]
    assert all(r[3] == h[3] for r, h in pairs), pairs
    lags = [(r[0] - h[0]) * spb for r, h in pairs]
    assert min(lags) >= -MATCH_S and max(lags) <= take.period_s + MATCH_S, (
        f"onsets in Ardour's take minus onsets heard: {min(lags) * 1000:.2f}..."
        f"{max(lags) * 1000:.2f} ms (one JACK period is {take.period_s * 1000:.2f} ms)"
    )
    cut = take.stop_beat - MATCH_S / spb
    resized = [(r, h) for r, h in pairs if h[0] + h[2] < cut and abs(r[2] - h[2]) * spb > MATCH_S]
    assert not resized, f"lengths differ by more than {MATCH_S * 1000:g} ms: {resized}"


def _by_pitch(notes: list[Note]) -> dict[int, list[Note]]:
    """Notes per pitch in time order (notes of one pitch do not overlap, so they pair up)."""
    out: dict[int, list[Note]] = {}
    for note in sorted(notes):
        out.setdefault(note[1], []).append(note)
    return out


@pytest.mark.parametrize("name", ["clock90", "clock140"])
def test_answer_starts_on_a_bar_and_sits_on_ardours_sixteenths(
    name: str, request: pytest.FixtureRequest
) -> None:
    take: Take = request.getfixturevalue(name)
    bar = float(take.spec.beats_per_bar)
    spb = take.seconds_per_beat
    for segment, answer in zip(take.segments, take.answers(take.heard_notes()), strict=True):
        first = min(o for o, *_ in answer)
        # the nearest sixteenth of the first note is a bar: the one after the silence, or the
        # next one if generation missed it
        sixteenth = round(first * 4)
        assert sixteenth % (4 * take.spec.beats_per_bar) == 0, (
            f"{segment.phrase}: the answer starts at beat {first:.3f}, not on a bar\n"
            f"{take.describe()}"
        )
        assert segment.answer_bar <= sixteenth / 4 <= segment.answer_bar + bar, (
            f"{segment.phrase}: answer at beat {first:.3f}, due on the bar at "
            f"{segment.answer_bar:g}\n{take.describe()}"
        )
        offsets = grid_offsets_s([o for o, *_ in answer], spb)
        assert median(offsets) < 0.010, (
            f"{segment.phrase}: answer off Ardour's sixteenths by {offsets} s (median)\n"
            f"{take.describe()}"
        )
    # and in Ardour's own take file (its grid: the take's region starts at beat 0)
    recorded_first = [min(o for o, *_ in a) for a in take.answers()]
    assert all(round(o * 4) % (4 * take.spec.beats_per_bar) == 0 for o in recorded_first), (
        recorded_first
    )
    assert median(grid_offsets_s([n[0] for n in take.recorded], spb)) < 0.010


def test_same_call_and_seed_give_the_same_answer_at_both_tempos(
    clock90: Take, clock140: Take
) -> None:
    for k, phrase in enumerate(clock90.spec.phrases):
        slow = clock90.answers()[k]
        fast = clock140.answers()[k]
        slow_bar = round(min(o for o, *_ in slow) / 4) * 4
        fast_bar = round(min(o for o, *_ in fast) / 4) * 4
        slow_grid, fast_grid = _on_grid(slow, slow_bar), _on_grid(fast, fast_bar)
        context = (
            f"{phrase}: 90 BPM {slow_grid}\n140 BPM {fast_grid}\n{clock90.describe()}\n"
            f"{clock140.describe()}"
        )
        assert [n[:3] for n in slow_grid] == [n[:3] for n in fast_grid], (
            f"the answers differ in notes or onsets; {context}"
        )
        # lengths in beats: a note-off may leave a JACK period late, never half a sixteenth
        longer = [
            (a, b)
            for a, b in zip(slow_grid, fast_grid, strict=True)
            if abs(a[3] - b[3]) > DURATION_BEATS
        ]
        assert not longer, f"note lengths differ: {longer}; {context}"


def test_answer_on_the_bridges_own_tempo_without_clock(free: Take) -> None:
    """No clock reaches the bridge: it answers after the silence, on its own --bpm (= Ardour's
    tempo), so the answer's notes lie on sixteenths counted from its first note."""
    spb = free.seconds_per_beat
    for segment, answer in zip(free.segments, free.answers(), strict=True):
        first = min(o for o, *_ in answer)
        assert segment.end + free.spec.silence_beats - 0.1 <= first, (
            f"{segment.phrase}: answer at {first:.3f} before the phrase's silence ended"
        )
        offsets = grid_offsets_s([o - first for o, *_ in answer], spb)
        assert median(offsets) < 0.010, (
            f"{segment.phrase}: answer off its own sixteenths by {offsets} s\n{free.describe()}"
        )


def test_transport_stop_mid_answer_ends_the_answer(clock140: Take) -> None:
    take = clock140
    assert take.stop is not None, f"the listener heard no MIDI Stop\n{take.describe()}"
    messages = take.answer_messages()
    last = take.segments[-1]
    answer_start = take.start + last.answer_bar * take.seconds_per_beat - 0.05
    before = [m for t, m in messages if answer_start <= t < take.stop and m.type == "note_on"]
    assert before, f"the answer had not begun when Ardour stopped\n{take.describe()}"
    after = [(round(t - take.stop, 3), m) for t, m in messages if t >= take.stop + STOP_GRACE_S]
    assert not after, (
        f"the bridge kept playing after Ardour's MIDI Stop: {len(after)} messages until "
        f"{after[-1][0]:.2f} s after it; the first (s, message): {after[:6]}\n{take.describe()}"
    )
    at_grace = sounding_at_end([(t, m) for t, m in messages if t < take.stop + STOP_GRACE_S])
    assert not at_grace, (
        f"notes still sounding {STOP_GRACE_S:g} s after Ardour's Stop: {at_grace}\n"
        f"{take.describe()}"
    )
