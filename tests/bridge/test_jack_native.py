"""The native JACK backend on a fake JACK client: frame clock, rings, input stamps, output offsets.

The fake client runs no thread: a test sets its frame counter and runs the C process callback
for one period, exactly as JACK's realtime thread would; the callback reaches the fake ports
through fake libjack functions (:class:`FakeJackLib`).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from queue import Queue
from typing import Any

import mido
import pytest

from bridge.clock import TempoTracker
from bridge.errors import PortError
from bridge.jack_native import JackMidiPorts
from bridge.jack_native_clock import FrameClock, frame_delta
from bridge.jack_native_process import JackApi, MidiEvent, ProcessCore
from bridge.schedule import PlannedNote, Scheduler

RATE = 48000
PERIOD = 64


class FakeFallback:
    def __init__(self, t: float = 500.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakePort:
    def __init__(self, name: str) -> None:
        self.name = name
        self.incoming: list[tuple[int, bytes]] = []
        self.written: list[tuple[int, bytes]] = []
        self.capacity = 1000  # events one period's buffer takes


ENOBUFS = 105


class FakeJackLib:
    """libjack's MIDI functions over a fake client's two ports, as C function pointers.

    Port ``1`` is the input, ``2`` the output, client ``3``.  Like JACK, every event read hands
    out the same buffer (the core must copy); writes out of frame order, outside the period or
    beyond the buffer's ``capacity`` are refused and recorded in :attr:`misuse`.
    """

    def __init__(self, client: FakeClient, in_port: FakePort, out_port: FakePort) -> None:
        self.client, self.ports = client, {1: in_port, 2: out_port}
        self.shared = (ctypes.c_uint8 * 64)()
        self.misuse: list[str] = []
        u32, vp = ctypes.c_uint32, ctypes.c_void_p
        self._functions = (
            ctypes.CFUNCTYPE(vp, vp, u32)(lambda port, n: port),
            ctypes.CFUNCTYPE(u32, vp)(lambda buf: len(self.ports[buf].incoming)),
            ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(MidiEvent), vp, u32)(self._get),
            ctypes.CFUNCTYPE(None, vp)(lambda buf: self.ports[buf].written.clear()),
            ctypes.CFUNCTYPE(
                ctypes.c_int, vp, u32, ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t
            )(self._write),
            ctypes.CFUNCTYPE(u32, vp)(lambda _client: self.client.last_frame_time),
        )
        self.api = JackApi(*(ctypes.cast(f, ctypes.c_void_p).value for f in self._functions))

    def _get(self, event: Any, buf: int, index: int) -> int:
        offset, data = self.ports[buf].incoming[index]
        self.shared[: len(data)] = list(data)
        event.contents.time, event.contents.size = offset, len(data)
        event.contents.buffer = ctypes.cast(self.shared, ctypes.POINTER(ctypes.c_uint8))
        return 0

    def _write(self, buf: int, time: int, data: Any, size: int) -> int:
        port = self.ports[buf]
        if len(port.written) >= port.capacity:
            return ENOBUFS
        if (port.written and time < port.written[-1][0]) or not 0 <= time < PERIOD:
            self.misuse.append(f"event at offset {time} after {port.written[-1:]}")
            return ENOBUFS
        port.written.append((time, ctypes.string_at(data, size)))
        return 0


def fake_binder(core: ProcessCore, client: Any, in_port: Any, out_port: Any) -> None:
    """The test :data:`~bridge.jack_native.Binder`: the core runs when ``client.cycle()`` does."""
    client.lib = FakeJackLib(client, in_port, out_port)
    core.attach(client.lib.api, 3, 1, 2)
    client.process = core.process


class FakeRegistry:
    def __init__(self, owner: FakeClient) -> None:
        self.owner = owner

    def register(self, shortname: str) -> FakePort:
        port = FakePort(f"{self.owner.name}:{shortname}")
        self.owner.ports.append(port)
        return port


class FakeClient:
    """The part of jack.Client the backend uses; ``cycle`` runs one period."""

    def __init__(self, name: str, start_frame: int = 0) -> None:
        self.name = name
        self.samplerate = RATE
        self.blocksize = PERIOD
        self.frame_time = start_frame
        self.last_frame_time = start_frame
        self.ports: list[FakePort] = []
        self.midi_inports = FakeRegistry(self)
        self.midi_outports = FakeRegistry(self)
        self.process: Callable[[int], int] | None = None
        self.lib: FakeJackLib | None = None
        self.shutdown: Callable[[Any, str], None] | None = None
        self.active = False
        self.closed = False
        self.connections: list[tuple[object, object]] = []
        self.others: list[FakePort] = []

    def set_shutdown_callback(self, callback: Callable[[Any, str], None]) -> None:
        self.shutdown = callback

    def set_xrun_callback(self, callback: Callable[[float], None]) -> None:
        self.xrun = callback

    def activate(self) -> None:
        self.active = True

    def deactivate(self) -> None:
        self.active = False

    def close(self) -> None:
        self.closed = True

    def connect(self, source: object, destination: object) -> None:
        self.connections.append((source, destination))

    def get_ports(
        self,
        name_pattern: str = "",
        is_audio: bool = False,
        is_midi: bool = False,
        is_input: bool = False,
        is_output: bool = False,
    ) -> list[FakePort]:
        return list(self.others)

    def cycle(self, incoming: list[tuple[int, bytes]] | None = None) -> list[tuple[int, bytes]]:
        """Run the period that starts at ``frame_time``; returns what was written."""
        start = self.frame_time
        self.last_frame_time = start
        self.ports[0].incoming = incoming or []
        assert self.process is not None and self.lib is not None
        if self.active:  # JACK calls an active client only
            self.process(PERIOD)
        assert self.lib.misuse == []
        self.frame_time = (start + PERIOD) & 0xFFFF_FFFF
        return list(self.ports[1].written)


@pytest.fixture
def fallback() -> FakeFallback:
    return FakeFallback()


def open_ports(
    fallback: FakeFallback, start_frame: int = 0, **kwargs: Any
) -> tuple[JackMidiPorts, FakeClient]:
    made: list[FakeClient] = []

    def factory(name: str) -> FakeClient:
        made.append(FakeClient(name, start_frame))
        return made[-1]

    kwargs.setdefault("first_period_s", 0)  # the test runs the periods itself
    ports = JackMidiPorts(
        FrameClock(fallback), client_factory=factory, binder=fake_binder, **kwargs
    )
    ports.open()
    return ports, made[0]


# ----- frame arithmetic and the clock ----------------------------------------------------------
def test_frame_delta_crosses_the_wrap() -> None:
    assert frame_delta(5, 0xFFFF_FFFB) == 10
    assert frame_delta(0xFFFF_FFFB, 5) == -10
    assert frame_delta(1000, 10) == 990


def test_frame_clock_runs_on_frames_while_attached(fallback: FakeFallback) -> None:
    frames = [4800]
    clock = FrameClock(fallback)
    t0 = clock()
    clock.attach(lambda: frames[0], RATE)
    assert clock() == pytest.approx(t0)
    fallback.t += 10.0  # the monotonic clock no longer counts
    frames[0] += RATE // 2
    assert clock() == pytest.approx(t0 + 0.5)
    assert clock.to_frame(t0 + 0.5) == 4800 + RATE // 2
    assert clock.to_frame(t0 + 1.0) == 4800 + RATE
    assert clock.from_frame(4800 + 480) == pytest.approx(t0 + 0.01)


def test_frame_clock_unwraps_the_32_bit_counter(fallback: FakeFallback) -> None:
    frames = [0xFFFF_FF00]
    clock = FrameClock(fallback)
    clock.attach(lambda: frames[0], RATE)
    t0 = clock()
    frames[0] = 0x100  # 512 frames later, across the wrap
    assert clock() == pytest.approx(t0 + 512 / RATE)
    assert clock.to_frame(t0 + 600 / RATE) == 600 - 256
    assert clock.from_frame(0xFFFF_FFF0) == pytest.approx(t0 + 240 / RATE)


def test_frame_clock_never_goes_back_across_a_server_restart(fallback: FakeFallback) -> None:
    frames = [RATE * 100]
    clock = FrameClock(fallback)
    clock.attach(lambda: frames[0], RATE)
    frames[0] += RATE * 2
    before = clock()
    clock.detach()
    assert clock.to_frame(before) is None and clock.frame_now() is None
    fallback.t += 1.0
    assert clock() == pytest.approx(before + 1.0)  # runs on the fallback meanwhile
    frames[0] = 0  # the new server counts from zero
    clock.attach(lambda: frames[0], RATE)
    frames[0] = RATE // 4
    assert clock() == pytest.approx(before + 1.25)


def test_frame_clock_holds_while_frames_step_back(fallback: FakeFallback) -> None:
    frames = [10_000]
    clock = FrameClock(fallback)
    clock.attach(lambda: frames[0], RATE)
    frames[0] = 10_480
    later = clock()
    frames[0] = 10_470  # jack_frame_time's estimate corrected backwards
    assert clock() == later


# ----- the C core's rings ------------------------------------------------------------------------
def test_core_output_ring_is_fifo_and_counts_rejects() -> None:
    core = ProcessCore(4, 4)
    assert [core.out_push(i, b"\xf8", True) for i in range(6)] == [1] * 4 + [0] * 2
    assert core.out_pending == 4 and core.stats()["out_rejected"] == 2
    assert core.out_push(9, b"", False) == -1  # nothing to send
    assert core.out_push(9, bytes(17), False) == -1  # longer than a slot
    assert core.in_pop() is None and core.in_watermark() is None
    with pytest.raises(ValueError, match="power of two"):
        ProcessCore(3, 4)


def test_core_copies_the_input_bytes_and_counts_what_it_cannot_keep(
    fallback: FakeFallback,
) -> None:
    ports, client = open_ports(fallback, in_ring=2)
    # the fake hands every event in one shared buffer, as JACK may: the ring must hold copies
    client.cycle([(7, b"\x90\x3c\x40"), (8, b"\xf8"), (9, b"\x80\x3c\x00")])
    client.cycle([(1, b"\xf0\x7d\x01\x02\xf7"), (2, b"\x90\x3c\x40\x00\x00")])
    core = ports._core
    assert core.in_pop() == (7, b"\x90\x3c\x40")
    assert core.in_pop() == (8, b"\xf8")
    assert core.in_pop() is None
    # the third event found the ring full; long SysEx is ignored (as by RtMidi), 5 bytes not
    assert (core.stats()["in_rejected"], core.stats()["in_oversized"]) == (1, 1)
    ports.close()


# ----- input --------------------------------------------------------------------------------------
def test_input_is_stamped_with_its_exact_frame(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback, start_frame=96_000)
    queue: Queue[tuple[float, mido.Message]] = Queue()
    reader = ports.listen(queue)
    try:
        t0 = ports.clock()
        client.cycle([(0, b"\x90\x3c\x64"), (17, b"\x80\x3c\x00")])
        client.cycle([(63, b"\xf8")])
        reader.close()  # joined: it drained everything on its way out
    finally:
        ports.close()
    got = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [m.type for _, m in got] == ["note_on", "note_off", "clock"]
    assert [round((t - t0) * RATE) for t, _ in got] == [0, 17, PERIOD + 63]
    assert reader.stats() == {"received": 3, "dropped": 0, "malformed": 0}
    assert reader.heard_until() == pytest.approx(t0 + 2 * PERIOD / RATE)  # both periods in


def test_input_counts_overflow_malformed_and_full_queue(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback, in_ring=4)
    queue: Queue[tuple[float, mido.Message]] = Queue(maxsize=2)
    reader = ports.listen(queue)
    reader.close()  # drive it by hand
    client.cycle([(i, b"\x90\x3c\x64") for i in range(6)])  # 2 more than the ring holds
    assert reader.drain() == 2  # the queue holds 2
    assert reader.stats() == {"received": 2, "dropped": 4, "malformed": 0}
    client.cycle(
        [(0, b"\x90\x3c"), (1, b"\xf0\x01\x02\x03\xf7"), (2, b"\xfe"), (3, b"\x90\x01\x02\x03")]
    )
    queue.get_nowait()
    reader.drain()
    # truncated note-on: undecodable; 4 bytes: oversized; SysEx and active sensing: ignored
    assert reader.stats() == {"received": 2, "dropped": 4, "malformed": 2}
    ports.close()


# ----- output -------------------------------------------------------------------------------------
def test_output_lands_on_its_exact_frame(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback, start_frame=1000)
    t0 = ports.clock()
    note_on = mido.Message("note_on", note=60, velocity=90)
    note_off = mido.Message("note_off", note=60)
    ports.output.send_at(note_on, t0 + 100 / RATE)  # frame 1100: second period, offset 36
    ports.output.send_at(note_off, t0 + 300 / RATE)  # frame 1300: fifth period, offset 44
    periods = [list(client.cycle()) for _ in range(5)]
    assert periods == [[], [(36, note_on.bin())], [], [], [(44, note_off.bin())]]
    assert ports.core_stats()["out_late"] == 0
    assert ports.output.stats() == {"sent": 2, "failed": 0}
    ports.close()


def test_late_output_goes_at_offset_zero_and_is_counted(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback, start_frame=1000)
    t0 = ports.clock()
    client.cycle()
    client.cycle()  # now at frame 1128
    msg = mido.Message("note_on", note=61, velocity=80)
    ports.output.send_at(msg, t0 + 10 / RATE)
    assert client.cycle() == [(0, msg.bin())]
    stats = ports.core_stats()
    assert (stats["out_late"], stats["out_late_frames_max"]) == (1, 118)
    ports.close()


def test_sent_now_goes_at_the_next_period_start_and_never_overtakes(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback, start_frame=0)
    t0 = ports.clock()
    on = mido.Message("note_on", note=62, velocity=80)
    off = mido.Message("note_off", note=62)
    ports.output.send_at(on, t0 + 150 / RATE)  # handed ahead, due in the third period
    ports.output.send(off)  # a cancel right after: must not come before its note-on
    assert client.cycle() == []
    assert client.cycle() == []
    assert client.cycle() == [(22, on.bin()), (22, off.bin())]
    client.frame_time += 5  # "now" is inside the period that runs next time: offset 0
    passthrough = mido.Message("control_change", control=1, value=3)
    ports.output.send(passthrough)
    client.frame_time -= 5
    assert client.cycle() == [(0, passthrough.bin())]
    assert ports.core_stats()["out_late"] == 0  # "as soon as possible" is never late
    ports.close()


def test_output_across_the_frame_wrap(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback, start_frame=0xFFFF_FFFF - 100)
    t0 = ports.clock()
    msg = mido.Message("note_on", note=63, velocity=70)
    ports.output.send_at(msg, t0 + 140 / RATE)  # frame 39 after the wrap
    written = [list(client.cycle()) for _ in range(3)]
    assert written == [[], [], [(140 - 128, msg.bin())]]
    ports.close()


def test_a_full_port_buffer_retries_next_period(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback)
    client.ports[1].capacity = 2
    t0 = ports.clock()
    msgs = [mido.Message("note_on", note=n, velocity=80) for n in (60, 61, 62)]
    for msg in msgs:
        ports.output.send_at(msg, t0 + 3 / RATE)
    assert [d for _, d in client.cycle()] == [msgs[0].bin(), msgs[1].bin()]
    assert client.cycle() == [(0, msgs[2].bin())]
    assert ports.core_stats()["out_full"] == 1 and ports.core_stats()["out_late"] == 1
    ports.close()


def test_output_ring_full_and_closed_count_as_failed(fallback: FakeFallback) -> None:
    ports, _ = open_ports(fallback, out_ring=2)
    msg = mido.Message("note_on", note=60, velocity=1)
    for _ in range(3):
        ports.output.send_at(msg, ports.clock() + 1.0)
    assert ports.output.stats() == {"sent": 2, "failed": 1}
    ports.close(drain=False)
    ports.output.send(msg)
    assert ports.output.stats() == {"sent": 2, "failed": 2}


def test_close_waits_for_queued_note_offs(fallback: FakeFallback) -> None:
    import threading

    ports, client = open_ports(fallback)
    ports.output.send(mido.Message("note_off", note=60, velocity=0))
    runner = threading.Thread(target=client.cycle)
    runner.start()
    ports.close()
    runner.join()
    assert client.closed and not client.active
    assert ports.core_stats()["out_written"] == 1 and not ports.clock.attached


# ----- lifecycle ----------------------------------------------------------------------------------
def test_shutdown_callback_marks_lost_and_detaches_the_clock(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback)
    assert ports.clock.attached and ports.up
    assert client.shutdown is not None
    client.shutdown(None, "server gone")
    assert ports.lost and not ports.clock.attached
    ports.close()  # no drain wait on a dead server
    assert client.closed


def test_existing_ports_are_connected(fallback: FakeFallback) -> None:
    made: list[FakeClient] = []

    def factory(name: str) -> FakeClient:
        client = FakeClient(name)
        client.others = [FakePort("Ardour:MIDI out"), FakePort("Antiphon:Antiphon In")]
        made.append(client)
        return client

    ports = JackMidiPorts(
        FrameClock(fallback),
        client_factory=factory,
        binder=fake_binder,
        in_existing="ardour",
        first_period_s=0,
    )
    ports.open()
    assert ports.in_shown == "Ardour:MIDI out"
    assert made[0].connections == [("Ardour:MIDI out", made[0].ports[0])]
    ports.close()


def test_open_failure_is_one_port_error_and_closes_the_client(fallback: FakeFallback) -> None:
    made: list[FakeClient] = []

    def factory(name: str) -> FakeClient:
        made.append(FakeClient(name))
        return made[-1]

    ports = JackMidiPorts(
        FrameClock(fallback),
        client_factory=factory,
        binder=fake_binder,
        in_existing="nothing",
        first_period_s=0,
    )
    with pytest.raises(PortError, match="no MIDI input port named 'nothing'"):
        ports.open()
    assert made[0].closed and not ports.up and not ports.clock.attached
    with pytest.raises(PortError, match="needs a name"):
        JackMidiPorts(FrameClock(fallback), in_name=" ")


def test_a_closed_client_leaves_the_core_idle(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback)
    client.cycle()
    ports.close()
    assert ports.core_stats()["cycles"] == 1
    client.active = True  # a stray call after close: the detached core does nothing
    assert client.cycle([(0, b"\x90\x3c\x40")]) == []
    assert ports.core_stats()["cycles"] == 1 and ports._core.in_pending == 0


# ----- the scheduler hands notes ahead -----------------------------------------------------------
class TimedSink:
    """Records ``(now, due, message)``; ``due`` None for "as soon as possible"."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.log: list[tuple[float, float | None, mido.Message]] = []

    def send(self, msg: mido.Message) -> None:
        self.log.append((self.clock(), None, msg))

    def send_at(self, msg: mido.Message, due: float | None) -> None:
        self.log.append((self.clock(), due, msg))


