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

Timestamps: RtMidi reports each message's time since the previous one (JACK time); a drained
batch is placed so that its newest message is "now", the others before it by those deltas.

Threads: ``__init__`` and :meth:`close` run in the supervisor's or the main thread; the drain
loop is this class's own thread (stop Event + join).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from queue import Full, Queue
from typing import Protocol

import mido

__all__ = ["POLL_S", "PolledMidiInput", "QueuePort"]

log = logging.getLogger(__name__)

POLL_S = 0.0005
"""How often the queue is drained (seconds): the latency this input path adds at most."""


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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="antiphon-midi-in", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        batch: list[tuple[Sequence[int], float]] = []
        while not self._stop.is_set():
            try:
                while (event := self._port.get_message()) is not None:
                    batch.append(event)
            except Exception as err:  # a port torn down under us: stop quietly
                log.debug("MIDI in: get_message failed: %s", err)
                return
            if batch:
                self._deliver(batch)
                batch.clear()
            self._stop.wait(self._poll_s)

    def _deliver(self, batch: list[tuple[Sequence[int], float]]) -> None:
        now = self._clock()
        behind = 0.0  # seconds the message is older than the batch's newest
        times = [0.0] * len(batch)
        for i in range(len(batch) - 1, -1, -1):
            times[i] = now - behind
            delta = batch[i][1]
            if isinstance(delta, (int, float)) and 0.0 <= delta < 1.0:
                behind += delta
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
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
