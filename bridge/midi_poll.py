"""MIDI in on JACK: RtMidi's own queue, drained by a thread, so JACK's realtime thread never waits.

A python-rtmidi callback runs on the MIDI system's thread and must take Python's GIL first.  On
JACK that thread is the realtime process thread: while another Python thread holds the GIL the
cycle runs late and JACK drops that cycle's input (measured: 2-9 % of a 10k messages/s flood on
a loaded two-core machine).  :class:`PolledMidiInput` registers no callback: RtMidi's C++ code
queues each message in its ring buffer (``INPUT_QUEUE_LIMIT`` messages, see
:func:`bridge.ports.open_input`) without touching Python, and this module's thread drains it
every ``poll_s`` seconds into the engine's bounded queue — the same decode, timestamp and
counters as :class:`bridge.midi_in.MidiInput`, at the cost of up to ``poll_s`` (0.5 ms) of
latency and a few percent of one core while idle.

Timestamps: RtMidi reports each message's time since the previous one, taken in JACK's process
callback (``jack_get_time``, the monotonic clock in microseconds).  Their running sum is RtMidi's
own time line; it maps to the engine's clock by the smallest ``drain time - RtMidi time`` seen
(a message is drained at or after it arrived, never before), so a drain thread kept from the GIL
stamps nothing late.  :meth:`PolledMidiInput.heard_until` is the watermark the engine judges a
phrase's end by: everything played before it has been queued (the start of the last complete
drain, less :data:`RTMIDI_JACK_LAG_S` for the JACK cycle that hands input to RtMidi).

Threads: ``__init__`` and :meth:`close` run in the supervisor's or the main thread; the drain
loop is this class's own thread (stop Event + join).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from queue import Full, Queue
from typing import Protocol

import mido

from bridge.worker import Worker

__all__ = ["POLL_S", "PolledMidiInput", "QueuePort"]

log = logging.getLogger(__name__)

POLL_S = 0.0005
"""How often the queue is drained (seconds): the latency this input path adds at most."""

RTMIDI_JACK_LAG_S = 0.003
"""How long after it was played a message waits in JACK before RtMidi queues it: the period it
was played in and the cycle that reads it (two periods of 64 frames at 48 kHz, rounded up)."""

_OFFSET_CREEP = 1e-4
"""How fast the RtMidi → clock offset may grow (s/s): the two clocks are both monotonic, this
only lets a stale minimum follow a slow drift."""


class QueuePort(Protocol):
    """What :class:`PolledMidiInput` needs: rtmidi's ``MidiIn`` has it; tests fake it."""

    def get_message(self) -> tuple[Sequence[int], float] | None: ...


class PolledMidiInput:
    """Feeds ``queue`` with ``(clock(), mido.Message)`` for every message RtMidi queued on
    ``port``.  Counters (any thread reads them): ``received``, ``dropped`` (queue full),
    ``malformed`` (bytes mido cannot decode).  :meth:`close` stops and joins the thread."""

    def __init__(
        self,
        port: QueuePort,
        queue: Queue[tuple[float, mido.Message]],
        clock: Callable[[], float] = time.monotonic,
        *,
        poll_s: float = POLL_S,
    ) -> None:
        self._port = port
        self._queue = queue
        self._clock = clock
        self._poll_s = poll_s
        self.received = 0
        self.dropped = 0
        self.malformed = 0
        self._rt_time: float | None = None  # RtMidi's time of the last message (sum of deltas)
        self._offset: float | None = None  # clock time - RtMidi time, smallest seen
        self._offset_at = 0.0
        self._heard_until = clock() - RTMIDI_JACK_LAG_S
        self.worker = Worker("antiphon-midi-in", self._run)
        self.worker.start()

    def _run(self) -> None:
        batch: list[tuple[Sequence[int], float]] = []
        while not self.worker.stopping.is_set():
            began = self._clock()
            try:
                while (event := self._port.get_message()) is not None:
                    batch.append(event)
            except Exception as err:  # a port torn down under us: stop quietly
                log.debug("MIDI in: get_message failed: %s", err)
                return
            if batch:
                self._deliver(batch, began)
                batch.clear()
            self._heard_until = began - RTMIDI_JACK_LAG_S
            self.worker.stopping.wait(self._poll_s)

    def heard_until(self) -> float:
        """Every message played before this time (engine clock) is in the queue (any thread)."""
        return self._heard_until

    def _stamps(self, batch: list[tuple[Sequence[int], float]], now: float) -> list[float]:
        """Engine-clock times of ``batch`` from RtMidi's deltas (see the module docstring)."""
        rt_times = []
        rt = self._rt_time
        for _, delta in batch:
            step = float(delta) if isinstance(delta, (int, float)) and delta >= 0.0 else 0.0
            rt = 0.0 if rt is None else rt + step
            rt_times.append(rt)
        self._rt_time = rt
        seen = now - rt_times[-1]  # the newest arrived no later than now
        if self._offset is None:
            self._offset = seen
        else:
            creep = max(0.0, now - self._offset_at) * _OFFSET_CREEP
            self._offset = min(self._offset + creep, seen)
        self._offset_at = now
        return [min(now, r + self._offset) for r in rt_times]

    def _deliver(self, batch: list[tuple[Sequence[int], float]], now: float) -> None:
        times = self._stamps(batch, now)
        for (data, _), t in zip(batch, times, strict=True):
            try:
                message = mido.Message.from_bytes(data)
            except Exception:  # ValueError, TypeError, IndexError: anything undecodable
                self.malformed += 1
                continue
            try:
                self._queue.put_nowait((t, message))
            except Full:
                self.dropped += 1
                continue
            self.received += 1

    def stats(self) -> dict[str, int]:
        """Counters as a dict (any thread)."""
        return {"received": self.received, "dropped": self.dropped, "malformed": self.malformed}

    def close(self, timeout: float = 2.0) -> None:
        """Stop draining (joined). Idempotent."""
        self.worker.stop(timeout)
