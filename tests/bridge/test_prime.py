"""Priming while the call is played: the chain of states, and the settled part of a call."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest

from bridge.model import LstmModel, load_model
from bridge.phrase import PhraseCapture
from bridge.prime import PrimedStates, run_chunks


def chunks_of(model: LstmModel, n: int, offset: int = 0) -> list[tuple[int, ...]]:
    """BOS and ``n`` note events (4 tokens each) of a made-up call."""
    scheme = model.scheme
    out: list[tuple[int, ...]] = [(scheme.bos,)]
    for i in range(n):
        out.append(
            (
                scheme.shift_token(2),
                scheme.pitches_token((60 + (i + offset) % 12,)) or 0,
                scheme.duration_token(2),
                scheme.velocity_token(3),
            )
        )
    return out


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_growing_call_runs_only_its_new_events(tiny_model: LstmModel) -> None:
    primed = PrimedStates()
    call = chunks_of(tiny_model, 6)
    first = primed.prime(tiny_model, call[:3])
    assert (first.reused, first.ran) == (0, 3)
    second = primed.prime(tiny_model, call[:5])
    assert (second.reused, second.ran) == (3, 2)
    last = primed.prime(tiny_model, call)
    assert (last.reused, last.ran) == (5, 2)
    again = primed.prime(tiny_model, call)
    assert (again.reused, again.ran, again.seconds) == (7, 0, 0.0)
    # bit for bit what priming from scratch gives: a seeded answer never depends on the cache
    fresh = run_chunks(tiny_model, call)[-1]
    assert np.array_equal(last.logits, fresh[0]) and same(last.state, fresh[1])
    assert np.array_equal(again.logits, fresh[0])


def test_a_changed_event_reruns_from_there(tiny_model: LstmModel) -> None:
    primed = PrimedStates()
    call = chunks_of(tiny_model, 5)
    primed.prime(tiny_model, call)
    changed = [*call[:3], *chunks_of(tiny_model, 3, offset=7)[1:]]  # events 3.. differ
    result = primed.prime(tiny_model, changed)
    assert (result.reused, result.ran) == (3, 3)
    assert np.array_equal(result.logits, run_chunks(tiny_model, changed)[-1][0])
    shorter = primed.prime(tiny_model, changed[:2])  # a prefix of the chain: nothing to run
    assert (shorter.reused, shorter.ran) == (2, 0)


def test_chains_are_per_model_and_bounded(tiny_model: LstmModel, tiny_model_path: Path) -> None:
    primed = PrimedStates(max_chunks=4)
    call = chunks_of(tiny_model, 3)  # BOS + 3 events: 4 chunks
    primed.prime(tiny_model, call)
    assert primed.prime(tiny_model, call).ran == 0
    other = load_model(tiny_model_path)  # another model object: its own chain
    assert primed.prime(other, call).ran == 4
    assert primed.prime(tiny_model, call).ran == 0
    long_call = chunks_of(tiny_model, 5)
    assert primed.prime(tiny_model, long_call).ran == 2  # longer than a chain may be...
    assert primed.prime(tiny_model, long_call).ran == 6  # ...so it was not kept
    primed.forget()
    assert primed.prime(tiny_model, call).ran == 4
    with pytest.raises(ValueError, match="BOS"):
        primed.prime(tiny_model, [])


def test_settled_notes_are_the_groups_that_can_no_longer_change() -> None:
    capture = PhraseCapture(chord_window_s=0.03)

    def play(kind: str, note: int, t: float) -> None:
        capture.feed(mido.Message(kind, note=note, velocity=80 if kind == "note_on" else 0), t)

    play("note_on", 60, 0.0)
    assert capture.settled() == []  # still sounding
    play("note_off", 60, 0.2)
    assert capture.settled() == []  # the newest group: a chord note may still join it
    play("note_on", 64, 0.5)
    play("note_on", 67, 0.51)  # joins the chord at 0.5
    assert [n.pitch for n in capture.settled()] == [60]
    play("note_off", 64, 0.7)
    play("note_on", 72, 0.9)
    play("note_off", 72, 1.0)
    assert [n.pitch for n in capture.settled()] == [60]  # 67 still sounds: its group is open
    play("note_off", 67, 1.1)
    assert [n.pitch for n in capture.settled()] == [60, 64, 67]  # 72 is the newest group
    assert len(capture.take(1.2)) == 4 and capture.settled() == []


def direct_nll(model: LstmModel, chunks: list[tuple[int, ...]]) -> float:
    """The call's negative log-likelihood from one run over all its tokens, with the grammar
    mask from :meth:`TokenScheme.allowed` (independent of run_chunks' bookkeeping)."""
    tokens = [t for chunk in chunks for t in chunk]
    logits, _ = model.run(tokens, model.initial_state())
    total = 0.0
    for i in range(1, len(tokens)):
        allowed = model.scheme.allowed(tokens[i - 1])
        scores = logits[i - 1].astype(np.float64)
        top = scores[allowed].max()
        log_z = np.log(np.exp(scores[allowed] - top).sum()) + top
        total += float(log_z - scores[tokens[i]])
    return total


def test_scores_are_the_calls_log_likelihood_cached_or_not(tiny_model: LstmModel) -> None:
    call = chunks_of(tiny_model, 6)
    expected = direct_nll(tiny_model, call)
    assert expected > 0
    fresh = run_chunks(tiny_model, call, score=True)
    assert fresh[-1][2] == pytest.approx(expected, rel=1e-5)
    assert fresh[0][2] == 0.0  # the BOS alone: nothing predicted yet
    primed = PrimedStates(score=True)
    primed.prime(tiny_model, call[:2])
    grown = primed.prime(tiny_model, call[:5])
    assert grown.nll == pytest.approx(direct_nll(tiny_model, call[:5]), rel=1e-5)
    whole = primed.prime(tiny_model, call)
    assert (whole.reused, whole.nll) == (5, pytest.approx(expected, rel=1e-5))
    assert primed.prime(tiny_model, call).nll == whole.nll  # all from the chain


def test_unscored_chains_say_so(tiny_model: LstmModel) -> None:
    result = PrimedStates().prime(tiny_model, chunks_of(tiny_model, 3))
    assert np.isnan(result.nll)
