"""MidiOutput: thread-safe sends that never raise; failures counted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import mido
import pytest

from bridge.midi_out import MidiOutput


class FakeOut:
    """Stands in for rtmidi.MidiOut; fails if two threads are inside send_message at once.

    ``hold_s``: how long a send stays inside (sleeping gives the other threads the GIL, so an
    unserialised caller is caught re-entering)."""

    def __init__(self, fail: bool = False, hold_s: float = 0.0) -> None:
        self.sent: list[list[int]] = []
        self.fail = fail
        self.hold_s = hold_s
        self._inside = False

    def send_message(self, message: Sequence[int]) -> None:
        assert not self._inside, "send_message re-entered from two threads"
        self._inside = True
        try:
            if self.fail:
                raise OSError("port vanished")
            if self.hold_s:
                time.sleep(self.hold_s)
            self.sent.append(list(message))
        finally:
            self._inside = False


def test_sends_the_message_bytes() -> None:
    port = FakeOut()
    out = MidiOutput(port)
    out.send(mido.Message("note_on", channel=2, note=60, velocity=99))
    out.send(mido.Message("control_change", channel=0, control=123, value=0))
    assert port.sent == [[0x92, 60, 99], [0xB0, 123, 0]]
    assert out.stats() == {"sent": 2, "failed": 0}


def test_failures_are_counted_and_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    out = MidiOutput(FakeOut(fail=True))
    with caplog.at_level(logging.WARNING, logger="bridge.midi_out"):
        for _ in range(150):
            out.send(mido.Message("note_off", note=60))
    assert out.stats() == {"sent": 0, "failed": 150}
    warnings = [r for r in caplog.records if "port vanished" in r.getMessage()]
    assert len(warnings) == 2  # the first failure and the 100th


def test_a_bad_message_object_is_a_failure_not_an_exception() -> None:
    out = MidiOutput(FakeOut())
    out.send(cast(Any, "not a message"))
    assert out.failed == 1


def test_after_close_sends_are_refused() -> None:
    port = FakeOut()
    out = MidiOutput(port)
    out.close()
    out.close()
    out.send(mido.Message("note_on", note=60))
    assert port.sent == [] and out.failed == 1


def test_concurrent_sends_are_serialised() -> None:
    port = FakeOut(hold_s=0.0002)  # without MidiOutput's lock, re-entered within a few sends
    out = MidiOutput(port)
    barrier = threading.Barrier(4)

    def play(channel: int) -> None:
        barrier.wait()
        for pitch in range(100):
            out.send(mido.Message("note_on", channel=channel, note=pitch, velocity=1))

    threads = [threading.Thread(target=play, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out.sent == 400 and out.failed == 0
    for channel in range(4):
        assert [m[1] for m in port.sent if m[0] == 0x90 | channel] == list(range(100))
