"""The native JACK backend: one JACK client, sample-accurate MIDI in and out.

RtMidi's JACK backend stamps input when a Python thread drains its queue and sends output
"now", so both land on period boundaries, and it schedules on the monotonic clock while the DAW
lives in JACK frames.  :class:`JackMidiPorts` uses JACK-Client (the system's libjack through
cffi, so it also runs under PipeWire's JACK: ``pw-jack antiphon bridge``):

* one client (``Antiphon``) with the MIDI ports ``Antiphon In`` and ``Antiphon Out``, so
  ``jack_lsp`` and a DAW's connection list show ``Antiphon:Antiphon In`` — one device with two
  ports, as DAWs show plugins and hardware (RtMidi needs a client per port);
* the engine's clock is the client's frame counter (:class:`~bridge.jack_native_clock.FrameClock`):
  input, tempo grid and scheduling all happen in frame time, so answers stay on the DAW's grid
  after xruns;
* the process callback is C (:mod:`bridge.jack_native_process`, ``bridge/_jack_process.c``):
  JACK's realtime thread never waits for Python's GIL, so a busy Python thread or a loaded
  machine cannot make it miss its period;
* input: the callback copies each event and its exact frame time (``last_frame_time +
  offset``) into the core's lock-free input ring; :class:`JackMidiInput`'s thread decodes it,
  converts the frame to the engine's clock once and feeds the engine's queue like
  :class:`~bridge.midi_poll.PolledMidiInput`;
* output: :class:`JackOutput` is the sink; the scheduler hands it notes ahead of time
  (:meth:`JackOutput.send_at` with their due time, :data:`LOOKAHEAD_PERIODS` periods early)
  through the core's output ring, and the callback writes each at its exact frame offset in the
  period where it is due.  Messages sent "now" (passthrough, panic, note-offs on stop) go out at
  the start of the next period; the wire order is always the order of the calls (frames never
  decrease), so a note-off can never overtake its note-on.

The callback never blocks, never logs and never allocates; bad input is counted, not raised.
A callback can still run late (the machine is overloaded, the server's own thread is late):
on an asynchronous JACK server the clients after it then read its last buffer again (its
note-ons repeat) or lose what it writes late.  So a callback that finds periods missing holds
its output for the next period (counted: ``jack_late_periods``) and owes one extra note-off per
missed period for each note-on of its last buffer, written with that key's next note-off
(``jack_extra_note_offs``): a receiver that stacks repeated note-ons still ends every one.  The
same happens to the clients before it: an input buffer identical to the previous period's is
that client's last buffer handed over again and is left out (``jack_input_repeats``).

Threads: :meth:`JackMidiPorts.open` / :meth:`~JackMidiPorts.close` run in the main or the
supervisor's watcher thread; the C callback in JACK's realtime thread;
the shutdown and xrun callbacks in libjack's notification thread; :class:`JackOutput` is called
by the scheduler and control threads; :class:`JackMidiInput` has its own thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from queue import Full, Queue
from typing import Any, Protocol

import mido

from bridge.errors import PortError
from bridge.jack_native_clock import FRAME_MASK, FrameClock, frame_delta
from bridge.jack_native_process import ProcessCore, jack_client_api, pointer_of

__all__ = [
    "DEFAULT_CLIENT",
    "LOOKAHEAD_PERIODS",
    "JackMidiInput",
    "JackMidiPorts",
    "JackOutput",
    "bind_jack_client",
]

log = logging.getLogger(__name__)

DEFAULT_CLIENT = "Antiphon"
IN_RING = 4096
"""Input events the ring holds between two drains (a burst of 4096 within ~1 ms)."""
OUT_RING = 4096
"""Output events handed ahead that the ring holds."""
POLL_S = 0.0005
"""How often :class:`JackMidiInput` drains the input ring (latency to the engine, not timing)."""
LOOKAHEAD_PERIODS = 3
"""How many periods ahead the scheduler hands notes to the process callback (at least
:data:`MIN_LOOKAHEAD_S`): the scheduler thread's wake-up jitter must fit in it."""
MIN_LOOKAHEAD_S = 0.004
HANDOFF_S = 0.001
"""How long the scheduler thread may take to hand a note over: a note due sooner than this after
the next period starts goes in the period after (:meth:`JackMidiPorts.earliest_exact`)."""
FIRST_PERIOD_S = 2.0
"""How long :meth:`JackMidiPorts.open` waits for the server to run the new client's first period."""
DRAIN_S = 0.25
"""How long :meth:`JackMidiPorts.close` waits for queued output (the note-offs) to go out."""