def test_scheduler_hands_notes_ahead_with_their_due_time(fake_clock: Any, events: Any) -> None:
    sink = TimedSink(fake_clock)
    tempo = TempoTracker(120.0, fake_clock)
    sched = Scheduler(sink, tempo, events, fake_clock, wait=fake_clock.wait, lookahead_s=0.01)
    t0 = fake_clock()
    assert sched.open_answer(1, tempo.beat_at(t0) + 1.0, 1)  # 0.5 s from now
    sched.add_notes(1, [PlannedNote(0.0, 60, 100, 0.5), PlannedNote(1.0, 62, 90, 0.5)])
    assert sched.pump() == pytest.approx(t0 + 0.49)
    assert sink.log == []
    fake_clock.advance(0.49)
    assert sched.pump() == pytest.approx(t0 + 0.74)  # the note-off, handed 10 ms early
    on = mido.Message("note_on", note=60, velocity=100)
    assert sink.log == [(pytest.approx(t0 + 0.49), pytest.approx(t0 + 0.5), on)]
    fake_clock.advance(0.25)
    sched.pump()
    off = mido.Message("note_off", note=60, velocity=0)
    assert sink.log[-1][1:] == (pytest.approx(t0 + 0.75), off)
    fake_clock.advance(0.25)  # the second note-on is handed over, due in 10 ms...
    sched.pump()
    assert sink.log[-1][1] == pytest.approx(t0 + 1.0)
    sched.cancel_answer(1)  # ...and cancelled: its note-off goes "now", after it
    assert sink.log[-1][1:] == (None, mido.Message("note_off", note=62, velocity=0))
    assert sched.sounding() == []


