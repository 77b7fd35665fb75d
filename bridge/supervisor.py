"""Keep the MIDI ports alive: open them, watch them, reopen them after the JACK server comes back.

:class:`PortSupervisor` owns the bridge's two ports, the RtMidi input callback
(:class:`~bridge.midi_in.MidiInput`) and the output (:class:`~bridge.midi_out.MidiOutput`) behind
one :class:`SwitchingSink` that the engine keeps for its whole life.  Its watcher thread wakes
every ``poll_s`` seconds and

* logs input the bridge could not take: messages dropped because the engine's input queue was
  full, and malformed ones (a warning at most once a second while they keep coming);
* on JACK, notices that the server went away — its socket stops answering, or answers from a
  new server that replaced it — and then stops sending at once (libjack's output ring buffer
  would fill and block the scheduler), unhooks the input, tells the engine (``on_lost``: end the
  answer, forget held keys: their note-offs will never come) and closes the dead clients; then
  it waits for the server and reopens the same ports on it, without a process restart.  The
  DAW has to connect them again (a new JACK server knows no connections).

Opening: the input client first, then the output, then on JACK a loopback self-test of the input
(:func:`bridge.ports.input_hears_itself`); an input that does not hear itself is reopened (logged,
counted as ``midi_in_deaf_reopens`` in ``/antiphon/status``), so the bridge never sits deaf
without saying so.

Input: on JACK, :class:`~bridge.midi_poll.PolledMidiInput` (RtMidi queues in C++, a thread
drains it: JACK's realtime thread never waits for Python's GIL); elsewhere the callback
:class:`~bridge.midi_in.MidiInput` (ALSA's and CoreMIDI's threads are not realtime and their
input waits in the system's queue).  :meth:`PortSupervisor.start` also lowers the interpreter's
switch interval to :data:`SWITCH_INTERVAL_S` (from 5 ms) so every MIDI thread gets the GIL
within a JACK period (1.3 ms at 64 frames / 48 kHz); :meth:`PortSupervisor.stop` restores it.

The native JACK backend (``backend.native``, :mod:`bridge.jack_native`) has one JACK client
with both ports instead: no self-test (its process callback is Python's own), the input is a
:class:`~bridge.jack_native.JackMidiInput`, the output a :class:`~bridge.jack_native.JackOutput`,
and :attr:`PortSupervisor.clock` — the clock the engine must use — runs on the client's JACK
frame counter (:class:`~bridge.jack_native_clock.FrameClock`; monotonic while the server is
away).  A server shutdown that the client hears of counts as a loss too.

ALSA and CoreMIDI have no server to lose, so there the watcher only reports drops.  Threads:
``open``/``start``/``stop`` are called by the main thread, ``stats`` by any thread (the OSC
thread's ``/antiphon/status``), ``send`` by the scheduler and control threads, the rest runs on
the watcher thread.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from queue import Queue

import mido

from bridge.clock import Clock
from bridge.errors import PortError
from bridge.jack_native import JackMidiInput, JackMidiPorts, JackOutput
from bridge.jack_native_clock import FrameClock
from bridge.midi_in import MidiInput
from bridge.midi_out import MidiOutput
from bridge.midi_poll import PolledMidiInput
from bridge.ports import (
    Backend,
    OpenedPort,
    input_hears_itself,
    jack_server_identity,
    open_input,
    open_output,
)
from bridge.worker import Worker

__all__ = ["PortSpec", "PortSupervisor", "SwitchingSink", "jack_server_identity"]

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005
"""Python's thread switch interval while the ports are open (see the module docstring)."""

DEAF_TRIES = 4
"""How many times the ports are opened while the input fails its self-test (then PortError)."""

InputCheck = Callable[[OpenedPort, str], bool]
"""Is this freshly opened input port alive (hears its own self-test)? Default on JACK:
:func:`bridge.ports.input_hears_itself`."""

ServerProbe = Callable[[], "object | None"]
"""Identifies the running server (equal while it is the same one); None when none answers."""


