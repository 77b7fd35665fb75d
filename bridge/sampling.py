"""Pick the next token: grammar mask, temperature, top-k and top-p (nucleus) sampling.

Called by the generation worker once per token.  All randomness comes from the numpy
``Generator`` passed in, so the same seed gives the same answer (``--seed N``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from bridge.tokens import TokenScheme

__all__ = ["check_sampling", "mask_table", "sample"]


@lru_cache(maxsize=8)
def mask_table(scheme: TokenScheme) -> tuple[np.ndarray, ...]:
    """The grammar mask after each token id (``scheme.allowed(token)``), precomputed so the
    sampling loop looks it up instead of classifying the token every step.  Cached per scheme;
    the engine builds it when a model is loaded."""
    return tuple(scheme.allowed(token) for token in range(scheme.vocab_size))


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    """ValueError unless sampling is defined: temperature a finite number > 0, top_k ≥ 0 (0 =
    off), top_p in (0, 1].  (A user's narrower ranges are :class:`bridge.config.Settings`'.)"""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)) or (
        temperature <= 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def sample(
    logits: np.ndarray,
    mask: np.ndarray,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: np.random.Generator,
) -> int:
    """Sample one token id among those ``mask`` allows.

    ``temperature`` > 0 scales the logits; ``top_k`` > 0 keeps only the k most likely allowed
    tokens; ``top_p`` in (0, 1] keeps the smallest set whose probability reaches ``top_p``.  Allowed
    tokens with non-finite logits count as impossible unless every allowed logit is, in which case
    the choice is uniform over the mask.  ``ValueError`` if the mask allows nothing or a parameter
    is out of range.
    """
    check_sampling(temperature, top_k, top_p)
    scores = np.asarray(logits, dtype=np.float64).reshape(-1)
    if mask.shape != scores.shape:
        raise ValueError(f"mask has shape {mask.shape}, logits {scores.shape}")
    candidates = np.flatnonzero(mask)
    if candidates.size == 0:
        raise ValueError("the mask allows no token")
    values = scores[candidates] / temperature
    finite = np.isfinite(values)
    if not finite.any():
        return int(candidates[rng.integers(candidates.size)])
    values = np.where(finite, values, -np.inf)
    if 0 < top_k < candidates.size:
        keep = np.argpartition(values, -top_k)[-top_k:]
        candidates, values = candidates[keep], values[keep]
    probs = np.exp(values - values.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        cut = int(np.searchsorted(cumulative, top_p)) + 1
        keep = order[:cut]
        candidates, probs = candidates[keep], probs[keep]
        probs = probs / probs.sum()
    cdf = np.cumsum(probs)
    index = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return int(candidates[min(index, candidates.size - 1)])
