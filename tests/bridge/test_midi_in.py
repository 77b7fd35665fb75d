"""The MIDI input callback: decode, timestamp, enqueue; drops and malformed bytes counted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from queue import Queue
from typing import Any

import mido
import pytest

from bridge.midi_in import MidiInput

Callback = Callable[[tuple[Sequence[int], float], Any], None]


class FakePort:
    """Stands in for rtmidi.MidiIn; ``deliver`` plays the RtMidi thread."""

    def __init__(self, deliver_on_register: list[int] | None = None) -> None:
        self.callback: Callback | None = None
        self.cancelled = 0
        self._on_register = deliver_on_register

    def set_callback(self, func: Callback) -> None:
        self.callback = func
        if self._on_register is not None:  # a message arriving the instant it is registered
            func((self._on_register, 0.0), None)

    def cancel_callback(self) -> None:
        self.cancelled += 1
        self.callback = None

    def deliver(self, data: Sequence[int]) -> None:
        assert self.callback is not None
        self.callback((data, 0.001), None)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 0.5
        return self.t


def test_messages_are_decoded_timestamped_and_queued() -> None:
    port, queue, clock = FakePort(), Queue[tuple[float, mido.Message]](), Clock()
    midi = MidiInput(port, queue, clock)
    port.deliver([0x90, 60, 100])
    port.deliver([0x80, 60, 0])
    port.deliver([0x90, 62, 0])  # note-on velocity 0: passed as is, the capture treats it as off
    port.deliver([0xF8])  # MIDI clock is kept (it drives the tempo)
    port.deliver([0xF2, 0, 1])
    got = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [t for t, _ in got] == [100.5, 101.0, 101.5, 102.0, 102.5]
    assert got[0][1] == mido.Message("note_on", note=60, velocity=100)
    assert got[1][1] == mido.Message("note_off", note=60, velocity=0)
    assert got[2][1] == mido.Message("note_on", note=62, velocity=0)
    assert got[3][1].type == "clock"
    assert got[4][1] == mido.Message("songpos", pos=128)
    assert midi.stats() == {"received": 5, "dropped": 0, "malformed": 0}


@pytest.mark.parametrize(
    "data",
    [[0x90, 60], [0x42], [], [0xF0, 1, 2], [0x90, 60, 200], [0xF7], None, "junk", [0x90, -1, 3]],
)
def test_malformed_input_is_counted_never_raised(data: Any) -> None:
    port, queue = FakePort(), Queue[tuple[float, mido.Message]]()
    midi = MidiInput(port, queue, Clock())
    port.deliver(data)
    port.deliver([0x90, 64, 90])
    assert midi.malformed == 1 and midi.received == 1
    assert queue.get_nowait()[1].note == 64


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    port, queue = FakePort(), Queue[tuple[float, mido.Message]](maxsize=3)
    midi = MidiInput(port, queue, Clock())
    done = threading.Event()

    def rtmidi_thread() -> None:
        for pitch in range(60, 70):
            port.deliver([0x90, pitch, 80])
        done.set()

    worker = threading.Thread(target=rtmidi_thread)
    worker.start()
    worker.join(5.0)
    assert done.is_set(), "the callback blocked on a full queue"
    assert midi.stats() == {"received": 3, "dropped": 7, "malformed": 0}
    assert [queue.get_nowait()[1].note for _ in range(3)] == [60, 61, 62]  # the first ones kept


def test_callback_registered_last_works_for_an_immediate_message() -> None:
    port = FakePort(deliver_on_register=[0x90, 67, 50])
    queue = Queue[tuple[float, mido.Message]]()
    midi = MidiInput(port, queue, Clock())
    assert midi.received == 1 and queue.get_nowait()[1].note == 67


def test_close_cancels_the_callback_once_and_tolerates_a_dead_port() -> None:
    port = FakePort()
    midi = MidiInput(port, Queue(), Clock())
    midi.close()
    midi.close()
    assert port.cancelled == 1

    class DeadPort(FakePort):
        def cancel_callback(self) -> None:
            raise RuntimeError("port already deleted")

    MidiInput(DeadPort(), Queue(), Clock()).close()  # no exception


def test_default_clock_is_monotonic() -> None:
    port, queue = FakePort(), Queue[tuple[float, mido.Message]]()
    MidiInput(port, queue)
    port.deliver([0x90, 60, 1])
    port.deliver([0x90, 61, 1])
    first, second = queue.get_nowait()[0], queue.get_nowait()[0]
    assert second >= first


def test_polled_stamps_come_from_rtmidi_time_not_from_a_late_drain(until: Any) -> None:
    """Issue 9: a drain thread kept from the GIL stamped a whole batch late (its newest message
    "now"), so a phrase's gaps looked longer than they were played.  Stamps follow RtMidi's own
    time line (the deltas), mapped to the clock by the smallest drain - RtMidi offset seen."""
    from collections import deque

    from bridge.midi_poll import RTMIDI_JACK_LAG_S, PolledMidiInput

    class StepQueue:
        """RtMidi's queue; ``release`` makes the next messages available."""

        def __init__(self) -> None:
            self.ready: deque[tuple[list[int], float]] = deque()

        def get_message(self) -> tuple[list[int], float] | None:
            return self.ready.popleft() if self.ready else None

    now = [100.0]
    port = StepQueue()
    inbox: Queue[tuple[float, mido.Message]] = Queue()
    midi = PolledMidiInput(port, inbox, clock=lambda: now[0], poll_s=0.001)
    try:
        port.ready.append(([0x90, 60, 90], 0.0))  # played at 100.0, drained at once
        assert until(lambda: inbox.qsize() == 1)
        # three more, 0.1 s apart in RtMidi's time, drained 0.35 s late in one batch
        now[0] = 100.65
        port.ready.extend([([0x80, 60, 0], 0.1), ([0x90, 62, 90], 0.1), ([0x80, 62, 0], 0.1)])
        assert until(lambda: inbox.qsize() == 4)
        stamps = [inbox.get_nowait()[0] for _ in range(4)]
        assert stamps == pytest.approx([100.0, 100.1, 100.2, 100.3])
        assert until(lambda: midi.heard_until() == pytest.approx(100.65 - RTMIDI_JACK_LAG_S))
    finally:
        midi.close()