class SwitchingSink:
    """The engine's :class:`~bridge.midi_out.MidiSink`: forwards to the current output, or
    drops and counts (``dropped_offline``) while the ports are down.  Never raises."""

    def __init__(self) -> None:
        self._output: MidiOutput | JackOutput | None = None
        self.dropped_offline = 0

    def send(self, msg: mido.Message) -> None:
        """Any thread (scheduler, control)."""
        output = self._output  # one atomic read: a switch in between just counts a failure
        if output is None:
            self.dropped_offline += 1
            return
        output.send(msg)

    def send_at(self, msg: mido.Message, due: float | None) -> None:
        """Scheduler thread: ``msg`` due at clock time ``due``; placed at its frame by the
        native JACK output, sent now by the others (the scheduler then hands nothing early)."""
        output = self._output
        if output is None:
            self.dropped_offline += 1
        elif isinstance(output, JackOutput):
            output.send_at(msg, due)
        else:
            output.send(msg)

    def attach(self, output: MidiOutput | JackOutput | None) -> None:
        """Send to ``output`` from now on (None: drop)."""
        self._output = output


@dataclass(frozen=True)
class PortSpec:
    """What to open: virtual ports ``in_name``/``out_name``, or the existing ports
    ``in_existing``/``out_existing`` (``--in``/``--out``), on clients named after ``client``."""

    in_name: str = "Antiphon In"
    out_name: str = "Antiphon Out"
    client: str = "Antiphon"
    in_existing: str | None = None
    out_existing: str | None = None


