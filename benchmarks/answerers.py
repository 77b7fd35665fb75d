"""The three ways section 6 answers a call: Antiphon's model, the reference method's window net
and a Markov chain — each returning grid notes, all sampled by the bridge's own sampler
(temperature, top-p) so only the model differs.  Main thread only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bridge.tokens import Note, TokenScheme

__all__ = ["MarkovStream", "markov_answer", "notes_of", "reference_answer", "symbol_notes"]

TOP_P = 0.95  # the bridge's default
_PITCH = re.compile(r"^([A-G]#?)(-?\d+)$")
_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def notes_of(positioned: Any, scheme: TokenScheme) -> list[Note]:
    """``(position, event)`` pairs from :func:`bridge.generate.answer_events` → grid notes."""
    notes: set[Note] = set()
    for position, event in positioned:
        velocity = scheme.bucket_velocity(event.velocity_bucket)
        for pitch in event.pitches:
            notes.add(Note(position, pitch, event.duration, velocity))
    return sorted(notes)


class MarkovStream:
    """Duck-types :class:`bridge.generate.EventStream` for a :class:`training.markov.MarkovModel`
    on Antiphon tokens: each token sampled from ``P(· | last order tokens)`` under the grammar
    mask, so :func:`bridge.generate.answer_events` cuts it exactly like the LSTM's stream."""

    def __init__(
        self,
        markov: Any,
        scheme: TokenScheme,
        call: Sequence[Note],
        *,
        temperature: float,
        rng: np.random.Generator,
    ) -> None:
        from bridge.generate import call_tokens
        from bridge.tokens import Decoder

        self.markov = markov
        self.scheme = scheme
        self.temperature = temperature
        self.rng = rng
        tokens, self.call_events = call_tokens(scheme, call)
        self.tokens = list(tokens)
        self._decoder = Decoder(scheme)
        for token in self.tokens:
            self._decoder.feed(token)

    def next_event(self) -> Any:
        from bridge.sampling import sample

        order = self.markov.order
        while True:
            context = self.tokens[len(self.tokens) - order :] if order else []
            with np.errstate(divide="ignore"):
                scores = np.log(self.markov.distribution(context))
            token = sample(
                scores,
                self.scheme.allowed(self._decoder.last),
                temperature=self.temperature,
                top_p=TOP_P,
                rng=self.rng,
            )
            self.tokens.append(token)
            event = self._decoder.feed(token)
            if event is not None:
                return event


def markov_answer(
    markov: Any,
    scheme: TokenScheme,
    call: Sequence[Note],
    *,
    bars: int,
    beats_per_bar: int,
    temperature: float,
    rng_seed: int,
) -> list[Note]:
    """A Markov chain's answer of ``bars`` bars, cut like the bridge cuts its answers."""
    from bridge.generate import answer_events

    stream = MarkovStream(
        markov, scheme, call, temperature=temperature, rng=np.random.default_rng(rng_seed)
    )
    return notes_of(answer_events(stream, bars, "bars", beats_per_bar=beats_per_bar), scheme)  # type: ignore[arg-type]


def symbol_notes(symbols: Sequence[str], step: int) -> list[Note]:
    """Reference-tokenization symbols → notes, one onset every ``step`` grid steps, each
    ``step`` long (the reference has no durations); chords of pitch classes sit in octave 4
    (MIDI 60–71), where music21 puts them; ``<unk>`` is silence."""
    notes = []
    for i, symbol in enumerate(symbols):
        match = _PITCH.match(symbol)
        if match:
            pitch = _NAMES.index(match.group(1)) + 12 * (int(match.group(2)) + 1)
            if 0 <= pitch <= 127:
                notes.append(Note(i * step, pitch, step))
        elif symbol and all(part.isdigit() for part in symbol.split(".")):
            notes.extend(Note(i * step, 60 + int(pc) % 12, step) for pc in symbol.split("."))
    return notes


def reference_answer(
    runner: Any,
    call: Sequence[Note],
    *,
    bars: int,
    beats_per_bar: int,
    steps_per_beat: int,
    temperature: float,
    rng_seed: int,
) -> list[Note]:
    """The reference method: slide a window over the call's symbols, predict, sample, append.

    A call shorter than the window is repeated to fill it (the reference needs a full window).
    """
    from bridge.sampling import sample
    from training.reference import STEP_BEATS, ReferenceVocabulary, reference_symbols

    vocabulary = ReferenceVocabulary(tuple(runner.vocabulary))
    ids = vocabulary.ids(reference_symbols(call))
    if ids.size == 0:
        return []
    window = np.resize(ids[::-1], runner.window)[::-1].astype(np.int64)  # tile, ends with call
    rng = np.random.default_rng(rng_seed)
    allowed = np.ones(vocabulary.size, bool)
    allowed[0] = False  # never <unk>
    count = round(bars * beats_per_bar / STEP_BEATS)
    out: list[str] = []
    for _ in range(count):
        probs = runner.predict(window[None, :])[0]
        with np.errstate(divide="ignore"):
            token = sample(np.log(probs), allowed, temperature=temperature, top_p=TOP_P, rng=rng)
        out.append(vocabulary.symbols[token])
        window = np.append(window[1:], token)
    return symbol_notes(out, round(STEP_BEATS * steps_per_beat))


def reference_model_path(options: Any, context: dict[str, object]) -> tuple[Path | None, str]:
    """The reference-method model to use: shipped, else trained in section 4 of this run."""
    if options.reference_model.is_file():
        return options.reference_model, "shipped"
    trained = context.get("reference_onnx")
    if isinstance(trained, Path) and trained.is_file():
        return trained, "trained in section 4 of this run"
    return None, "none available (ship models/reference-seed.onnx or run section 4)"
