"""Grammar-masked sampling with temperature, top-k and top-p."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bridge.sampling import sample

LOGITS = np.array([0.0, 3.0, 1.0, 2.5, -1.0, 0.5], dtype=np.float32)
ALL = np.ones(6, dtype=bool)


def draws(n: int = 2000, seed: int = 0, **kwargs: Any) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = kwargs.pop("mask", ALL)
    logits = kwargs.pop("logits", LOGITS)
    return np.array([sample(logits, mask, rng=rng, **kwargs) for _ in range(n)])


def test_only_allowed_tokens_are_drawn() -> None:
    mask = np.array([True, False, True, False, True, False])
    assert set(draws(mask=mask)) <= {0, 2, 4}


def test_frequencies_follow_the_softmax() -> None:
    counts = np.bincount(draws(20000), minlength=6) / 20000
    probs = np.exp(LOGITS - LOGITS.max())
    probs /= probs.sum()
    assert np.abs(counts - probs).max() < 0.015


def test_top_k_one_and_tiny_top_p_are_greedy() -> None:
    assert set(draws(200, top_k=1)) == {1}
    assert set(draws(200, top_p=0.01)) == {1}
    mask = np.array([True, False, True, True, False, False])
    assert set(draws(200, top_k=1, mask=mask)) == {3}


def test_top_k_keeps_the_k_best() -> None:
    assert set(draws(2000, top_k=2)) == {1, 3}


def test_top_p_keeps_the_nucleus() -> None:
    probs = np.exp(LOGITS - LOGITS.max())
    probs /= probs.sum()  # sorted: 1 (.49), 3 (.30), 2 (.11) ...
    assert set(draws(3000, top_p=0.75)) == {1, 3}


def test_temperature_sharpens_and_flattens() -> None:
    cold = np.bincount(draws(3000, temperature=0.1), minlength=6)
    hot = np.bincount(draws(3000, temperature=5.0), minlength=6)
    assert cold[1] > 2900
    assert (hot > 200).all()


def test_same_seed_same_draws() -> None:
    assert (
        draws(100, seed=7, temperature=1.3, top_p=0.9)
        == draws(100, seed=7, temperature=1.3, top_p=0.9)
    ).all()
    assert (draws(100, seed=7) != draws(100, seed=8)).any()


def test_non_finite_logits_are_impossible_unless_all_are() -> None:
    logits = np.array([np.nan, 1.0, -np.inf, np.inf * 0, 0.0, np.nan], dtype=np.float32)
    assert set(draws(500, logits=logits)) <= {1, 4}
    nothing = np.full(6, -np.inf, dtype=np.float32)
    mask = np.array([False, True, False, True, False, False])
    assert set(draws(500, logits=nothing, mask=mask)) == {1, 3}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 0.0},
        {"temperature": -1.0},
        {"temperature": float("nan")},
        {"top_k": -1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"mask": np.zeros(6, dtype=bool)},
        {"mask": np.ones(5, dtype=bool)},
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        draws(1, **kwargs)
