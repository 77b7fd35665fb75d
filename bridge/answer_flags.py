"""The flags that shape an answer, defined once for ``antiphon bridge`` and ``antiphon continue``.

``--length``/``--unit``, ``--temperature``, ``--top-k``, ``--top-p``, ``--key``, ``--key-lock``
and ``--seed``: the same names, defaults (:class:`~bridge.config.Settings`'), ranges and help in
both commands.  Called from the main thread while the parsers are built.
"""

from __future__ import annotations

from typing import Any

from bridge.config import LENGTH_UNITS, Settings

__all__ = ["add_answer_flags"]


def add_answer_flags(group: Any, defaults: Settings | None = None) -> None:
    """Add the answer's flags to ``group`` (an argparse parser or argument group)."""
    d = defaults or Settings()
    group.add_argument(
        "--length",
        type=int,
        default=d.length,
        metavar="N",
        help="answer length, counted in --unit: events (notes or chords; rests "
        "do not count), or beats/bars from its first note, 1..512 (default "
        "%(default)s)",
    )
    group.add_argument(
        "--unit",
        "--length-unit",
        dest="length_unit",
        choices=LENGTH_UNITS,
        default=d.length_unit,
        help="what --length counts (default %(default)s)",
    )
    group.add_argument(
        "--temperature",
        type=float,
        default=d.temperature,
        help="sampling temperature 0.05..5: lower is safer, higher wilder (default %(default)g)",
    )
    group.add_argument(
        "--top-k",
        type=int,
        default=d.top_k,
        metavar="K",
        help="sample among the K likeliest tokens only, 0..1000, 0 = off (default %(default)s)",
    )
    group.add_argument(
        "--top-p",
        type=float,
        default=d.top_p,
        metavar="P",
        help="nucleus sampling: the smallest set of tokens with probability P, "
        "(0, 1] (default %(default)g)",
    )
    group.add_argument(
        "--key",
        default=d.key,
        metavar="KEY",
        help="the answer's key: auto (heard from each call) or C, F#m, Bb… (default %(default)s)",
    )
    group.add_argument(
        "--key-lock",
        type=float,
        default=d.key_lock,
        metavar="0..1",
        help="0 = free, 1 = scale tones only, in between out-of-key notes are "
        "made rarer (default %(default)g)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        metavar="N",
        help="random seed: the same call then gets the same answers (default: random)",
    )
