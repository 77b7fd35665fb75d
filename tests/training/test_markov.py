"""Witten-Bell Markov baselines."""

from __future__ import annotations

import numpy as np
import pytest

from training.markov import MarkovModel


def test_distributions_sum_to_one_for_seen_and_unseen_contexts() -> None:
    model = MarkovModel(3, 6).fit([[0, 1, 2, 3, 1, 2, 4], [0, 1, 2, 3]])
    for context in ([], [1], [1, 2], [0, 1, 2], [5, 5, 5]):
        p = model.distribution(context)
        assert p.shape == (6,) and np.all(p > 0)
        assert p.sum() == pytest.approx(1.0)


def test_order_zero_is_the_add_one_unigram() -> None:
    model = MarkovModel(0, 4).fit([[0, 1, 1, 2]])  # targets 1, 1, 2 (the first token is context)
    assert model.distribution([3]) == pytest.approx(np.array([1, 3, 2, 1]) / 7)


def test_witten_bell_interpolation_by_hand() -> None:
    model = MarkovModel(1, 3).fit([[0, 1, 0, 1, 0, 2]])
    # unigram (add-one over targets 1,0,1,0,2): [3, 3, 2] / 8; after 0: 1 twice, 2 once, T = 2
    lower = np.array([3, 3, 2]) / 8
    expected = (np.array([0, 2, 1]) + 2 * lower) / (3 + 2)
    assert model.distribution([0]) == pytest.approx(expected)
    # a context never seen falls through to the unigram
    assert model.distribution([2]) == pytest.approx(lower)


def test_higher_order_uses_longer_context() -> None:
    stream = [0, 1, 2, 1, 3] * 20
    first, second = MarkovModel(1, 4).fit([stream]), MarkovModel(2, 4).fit([stream])
    assert first.distribution([1]).argmax() in (2, 3)
    assert second.distribution([0, 1]).argmax() == 2
    assert second.distribution([2, 1]).argmax() == 3
    rows = second.stream_distributions(stream[:6])
    assert rows.shape == (5, 4)
    assert rows[1] == pytest.approx(second.distribution([0, 1]))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        MarkovModel(-1, 4)
    with pytest.raises(ValueError):
        MarkovModel(1, 0)