_IGNORED = (0xF0, 0xFE)  # system exclusive, active sensing: filtered like the RtMidi backends


class JackPort(Protocol):
    """The part of ``jack.MidiPort`` used here (tests fake it)."""

    @property
    def name(self) -> str: ...


class JackPorts(Protocol):
    def register(self, shortname: str) -> Any: ...


class JackClient(Protocol):
    """The part of ``jack.Client`` used here (tests fake it)."""

    @property
    def name(self) -> str: ...

    @property
    def samplerate(self) -> int: ...

    @property
    def blocksize(self) -> int: ...

    @property
    def frame_time(self) -> int: ...

    @property
    def last_frame_time(self) -> int: ...

    @property
    def midi_inports(self) -> Any: ...

    @property
    def midi_outports(self) -> Any: ...

    def set_shutdown_callback(self, callback: Callable[[Any, str], None]) -> None: ...

    def set_xrun_callback(self, callback: Callable[[float], None]) -> None: ...

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    def close(self) -> None: ...

    def connect(self, source: Any, destination: Any) -> None: ...

    def get_ports(
        self,
        name_pattern: str = "",
        is_audio: bool = False,
        is_midi: bool = False,
        is_input: bool = False,
        is_output: bool = False,
    ) -> list[Any]: ...


ClientFactory = Callable[[str], JackClient]
Binder = Callable[[ProcessCore, JackClient, JackPort, JackPort], None]
"""Attaches the C core to a client's ports and makes it the client's process callback."""


def real_client(name: str) -> JackClient:
    """A JACK-Client client on ``$JACK_DEFAULT_SERVER`` that never starts a server itself."""
    try:
        import jack
    except (ImportError, OSError) as err:  # no JACK-Client, or no libjack on the system
        raise PortError(
            f"the native JACK backend needs JACK-Client and libjack ({err}); "
            "install them or use --backend rtmidi-jack"
        ) from None
    from bridge.ports import _quiet_stderr as quiet_stderr
    from bridge.ports import check_jack_client_name

    check_jack_client_name(name)

    try:
        with quiet_stderr():  # libjack prints its own complaints; the PortError says it all
            client: JackClient = jack.Client(name, no_start_server=True)
    except jack.JackOpenError as err:
        server = os.environ.get("JACK_DEFAULT_SERVER", "default")
        raise PortError(
            f"cannot reach the JACK server {server!r} ({err}); start it "
            f"(`jackd -n {server} -d dummy &`) or choose another --backend"
        ) from None
    return client


def bind_jack_client(
    core: ProcessCore, client: JackClient, in_port: JackPort, out_port: JackPort
) -> None:
    """The :data:`Binder` for JACK-Client clients: the core gets the libjack functions
    JACK-Client loaded and becomes the process callback (client not yet active)."""
    import jack

    api, set_process_callback = jack_client_api(jack)
    client_ptr = pointer_of(jack, client)
    core.attach(api, client_ptr, pointer_of(jack, in_port), pointer_of(jack, out_port))
    if core.register(set_process_callback, client_ptr) != 0:
        raise PortError("JACK refused the process callback")