def test_scheduler_without_a_placing_sink_sends_when_due(
    fake_clock: Any, events: Any, sink: Any
) -> None:
    tempo = TempoTracker(120.0, fake_clock)
    sched = Scheduler(sink, tempo, events, fake_clock, wait=fake_clock.wait, lookahead_s=0.01)
    t0 = fake_clock()
    sched.open_answer(1, tempo.beat_at(t0) + 1.0, 1)
    sched.add_notes(1, [PlannedNote(0.0, 60, 100, 0.5)])
    assert sched.pump() == pytest.approx(t0 + 0.5)  # no send_at: the lookahead is ignored
    with pytest.raises(ValueError, match="lookahead_s"):
        Scheduler(sink, tempo, events, fake_clock, lookahead_s=-1.0)


def test_a_late_period_holds_its_output_and_owes_note_offs(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback)
    on = mido.Message("note_on", note=60, velocity=90)
    off = mido.Message("note_off", note=60, velocity=0)
    ports.output.send(on)
    assert client.cycle() == [(0, on.bin())]
    ports.output.send(mido.Message("note_on", note=62, velocity=90))
    client.frame_time += 3 * PERIOD  # three periods went by without the callback
    assert client.cycle() == []  # late: held back, and the last note-on may have been re-read
    assert ports.core_stats()["skipped"] == 1
    assert [d for _, d in client.cycle()] == [mido.Message("note_on", note=62, velocity=90).bin()]
    ports.output.send(off)
    assert client.cycle() == [(0, off.bin())] * 4  # once, plus once per missed period
    assert ports.core_stats()["extra_note_offs"] == 3
    ports.output.send(off)
    assert client.cycle() == [(0, off.bin())]  # paid off
    ports.close()


