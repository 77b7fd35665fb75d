"""The interfaces between the engine and its control and event transports.

:class:`Controller` is what a control surface (OSC, MIDI CC bindings) may do to the bridge; the
engine implements it.  :class:`AnswerEvents` is where the scheduler reports an answer as it plays;
:class:`~bridge.osc.OscEvents` sends them over OSC, :class:`NullEvents` drops them.  Kept apart
from :mod:`bridge.osc` so the engine and the scheduler depend on no transport (python-osc is
imported only by ``bridge.osc``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from bridge.config import Settings

__all__ = ["AnswerEvents", "Controller", "NullEvents"]


class Controller(Protocol):
    """What OSC (and MIDI CC bindings) may do to the bridge; the engine implements it.

    Called from the OSC thread.  ``update_settings`` raises ConfigError and ``swap_model``
    ModelError (the old model stays); neither changes anything on error.
    """

    def update_settings(self, **changes: Any) -> Settings: ...

    def trigger(self) -> None: ...

    def stop_answer(self) -> None: ...

    def panic(self) -> None: ...

    def swap_model(self, name: str) -> str: ...

    def status(self) -> dict[str, object]: ...


class AnswerEvents(Protocol):
    """Where the scheduler reports an answer as it plays (OSC out, or nothing). Never raises.
    Called from the scheduler thread."""

    def note(self, pitch: int, velocity: int, duration_beats: float) -> None: ...

    def answer_begin(self, answer_id: int) -> None: ...

    def answer_end(self, answer_id: int) -> None: ...

    def answer_plan(self, answer_id: int, notes: Iterable[object]) -> None: ...


class NullEvents:
    """AnswerEvents that go nowhere (no ``--osc-out``)."""

    def note(self, pitch: int, velocity: int, duration_beats: float) -> None:
        pass

    def answer_begin(self, answer_id: int) -> None:
        pass

    def answer_end(self, answer_id: int) -> None:
        pass

    def answer_plan(self, answer_id: int, notes: Iterable[object]) -> None:
        pass

    def close(self) -> None:
        pass