class PortSupervisor:
    """Opens the ports, feeds the engine's queue from the input, watches and reopens; see the
    module docstring."""

    def __init__(
        self,
        backend: Backend,
        spec: PortSpec,
        *,
        clock: Clock = time.monotonic,
        server_probe: ServerProbe | None = None,
        input_check: InputCheck | None = None,
        poll_s: float = 0.2,
        report_every_s: float = 1.0,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.sink = SwitchingSink()
        self._queue: Queue[tuple[float, mido.Message]] | None = None
        self._on_lost: Callable[[], None] = lambda: None
        self._frame_clock = FrameClock(clock) if backend.native else None
        self.clock: Clock = self._frame_clock or clock
        """The clock the engine must run on (JACK frame time on the native backend)."""
        self._clock = self.clock
        if server_probe is None and backend.on_jack:
            server_probe = jack_server_identity
        self._probe = server_probe
        if input_check is None and backend.on_jack and not backend.native:
            input_check = input_hears_itself
        self._input_check = input_check
        self._poll_s = poll_s
        self._report_every = report_every_s
        self.worker = Worker("antiphon-ports", self._run)
        self._saved_switch: float | None = None  # the interpreter's switch interval before start
        self._lock = threading.Lock()  # the port objects and counters below
        self._in: OpenedPort | None = None
        self._out: OpenedPort | None = None
        self._midi_in: MidiInput | PolledMidiInput | JackMidiInput | None = None
        self._output: MidiOutput | JackOutput | None = None
        self._native: JackMidiPorts | None = None
        self._server: object | None = None
        self._listening = False
        self._totals = {"received": 0, "dropped": 0, "malformed": 0, "sent": 0, "failed": 0}
        self._reported = (0, 0)  # dropped, malformed at the last warning
        self._reported_at = -float("inf")
        self._last_error = ""
        self.losses = 0
        self.reopens = 0
        self.deaf_reopens = 0

    # ----- main thread ----------------------------------------------------------------------------
    @property
    def up(self) -> bool:
        """True while the ports are open."""
        return self._out is not None or self._native is not None

    @property
    def in_name(self) -> str:
        if self._native is not None:
            return self._native.in_shown
        return self._in.name if self._in is not None else self.spec.in_name

    @property
    def out_name(self) -> str:
        if self._native is not None:
            return self._native.out_shown
        return self._out.name if self._out is not None else self.spec.out_name

    @property
    def lookahead_s(self) -> float:
        """How early the engine's scheduler should hand notes over (0: send them when due)."""
        native = self._native
        return native.lookahead_s if native is not None else 0.0

    def earliest_exact(self, t: float) -> float:
        """The earliest time at or after ``t`` a note handed over at ``t`` lands on exactly (the
        native backend's next period boundary; ``t`` on RtMidi, which sends when due).  Any
        thread; follows a reopened client."""
        native = self._native
        return native.earliest_exact(t) if native is not None else t

    def open(self) -> None:
        """Open both ports (PortError with one line if they cannot be); input not yet delivered."""
        server = self._probe() if self._probe is not None else None
        self._open_ports()
        if server is None and self._probe is not None:
            # The ports opened, yet no server socket answers where jackd2 puts it (jackd1, a
            # custom JACK_TMPDIR): watching would mistake that for a loss, so don't.
            log.info(
                "cannot watch the JACK server (no jackd2 socket found); a server restart "
                "will need a bridge restart"
            )
            self._probe = None
        self._server = server

    def start(
        self, queue: Queue[tuple[float, mido.Message]], on_lost: Callable[[], None] = lambda: None
    ) -> None:
        """Feed ``queue`` from the input (the callback is registered last: call this once the
        engine runs) and start watching.  ``on_lost`` is called on the watcher thread once the
        old ports can no longer send (the engine ends its answer and forgets held keys)."""
        self._queue, self._on_lost = queue, on_lost
        if self._saved_switch is None:
            self._saved_switch = sys.getswitchinterval()
            sys.setswitchinterval(min(self._saved_switch, SWITCH_INTERVAL_S))
        with self._lock:
            self._listening = True
            self._listen()
        self.worker.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop watching (joined), unhook the input, restore the interpreter's switch interval;
        the output stays until :meth:`close`."""
        self.worker.stop(timeout)
        with self._lock:
            self._listening = False
            self._release_input()
        if self._saved_switch is not None:
            sys.setswitchinterval(self._saved_switch)
            self._saved_switch = None

    def close(self) -> None:
        """Close both ports (after the engine sent its last note-offs). Idempotent."""
        self.stop()
        with self._lock:
            self._close_ports()

    def heard_until(self) -> float:
        """Every message played before this time is in the engine's queue (any thread; the
        engine judges a phrase's end by it): the JACK inputs' watermark, else now."""
        midi_in = self._midi_in
        if isinstance(midi_in, (PolledMidiInput, JackMidiInput)):
            return midi_in.heard_until()
        return self._clock()

    def counts(self) -> dict[str, int]:
        """MIDI in/out counters summed over every reopen (any thread)."""
        with self._lock:
            totals = dict(self._totals)
            for live in (self._midi_in, self._output):
                if live is not None:
                    for key, value in live.stats().items():
                        totals[key] += value
        return totals

    def stats(self) -> dict[str, object]:
        """Port state and MIDI counters (any thread; merged into ``/antiphon/status``)."""
        totals = self.counts()
        return {
            "midi_ports": "up" if self.up else "down",
            "midi_in_received": totals["received"],
            "midi_in_dropped": totals["dropped"],
            "midi_in_malformed": totals["malformed"],
            "midi_out_sent": totals["sent"],
            "midi_out_failed": totals["failed"],
            "midi_out_dropped_offline": self.sink.dropped_offline,
            "port_losses": self.losses,
            "port_reopens": self.reopens,
            "midi_in_deaf_reopens": self.deaf_reopens,
            **(self._native.jack_stats() if self._native is not None else {}),
        }

    # ----- watcher thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.worker.stopping.wait(self._poll_s):
            try:
                self.poll()
            except Exception:  # the watcher must outlive any surprise
                log.exception("port watcher")

    def poll(self) -> None:
        """One watch step (the watcher thread; tests call it directly)."""
        self._report_drops()
        if self._probe is None:
            return
        server = self._probe()
        native = self._native
        if self.up and (server != self._server or (native is not None and native.lost)):
            self._lose(server)
        if not self.up and server is not None and not self.worker.stopping.is_set():
            self._reopen(server)

    def _report_drops(self) -> None:
        counts = self.counts()
        dropped, malformed = counts["dropped"], counts["malformed"]
        if (dropped, malformed) == self._reported:
            return
        now = time.monotonic()
        if now - self._reported_at < self._report_every:
            return
        new_drops, new_bad = dropped - self._reported[0], malformed - self._reported[1]
        log.warning(
            "MIDI in: %d more message(s) dropped (input queue full), %d more "
            "malformed; %d dropped, %d malformed in all",
            new_drops,
            new_bad,
            dropped,
            malformed,
        )
        self._reported, self._reported_at = (dropped, malformed), now

    def _lose(self, server: object | None) -> None:
        self.sink.attach(None)  # first: nothing more may reach libjack's ring buffer
        with self._lock:
            self._release_input()
        why = "went away" if server is None else "was replaced by a new one"
        log.warning(
            "JACK server %r %s: answer stopped, MIDI ports closed; waiting for it to come back",
            os.environ.get("JACK_DEFAULT_SERVER", "default"),
            why,
        )
        self.losses += 1
        try:
            self._on_lost()
        except Exception:
            log.exception("on_lost callback failed")
        with self._lock:
            self._close_ports()
        self._last_error = ""

    def _reopen(self, server: object) -> None:
        try:
            self._open_ports()
        except PortError as err:
            if str(err) != self._last_error:
                log.warning(
                    "JACK server is back but the MIDI ports cannot be reopened yet: %s", err
                )
                self._last_error = str(err)
            return
        with self._lock:
            self._listen()
        self._server = server
        self.reopens += 1
        log.warning(
            'JACK server is back: MIDI ports "%s" and "%s" reopened (connect them again)',
            self.in_name,
            self.out_name,
        )

    # ----- ports (lock held, or before the watcher starts) ----------------------------------------
    def _open_ports(self) -> None:
        """Input first, then output, then (JACK) the input's self-test; reopened while deaf.

        Order matters: with python-rtmidi's bundled libjack, an output client opened before the
        input client left the input unscheduled in 11-22 of 30 starts (deaf: the ports exist,
        nothing is heard); input first, 0 of 30.  The self-test catches whatever else could
        leave the input deaf; after :data:`DEAF_TRIES` deaf opens, PortError.
        """
        spec = self.spec
        if self._frame_clock is not None:
            self._open_native(self._frame_clock)
            return
        for attempt in range(1, DEAF_TRIES + 1):
            in_port = open_input(
                self.backend, name=spec.in_name, client_name=spec.client, existing=spec.in_existing
            )
            try:
                out_port = open_output(
                    self.backend,
                    name=spec.out_name,
                    client_name=spec.client,
                    existing=spec.out_existing,
                )
            except PortError:
                in_port.close()
                raise
            try:
                alive = self._input_check is None or self._input_check(in_port, spec.client)
            except PortError:
                in_port.close()
                out_port.close()
                raise
            if alive:
                break
            self.deaf_reopens += 1
            log.warning(
                'MIDI in: "%s" heard nothing of its own self-test (the JACK server '
                "does not run its client); reopening both ports (%d of %d)",
                in_port.name,
                attempt,
                DEAF_TRIES,
            )
            in_port.close()
            out_port.close()
        else:
            raise PortError(
                f'the MIDI input "{spec.in_name}" stays deaf: the JACK server did '
                f"not run its client in {DEAF_TRIES} opens (see its log); restart "
                "the JACK server"
            )
        if attempt > 1:
            log.warning('MIDI in: "%s" hears its self-test after %d opens', in_port.name, attempt)
        with self._lock:
            self._out, self._in = out_port, in_port
            self._output = MidiOutput(out_port.rt)
            self.sink.attach(self._output)

    def _open_native(self, clock: FrameClock) -> None:
        spec = self.spec
        ports = JackMidiPorts(
            clock,
            client_name=spec.client,
            in_name=spec.in_name,
            out_name=spec.out_name,
            in_existing=spec.in_existing,
            out_existing=spec.out_existing,
        )
        ports.open()
        with self._lock:
            self._native, self._output = ports, ports.output
            self.sink.attach(ports.output)

    def _listen(self) -> None:
        if not self._listening or self._queue is None or self._midi_in is not None:
            return
        if self._native is not None:
            self._midi_in = self._native.listen(self._queue)
        elif self._in is not None:
            if self.backend.on_jack:
                self._midi_in = PolledMidiInput(self._in.rt, self._queue, self._clock)
            else:
                self._midi_in = MidiInput(self._in.rt, self._queue, self._clock)

    def _release_input(self) -> None:
        if self._midi_in is not None:
            self._midi_in.close()
            for key, value in self._midi_in.stats().items():
                self._totals[key] += value
            self._midi_in = None

    def _close_ports(self) -> None:
        self._release_input()
        self.sink.attach(None)
        if self._output is not None:
            self._output.close()
            for key, value in self._output.stats().items():
                self._totals[key] += value
            self._output = None
        if self._native is not None:
            self._native.close()  # after the queued note-offs went out
            self._native = None
        for port in (self._in, self._out):
            if port is not None:
                try:
                    port.close()
                except Exception as err:  # a client of a dead server: nothing left to free
                    log.debug("closing %s: %s", port.name, err)
        self._in = self._out = None
