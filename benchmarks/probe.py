"""An external JACK MIDI client that plays into the bridge and records what comes back.

Every event is stamped in JACK frame time (the server's sample clock), so "sent" and "received"
share one clock that neither Python nor the bridge can skew.  Threads: the JACK process thread
runs :meth:`JackProbe._process` (writes due events, records incoming ones, never blocks); the
benchmark's main thread schedules, reads and closes.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import jack

__all__ = ["JackProbe", "Received"]


@dataclass(frozen=True)
class Received:
    """One MIDI message that arrived, at ``frame`` (JACK frame time)."""

    frame: int
    data: bytes


class JackProbe:
    """One JACK client with a MIDI out port (into the bridge) and a MIDI in port (from it)."""

    def __init__(self, name: str, server: str) -> None:
        self.client = jack.Client(name, no_start_server=True, servername=server)
        self.out_port = self.client.midi_outports.register("out")
        self.in_port = self.client.midi_inports.register("in")
        self._pending: deque[tuple[int, bytes]] = deque()  # (frame, data), frames ascending
        self._received: deque[Received] = deque()
        self._sent: deque[tuple[int, bytes]] = deque()
        self._lock = threading.Lock()
        self.client.set_process_callback(self._process)
        self.client.activate()

    @property
    def rate(self) -> int:
        return int(self.client.samplerate)

    @property
    def period(self) -> int:
        return int(self.client.blocksize)

    def now(self) -> int:
        """The current frame time, estimated from outside the process thread."""
        return int(self.client.frame_time)

    def seconds(self, frames: float) -> float:
        return frames / self.rate

    def connect(self, bridge_in: str, bridge_out: str) -> None:
        """Wire our out → ``bridge_in`` and ``bridge_out`` → our in (full JACK port names)."""
        self.client.connect(self.out_port, bridge_in)
        self.client.connect(bridge_out, self.in_port)

    def schedule(self, events: list[tuple[float, bytes]], *, lead_s: float = 0.0) -> int:
        """Queue ``(seconds_from_start, midi_bytes)`` to be written starting two periods from now
        (plus ``lead_s``); returns the start frame.  Events are written exactly at their frame."""
        start = self.now() + 2 * self.period + round(lead_s * self.rate)
        frames = sorted((start + round(t * self.rate), bytes(d)) for t, d in events)
        with self._lock:
            merged = sorted([*self._pending, *frames])
            self._pending.clear()
            self._pending.extend(merged)
        return start

    def idle(self) -> bool:
        """True when every scheduled event has been written."""
        return not self._pending

    def take_received(self) -> list[Received]:
        """Everything received since the last call, oldest first."""
        out = []
        while self._received:
            out.append(self._received.popleft())
        return out

    def take_sent(self) -> list[tuple[int, bytes]]:
        """``(frame, data)`` of everything written since the last call."""
        out = []
        while self._sent:
            out.append(self._sent.popleft())
        return out

    def close(self) -> None:
        """Deactivate and close the client (its ports disappear)."""
        try:
            self.client.deactivate()
        finally:
            self.client.close()

    # ----- JACK process thread -------------------------------------------------------------
    def _process(self, frames: int) -> None:
        start = self.client.last_frame_time
        for offset, data in self.in_port.incoming_midi_events():
            self._received.append(Received(start + offset, bytes(data)))
        self.out_port.clear_buffer()
        if not self._pending or not self._lock.acquire(blocking=False):
            return
        try:
            end = start + frames
            while self._pending and self._pending[0][0] < end:
                frame, data = self._pending.popleft()
                offset = max(0, frame - start)
                self.out_port.write_midi_event(offset, data)
                self._sent.append((start + offset, data))
        finally:
            self._lock.release()