class JackOutput:
    """The native backend's :class:`~bridge.midi_out.MidiSink`: hands messages to the process
    callback through the core's lock-free output ring.  Never raises.

    Producers (scheduler, control threads) serialise on one lock among themselves; the callback
    never takes it.  Counters: ``sent`` (handed over), ``failed`` (ring full, detached, closed).
    """

    def __init__(self, core: ProcessCore, clock: FrameClock) -> None:
        self._core = core
        self._clock = clock
        self._lock = threading.Lock()
        self._last: int | None = None  # the frame of the newest event handed over
        self._closed = False
        self.asap_back = 0
        """Frames before "now" that an as-soon-as-possible message is stamped (one period)."""
        self.sent = 0
        self.failed = 0

    def send(self, msg: mido.Message) -> None:
        """Send ``msg`` as soon as possible: the start of the next period (any thread)."""
        self._hand(msg, None)

    def send_at(self, msg: mido.Message, due: float | None) -> None:
        """Send ``msg`` at the frame of clock time ``due`` (the start of the next period if
        that has passed; None: as soon as possible).  Any thread."""
        self._hand(msg, due)

    def _hand(self, msg: mido.Message, due: float | None) -> None:
        with self._lock:
            if self._closed:
                self._failure(msg, "output closed")
                return
            if due is None:  # a period back: due in the next period even if it starts late
                now = self._clock.frame_now()
                frame = None if now is None else (now - self.asap_back) & FRAME_MASK
            else:
                frame = self._clock.to_frame(due)
            if frame is None:
                self._failure(msg, "no JACK client")
                return
            if self._last is not None and frame_delta(frame, self._last) < 0:
                frame = self._last  # never before an event handed earlier: wire order = call order
            try:
                data = bytes(msg.bytes())
            except Exception as err:  # not a message object
                self._failure(msg, str(err) or type(err).__name__)
                return
            handed = self._core.out_push(frame, data, due is not None)
            if handed <= 0:
                self._failure(msg, "output ring full" if handed == 0 else "message too long")
                return
            self._last = frame
            self.sent += 1

    def _failure(self, msg: object, why: str) -> None:
        self.failed += 1
        if self.failed == 1 or self.failed % 100 == 0:
            log.warning("MIDI out: could not send %s: %s (%d failures)", msg, why, self.failed)

    @property
    def pending(self) -> int:
        """Events handed over and not yet written by the callback."""
        return self._core.out_pending

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed}

    def close(self) -> None:
        """Refuse further sends. Idempotent."""
        with self._lock:
            self._closed = True


