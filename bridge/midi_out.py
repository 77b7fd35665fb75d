"""MIDI out: the sink the scheduler (and passthrough) send messages to.

:class:`MidiSink` is the whole interface the rest of the bridge sees, so tests swap in a recording
fake.  :class:`MidiOutput` wraps an RtMidi output port: ``send`` is safe from any thread (one lock
around the port) and never raises — a failed send is counted and logged (first failure, then every
100th) so that a vanished port cannot take the scheduler thread down with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import mido

__all__ = ["MidiOutput", "MidiSink", "SendPort"]

log = logging.getLogger(__name__)


class MidiSink(Protocol):
    """Where outgoing MIDI goes (scheduler thread, engine control thread)."""

    def send(self, msg: mido.Message) -> None: ...


class SendPort(Protocol):
    """What :class:`MidiOutput` needs: python-rtmidi's ``MidiOut`` has it; tests fake it."""

    def send_message(self, message: Sequence[int]) -> None: ...


class MidiOutput:
    """A thread-safe :class:`MidiSink` on an RtMidi output port that never raises.

    Counters: ``sent``, ``failed`` (the port raised, or the sink was closed).  ``close()`` (main
    thread, after the scheduler stopped) makes later sends count as failed; closing the port
    itself is its owner's job (:meth:`bridge.ports.OpenedPort.close`).
    """

    def __init__(self, port: SendPort) -> None:
        self._port = port
        self._lock = threading.Lock()
        self._closed = False
        self.sent = 0
        self.failed = 0

    def send(self, msg: mido.Message) -> None:
        """Send one message now (any thread). Never raises."""
        with self._lock:
            if self._closed:
                self._failure(msg, "output closed")
                return
            try:
                self._port.send_message(msg.bytes())
            except Exception as err:  # RtMidiError, a port gone away, a bad message object
                self._failure(msg, str(err) or type(err).__name__)
                return
            self.sent += 1

    def _failure(self, msg: object, why: str) -> None:
        self.failed += 1
        if self.failed == 1 or self.failed % 100 == 0:
            log.warning("MIDI out: could not send %s: %s (%d failures)", msg, why, self.failed)

    def stats(self) -> dict[str, int]:
        """Counters as a dict (any thread)."""
        return {"sent": self.sent, "failed": self.failed}

    def close(self) -> None:
        """Refuse further sends (main thread). Idempotent."""
        with self._lock:
            self._closed = True