def test_a_period_handled_by_a_late_call_is_not_read_twice(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback)
    queue: Queue[tuple[float, mido.Message]] = Queue()
    reader = ports.listen(queue)
    reader.close()
    tick = b"\xf8"
    client.cycle([(10, tick)])
    client.frame_time -= PERIOD  # JACK calls again for the same period (the last call was late)
    ports.output.send(mido.Message("note_on", note=60, velocity=9))
    client.cycle([(10, tick)])
    assert reader.drain() == 1 and ports.core_stats()["repeated"] == 1  # one tick, not two
    assert ports.output.pending == 1  # the note goes in the next period, not twice
    assert client.cycle() == [(0, mido.Message("note_on", note=60, velocity=9).bin())]
    ports.close()


def test_output_is_held_for_one_period_at_most(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback)
    client.cycle()
    msg = mido.Message("note_on", note=64, velocity=70)
    ports.output.send(msg)
    client.frame_time += PERIOD
    assert client.cycle() == []  # a gap: held
    client.frame_time += PERIOD
    assert client.cycle() == [(0, msg.bin())]  # another gap at once: written all the same
    assert ports.core_stats()["skipped"] == 1
    ports.close()


def test_an_input_buffer_handed_over_again_is_left_out(fallback: FakeFallback) -> None:
    ports, client = open_ports(fallback)
    queue: Queue[tuple[float, mido.Message]] = Queue()
    reader = ports.listen(queue)
    reader.close()
    client.cycle([(10, b"\xf8")])
    client.cycle([(10, b"\xf8")])  # the player missed a period: its last buffer again
    client.cycle([(30, b"\xf8")])
    client.cycle([])
    client.cycle([(30, b"\xf8")])  # not the period right before: a real tick
    assert reader.drain() == 3 and ports.core_stats()["input_repeats"] == 1
    ports.close()


