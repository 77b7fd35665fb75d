"""MIDI in: the RtMidi callback that timestamps each message and hands it to the engine.

The callback runs on RtMidi's thread (JACK's realtime process thread on JACK), so it does the
least possible: read the clock, decode the bytes with mido, ``put_nowait`` ``(t, message)`` into
the engine's bounded queue.  It never blocks and never raises: a full queue counts a drop, bytes
mido cannot decode count as malformed.  It is registered last in ``__init__``, after every
attribute it touches exists (as mido's rtmidi backend does).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from queue import Full, Queue
from typing import Any, Protocol

import mido

__all__ = ["CallbackPort", "MidiInput"]

log = logging.getLogger(__name__)


class CallbackPort(Protocol):
    """What :class:`MidiInput` needs from a port: rtmidi's ``MidiIn`` has it; tests fake it."""

    def set_callback(self, func: Callable[[tuple[Sequence[int], float], Any], None]) -> None: ...

    def cancel_callback(self) -> None: ...


class MidiInput:
    """Feeds ``queue`` with ``(clock(), mido.Message)`` for every message arriving on ``port``.

    Counters (read from any thread; written only by the callback): ``received`` (decoded and
    queued), ``dropped`` (queue full), ``malformed`` (not a MIDI message mido understands).
    :meth:`close` (main thread) unregisters the callback; closing the port is its owner's job.
    """

    def __init__(
        self,
        port: CallbackPort,
        queue: Queue[tuple[float, mido.Message]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._port = port
        self._queue = queue
        self._clock = clock
        self.received = 0
        self.dropped = 0
        self.malformed = 0
        self._closed = False
        port.set_callback(self._on_message)  # last: everything the callback uses exists

    def _on_message(self, event: tuple[Sequence[int], float], data: Any = None) -> None:
        """RtMidi thread: decode, timestamp, enqueue. Never blocks, never raises."""
        t = self._clock()
        try:
            message = mido.Message.from_bytes(event[0])
        except Exception:  # ValueError, TypeError, IndexError: anything undecodable is counted
            self.malformed += 1
            return
        try:
            self._queue.put_nowait((t, message))
        except Full:
            self.dropped += 1
            return
        self.received += 1

    def stats(self) -> dict[str, int]:
        """Counters as a dict (any thread)."""
        return {"received": self.received, "dropped": self.dropped, "malformed": self.malformed}

    def close(self) -> None:
        """Stop delivering messages (main thread). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._port.cancel_callback()
        except Exception as err:  # a port already torn down: nothing left to cancel
            log.debug("cancel_callback failed: %s", err)
        log.debug(
            "MIDI in: %d messages, %d dropped (queue full), %d malformed",
            self.received,
            self.dropped,
            self.malformed,
        )