class JackMidiInput:
    """Feeds ``queue`` with ``(t, mido.Message)`` from the ports' input ring, ``t`` the event's
    exact frame time on the engine's clock.  Counters: ``received``, ``dropped`` (engine queue
    full, or the input ring overflowed), ``malformed`` (undecodable or oversized).  Own thread
    (stop Event + join in :meth:`close`)."""

    def __init__(
        self,
        core: ProcessCore,
        queue: Queue[tuple[float, mido.Message]],
        clock: FrameClock,
        *,
        poll_s: float = POLL_S,
        start: bool = True,
    ) -> None:
        self._core = core
        self._queue = queue
        self._clock = clock
        self._poll_s = poll_s
        counts = core.stats()
        self._rejected0, self._oversized0 = counts["in_rejected"], counts["in_oversized"]
        self._heard_until = clock()
        self.received = 0
        self._queue_full = 0
        self._undecodable = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="antiphon-jack-in", daemon=True)
        if start:
            self._thread.start()

    @property
    def dropped(self) -> int:
        return self._queue_full + self._core.stats()["in_rejected"] - self._rejected0

    @property
    def malformed(self) -> int:
        return self._undecodable + self._core.stats()["in_oversized"] - self._oversized0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.drain()
            self._stop.wait(self._poll_s)
        self.drain()

    def heard_until(self) -> float:
        """Every message played before this time (engine clock) is in the queue (any thread):
        the end of the last period the callback had handed over when the ring was drained."""
        return self._heard_until

    def drain(self) -> int:
        """Decode and deliver everything in the ring (this class's thread; tests call it)."""
        delivered = 0
        watermark = self._core.in_watermark()  # read first: events before it are in the ring
        while (event := self._core.in_pop()) is not None:
            frame, data = event
            if data[0] in _IGNORED:
                continue
            try:
                message = mido.Message.from_bytes(data)
            except Exception:  # ValueError, TypeError, IndexError: anything undecodable
                self._undecodable += 1
                continue
            try:
                self._queue.put_nowait((self._clock.from_frame(frame), message))
            except Full:
                self._queue_full += 1
                continue
            self.received += 1
            delivered += 1
        if watermark is not None:
            self._heard_until = max(self._heard_until, self._clock.from_frame(watermark))
        return delivered

    def stats(self) -> dict[str, int]:
        return {"received": self.received, "dropped": self.dropped, "malformed": self.malformed}

    def close(self, timeout: float = 2.0) -> None:
        """Stop draining (joined). Idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)


class JackMidiPorts:
    """One JACK client with a MIDI input and output port, running on ``clock``.

    :meth:`open` creates, activates and (``in_existing`` / ``out_existing``) connects; it
    attaches ``clock`` to the client's frame counter and the C core (``binder``) to its ports.
    :attr:`output` is the sink, :meth:`listen` starts a :class:`JackMidiInput`.  :attr:`lost`
    turns True when the server shuts the client down.  Counters in :meth:`jack_stats`.
    PortError at construction when the C core is not built.
    """

    def __init__(
        self,
        clock: FrameClock,
        *,
        client_name: str = DEFAULT_CLIENT,
        in_name: str = "Antiphon In",
        out_name: str = "Antiphon Out",
        in_existing: str | None = None,
        out_existing: str | None = None,
        client_factory: ClientFactory = real_client,
        binder: Binder = bind_jack_client,
        in_ring: int = IN_RING,
        out_ring: int = OUT_RING,
        first_period_s: float = FIRST_PERIOD_S,
    ) -> None:
        for kind, name in (("input", in_name), ("output", out_name)):
            if not name.strip():
                raise PortError(f"the MIDI {kind} port needs a name")
        self.clock = clock
        self.client_name = client_name
        self.in_name, self.out_name = in_name, out_name
        self._in_existing, self._out_existing = in_existing, out_existing
        self._factory = client_factory
        self._binder = binder
        self._first_period_s = first_period_s
        self._core = ProcessCore(in_ring, out_ring)
        self.output = JackOutput(self._core, clock)
        self._client: JackClient | None = None
        self._in_port: JackPort | None = None
        self._out_port: JackPort | None = None
        self.lost = False
        self.period = 0
        self.rate = 0
        self.in_shown, self.out_shown = in_name, out_name
        self.xruns = 0  # written by the xrun callback only

    # ----- main / watcher thread --------------------------------------------------------------
    @property
    def up(self) -> bool:
        return self._client is not None

    @property
    def lookahead_s(self) -> float:
        """How early the scheduler should hand notes over (seconds)."""
        if self.rate <= 0:
            return MIN_LOOKAHEAD_S
        return max(MIN_LOOKAHEAD_S, LOOKAHEAD_PERIODS * self.period / self.rate)

    def open(self) -> None:
        """Create the client and its ports, activate, connect; PortError with one line."""
        client = self._factory(self.client_name)
        try:
            self._in_port = client.midi_inports.register(self.in_name)
            self._out_port = client.midi_outports.register(self.out_name)
            self.rate, self.period = int(client.samplerate), int(client.blocksize)
            self.output.asap_back = self.period
            client.set_shutdown_callback(self._on_shutdown)
            client.set_xrun_callback(self._on_xrun)
            self._binder(self._core, client, self._in_port, self._out_port)
            self.lost = False
            self._client = client
            client.activate()
            # The frame counter is the server's only once the client runs: PipeWire's JACK
            # answers jack_frame_time with another count before that (the clock, which never
            # goes back, then stood still for good).  So attach after the first period.
            self._await_first_period()
            self.clock.attach(lambda: client.frame_time, self.rate)
            self.in_shown, self.out_shown = self.in_name, self.out_name
            if self._in_existing is not None:
                self.in_shown = self._connect(client, self._in_existing, "input")
            if self._out_existing is not None:
                self.out_shown = self._connect(client, self._out_existing, "output")
        except Exception as err:
            self._client = None
            self.clock.detach()
            _close_client(client)
            self._core.detach()
            if isinstance(err, PortError):
                raise
            raise PortError(
                f"cannot open the JACK MIDI ports {self.in_name!r} / "
                f"{self.out_name!r} ({err}); choose another --backend"
            ) from None

    def _await_first_period(self) -> None:
        if self._first_period_s <= 0:  # tests on a fake client run the periods themselves
            return
        deadline = time.monotonic() + self._first_period_s
        while self._core.period_start() is None:
            if time.monotonic() >= deadline:
                raise PortError(
                    f"the JACK server did not run the client {self.client_name!r} within "
                    f"{self._first_period_s:g} s of activating it; restart the server"
                )
            time.sleep(0.002)

    def _connect(self, client: JackClient, wanted: str, kind: str) -> str:
        from bridge.ports import find_port

        # our input listens to another client's output port, and the other way round
        is_output = kind == "input"
        own = f"{client.name}:"
        names = [
            p.name
            for p in client.get_ports(is_midi=True, is_output=is_output, is_input=not is_output)
            if not p.name.startswith(own)
        ]
        found = names[find_port(names, wanted, kind)]
        if kind == "input":
            client.connect(found, self._in_port)
        else:
            client.connect(self._out_port, found)
        return found

    def earliest_exact(self, t: float) -> float:
        """The earliest clock time at or after ``t`` that a note handed over at ``t`` is sure
        to be written at exactly: the first period boundary at least :data:`HANDOFF_S` after
        ``t`` (``t`` itself while detached or before the first period).  The generator anchors
        an answer that starts "now" there, so its first note is on time like the rest (any
        thread)."""
        start = self._core.period_start()
        frame = self.clock.to_frame(t + HANDOFF_S)
        if start is None or frame is None or self.period <= 0:
            return t
        ahead = frame_delta(frame, start)
        periods = max(0, -(-ahead // self.period))  # ceil: the boundary at or after ``frame``
        return max(t, self.clock.from_frame((start + periods * self.period) & FRAME_MASK))

    def listen(self, queue: Queue[tuple[float, mido.Message]]) -> JackMidiInput:
        """Start feeding ``queue`` from the input (events already in the ring are dropped)."""
        while self._core.in_pop() is not None:
            pass
        return JackMidiInput(self._core, queue, self.clock)

    def drain(self, timeout: float = DRAIN_S) -> bool:
        """Wait until the callback wrote every event handed over (True), at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._core.out_pending and not self.lost and self._client is not None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        if self.rate > 0:  # the clients after us read this period's buffer: let them
            time.sleep(2 * self.period / self.rate)
        return not self._core.out_pending

    def close(self, *, drain: bool = True) -> None:
        """Send what is queued (``drain``), then deactivate and close the client. Idempotent."""
        client = self._client
        if client is None:
            return
        if drain and not self.lost:
            self.drain()
        self.output.close()
        self.clock.detach()
        self._client = None
        _close_client(client)
        self._core.detach()

    def jack_stats(self) -> dict[str, int]:
        """The backend's own counters (any thread)."""
        core = self._core.stats()
        return {
            "jack_xruns": self.xruns,
            "jack_out_late": core["out_late"],
            "jack_out_late_frames_max": core["out_late_frames_max"],
            "jack_out_buffer_full": core["out_full"],
            "jack_late_periods": core["skipped"],
            "jack_repeated_periods": core["repeated"],
            "jack_input_repeats": core["input_repeats"],
            "jack_extra_note_offs": core["extra_note_offs"],
        }

    def core_stats(self) -> dict[str, int]:
        """The C callback's own counters (cycles, events written, …; any thread)."""
        return self._core.stats()

    # ----- libjack's notification thread ----------------------------------------------------------
    def _on_shutdown(self, status: object, reason: str) -> None:
        """The server closed us.  Nothing that talks to JACK here."""
        self.lost = True
        self.clock.detach()

    def _on_xrun(self, delayed_usecs: float) -> None:
        self.xruns += 1


def _close_client(client: JackClient) -> None:
    for step in (client.deactivate, client.close):
        try:
            step()
        except Exception as err:  # a client of a dead server: nothing left to free
            log.debug("closing the JACK client: %s", err)