def test_the_earliest_exact_time_is_a_period_boundary_after_the_hand_off(
    fallback: FakeFallback,
) -> None:
    ports, client = open_ports(fallback, start_frame=1000)
    t = ports.clock()
    assert ports.earliest_exact(t) == t  # no period ran yet: nothing known
    client.cycle()  # the period at 1000 ran; now is frame 1064, the next period's start
    t = ports.clock()
    # 1064 + 48 frames of hand-off (1 ms) → the boundary at 1128
    assert ports.earliest_exact(t) == pytest.approx(t + 64 / RATE)
    client.frame_time += 10  # 1074 + 48 → 1128 still
    assert ports.earliest_exact(ports.clock()) == pytest.approx(t + 64 / RATE)
    client.frame_time += 10  # 1084 + 48 = 1132 → 1192
    assert ports.earliest_exact(ports.clock()) == pytest.approx(t + 128 / RATE)
    # a note handed over then lands on it exactly
    msg = mido.Message("note_on", note=60, velocity=90)
    ports.output.send_at(msg, ports.earliest_exact(ports.clock()))
    client.frame_time = 1064
    assert client.cycle() == [] and client.cycle() == []  # the periods at 1064 and 1128
    assert client.cycle() == [(0, msg.bin())]  # 1192: at its first frame
    assert ports.core_stats()["out_late"] == 0
    ports.close()


def test_the_clock_follows_the_client_only_once_the_server_runs_it(fallback: FakeFallback) -> None:
    made: list[FakeClient] = []

    def factory(name: str) -> FakeClient:
        # PipeWire's JACK answers jack_frame_time with another count until the client runs
        made.append(FakeClient(name, start_frame=812_672_475))
        return made[-1]

    def run_one_period_on_activate(core: ProcessCore, client: Any, *ports: Any) -> None:
        fake_binder(core, client, *ports)
        activate = client.activate

        def activated() -> None:
            activate()
            client.frame_time = client.last_frame_time = 6400  # the server's count now
            client.cycle()

        client.activate = activated

    ports = JackMidiPorts(
        FrameClock(fallback), client_factory=factory, binder=run_one_period_on_activate
    )
    ports.open()
    assert ports.clock.frame_now() == 6464  # not stuck at the count from before
    ports.close()
    never = JackMidiPorts(
        FrameClock(fallback), client_factory=factory, binder=fake_binder, first_period_s=0.05
    )
    with pytest.raises(PortError, match=r"did not run the client 'Antiphon' within 0\.05 s"):
        never.open()
    assert made[-1].closed and not never.up and not never.clock.attached
