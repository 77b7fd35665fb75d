"""A separate JACK client that plays MIDI into Antiphon and records what comes out.

The one JACK MIDI peer: used by ``examples/demo.py``, the end-to-end, reliability (MIDI flood,
JACK faults) and DAW tests, and the benchmarks.  It is a peer Antiphon does not control — its own
JACK client on the JACK-Client package, with every timestamp taken from JACK frame time, so
onsets are sample-accurate and independent of Python's scheduling.  It plays scheduled messages,
floods at a fixed rate (:meth:`JackPeer.flood`) and records everything arriving.

Threads: :class:`JackPeer`'s ``_process`` runs in JACK's realtime thread every period (it only
pops due events from a deque, writes at most :data:`MAX_EVENTS_PER_PERIOD`, and appends what
arrives to a list — all atomic under the GIL); everything else runs in the caller's thread.
Creating a peer lowers Python's thread switch interval to 0.5 ms so the realtime callback gets
the GIL in time.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jack
import mido

__all__ = [
    "MAX_EVENTS_PER_PERIOD",
    "JackPeer",
    "JackPeerError",
    "PlayedNote",
    "notes_from_messages",
    "phrase_messages",
]


MAX_EVENTS_PER_PERIOD = 48
"""The peer writes at most this many events per JACK period (a 64-frame buffer holds 64)."""


class JackPeerError(RuntimeError):
    """No JACK server, or a port to connect to does not show up."""


@dataclass(frozen=True)
class PlayedNote:
    """A note heard on a port: onset and duration in seconds of JACK time."""

    onset: float
    pitch: int
    duration: float
    velocity: int
    channel: int = 0


def phrase_messages(
    notes: Iterable[tuple[float, int, float, int]], bpm: float, *, channel: int = 0
) -> list[tuple[float, mido.Message]]:
    """``(onset_beats, pitch, duration_beats, velocity)`` → ``(seconds, message)`` at ``bpm``.

    At equal times note-offs come first, so a repeated pitch is re-struck, not cut.
    """
    spb = 60.0 / bpm
    timed: list[tuple[float, int, mido.Message]] = []
    for onset, pitch, duration, velocity in notes:
        timed.append(
            (
                onset * spb,
                1,
                mido.Message("note_on", channel=channel, note=pitch, velocity=velocity),
            )
        )
        timed.append(
            (
                (onset + duration) * spb,
                0,
                mido.Message("note_off", channel=channel, note=pitch, velocity=64),
            )
        )
    timed.sort(key=lambda item: (item[0], item[1]))
    return [(t, msg) for t, _, msg in timed]


def notes_from_messages(messages: Iterable[tuple[float, mido.Message]]) -> list[PlayedNote]:
    """Pair note-ons and note-offs (or note-on velocity 0) per channel and pitch; sorted.

    Notes still sounding at the end are left out (the caller waits for the answer to finish).
    """
    open_notes: dict[tuple[int, int], deque[tuple[float, int]]] = {}
    notes: list[PlayedNote] = []
    for t, msg in messages:
        if msg.type not in ("note_on", "note_off"):
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes.setdefault(key, deque()).append((t, msg.velocity))
        elif open_notes.get(key):
            start, velocity = open_notes[key].popleft()
            notes.append(PlayedNote(start, msg.note, t - start, velocity, msg.channel))
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


class JackPeer:
    """One JACK client with a MIDI output ``out`` (the player) and a MIDI input ``in`` (recorder).

    >>> with JackPeer("demo-peer") as peer:                            # doctest: +SKIP
    ...     peer.connect_out("Antiphon In"); peer.connect_in("Antiphon Out")
    ...     start, end = peer.play(phrase_messages(notes, 120))
    ...     answer = peer.wait_quiet(after=end, quiet=2.0, timeout=30)
    """

    def __init__(self, name: str = "antiphon-peer", *, server: str | None = None) -> None:
        try:
            self.client = jack.Client(name, no_start_server=True, servername=server)
        except jack.JackError as exc:
            where = f"JACK server {server!r}" if server else "the JACK server"
            raise JackPeerError(f"cannot reach {where}: {exc}") from None
        self.name = self.client.name
        self.rate = float(self.client.samplerate)
        self.outport = self.client.midi_outports.register("out")
        self.inport = self.client.midi_inports.register("in")
        self._pending: deque[tuple[int, bytes]] = deque()
        self._received: list[tuple[int, bytes]] = []
        self._parsed_upto = 0  # caller's thread: how much of _received is parsed
        self._parsed: list[tuple[float, mido.Message]] = []  # without system real-time
        self._parsed_all: list[tuple[float, mido.Message]] = []
        self._flood: Sequence[bytes] = ()
        self._flood_start = 0
        self._flood_rate = 0.0
        self.flood_written = 0
        self.flood_first_frame: int | None = None
        self.flood_last_frame: int | None = None
        self.write_errors = 0
        self.shutdown = threading.Event()
        """Set when the JACK server shuts the client down (it went away)."""
        # The process callback needs the GIL every period (1.3 ms at 64 frames / 48 kHz); with
        # Python's default 5 ms switch interval a busy thread would make it miss periods.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self.client.set_shutdown_callback(lambda status, reason: self.shutdown.set())
        self.client.set_process_callback(self._process)
        self.client.activate()

    # ----- realtime thread -----------------------------------------------------------------------
    def _process(self, frames: int) -> None:
        start = self.client.last_frame_time
        for offset, data in self.inport.incoming_midi_events():
            self._received.append((start + offset, bytes(data)))
        self.outport.clear_buffer()
        end = start + frames
        written = 0
        pending = self._pending
        try:
            while pending and pending[0][0] < end and written < MAX_EVENTS_PER_PERIOD:
                frame, data = pending.popleft()
                self.outport.write_midi_event(max(0, frame - start), data)
                written += 1
            flood = self._flood
            if self.flood_written < len(flood) and end > self._flood_start:
                due = min(
                    len(flood), int((end - self._flood_start) * self._flood_rate / self.rate) + 1
                )
                count = min(due - self.flood_written, MAX_EVENTS_PER_PERIOD - written)
                for i in range(count):
                    self.outport.write_midi_event(
                        i * frames // max(count, 1), flood[self.flood_written]
                    )
                    self.flood_written += 1
                if count > 0:
                    if self.flood_first_frame is None:
                        self.flood_first_frame = start
                    self.flood_last_frame = end
        except jack.JackError:  # the buffer is full: counted, the rest waits for the next period
            self.write_errors += 1

    # ----- caller's thread -----------------------------------------------------------------------
    def now(self) -> float:
        """Current JACK time in seconds (the clock every timestamp here uses)."""
        return self.client.frame_time / self.rate

    def play(
        self,
        messages: Sequence[tuple[float, mido.Message]],
        *,
        delay: float = 0.1,
        at: float | None = None,
    ) -> tuple[float, float]:
        """Schedule ``(seconds, message)`` with time 0 at ``delay`` seconds from now, or at JACK
        time ``at`` (seconds, e.g. on a MIDI clock beat).

        Returns the JACK times (seconds) of time 0 and of the last message.  Messages must be
        sorted by time.
        """
        if at is None:
            base = self.client.frame_time + round(delay * self.rate)
        else:
            base = round(at * self.rate)
        if not messages:
            return base / self.rate, base / self.rate
        frames = [(base + round(t * self.rate), bytes(msg.bytes())) for t, msg in messages]
        if any(b[0] < a[0] for a, b in itertools.pairwise(frames)):
            raise ValueError("messages must be sorted by time")
        self._pending.extend(frames)
        return base / self.rate, frames[-1][0] / self.rate

    def send_now(self, msg: mido.Message) -> None:
        """Send one message in the next period (e.g. a panic)."""
        self.send_raw(bytes(msg.bytes()))

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (malformed ones too) in the next period."""
        self._pending.append((self.client.frame_time, data))

    def flood(self, messages: Sequence[bytes], rate: float, delay: float = 0.05) -> None:
        """Write ``messages`` (raw bytes) at ``rate`` per second from ``delay`` s from now, at
        most :data:`MAX_EVENTS_PER_PERIOD` a period; ``flood_written`` counts what went out."""
        self.flood_written = 0
        self.flood_first_frame = self.flood_last_frame = None
        self._flood_rate = rate
        self._flood_start = self.client.frame_time + round(delay * self.rate)
        self._flood = messages

    @property
    def playing(self) -> bool:
        return bool(self._pending)

    @property
    def flooding(self) -> bool:
        return self.flood_written < len(self._flood)

    @property
    def idle(self) -> bool:
        return not self._pending and not self.flooding

    def raw_count(self) -> int:
        """Events that arrived on ``in``, malformed and real-time ones included."""
        return len(self._received)

    def received(
        self, since: float = 0.0, *, realtime: bool = False
    ) -> list[tuple[float, mido.Message]]:
        """What arrived on ``in`` at or after JACK time ``since``: ``(seconds, message)``.

        System real-time messages (clock, start, stop, active sensing) only if ``realtime``;
        malformed bytes never.  Only what is new is parsed, so polling this stays cheap (a slow
        poll would hold the GIL and make the process callback miss JACK cycles)."""
        raw = self._received
        end = len(raw)
        for frame, data in raw[self._parsed_upto : end]:
            try:
                msg = mido.Message.from_bytes(list(data))
            except (ValueError, IndexError):
                continue
            self._parsed_all.append((frame / self.rate, msg))
            if not msg.is_realtime:
                self._parsed.append((frame / self.rate, msg))
        self._parsed_upto = end
        parsed = self._parsed_all if realtime else self._parsed
        return parsed[bisect.bisect_left(parsed, since, key=lambda item: item[0]) :]

    def clear(self) -> None:
        """Forget everything received so far (caller's thread, while nothing arrives)."""
        del self._received[:]
        del self._parsed[:]
        del self._parsed_all[:]
        self._parsed_upto = 0

    def wait_quiet(
        self, *, after: float, quiet: float, timeout: float, first_timeout: float | None = None
    ) -> list[tuple[float, mido.Message]]:
        """Wait for messages after JACK time ``after`` and then for ``quiet`` seconds with every
        note released; returns what arrived after ``after``.  Raises TimeoutError if nothing
        arrives within ``first_timeout`` (default ``timeout``) or it never goes quiet."""
        wait_first = timeout if first_timeout is None else first_timeout
        deadline = time.monotonic() + timeout
        first_deadline = time.monotonic() + wait_first
        while True:
            messages = self.received(since=after)
            now = self.now()
            if messages:
                sounding = _sounding(messages)
                if not sounding and now - messages[-1][0] >= quiet:
                    return messages
            elif time.monotonic() > first_deadline:
                raise TimeoutError(f"nothing arrived within {wait_first:g} s")
            if time.monotonic() > deadline:
                raise TimeoutError("the output did not go quiet in time")
            time.sleep(0.02)

    # ----- connections ---------------------------------------------------------------------------
    def find_port(self, name: str, *, is_input: bool, timeout: float = 10.0) -> str:
        """Full name of the MIDI port whose client or port name is ``name`` (waits for it)."""
        pattern = re.compile(rf"(^|:){re.escape(name)}($|:)")
        deadline = time.monotonic() + timeout
        while True:
            ports = self.client.get_ports(is_midi=True, is_input=is_input, is_output=not is_input)
            mine = self.name + ":"
            for port in ports:
                if not port.name.startswith(mine) and pattern.search(port.name):
                    return port.name
            if time.monotonic() > deadline:
                kind = "input" if is_input else "output"
                seen = ", ".join(p.name for p in ports) or "none"
                raise JackPeerError(f"no MIDI {kind} port {name!r} (seen: {seen})")
            time.sleep(0.05)

    def connect_out(self, target: str, timeout: float = 10.0) -> str:
        """Connect our ``out`` to the input port named ``target`` (e.g. "Antiphon In")."""
        port = self.find_port(target, is_input=True, timeout=timeout)
        self.client.connect(self.outport, port)
        return port

    def connect_in(self, source: str, timeout: float = 10.0) -> str:
        """Connect the output port named ``source`` (e.g. "Antiphon Out") to our ``in``."""
        port = self.find_port(source, is_input=False, timeout=timeout)
        self.client.connect(port, self.inport)
        return port

    def connect(
        self,
        bridge_in: str = "Antiphon:Antiphon In",
        bridge_out: str = "Antiphon:Antiphon Out",
        timeout: float = 10.0,
    ) -> None:
        """Our ``out`` → ``bridge_in`` and ``bridge_out`` → our ``in`` (waits for both)."""
        self.connect_out(bridge_in, timeout)
        self.connect_in(bridge_out, timeout)

    def close(self) -> None:
        """Deactivate and close the client (unregisters both ports).  Close it before its
        server goes away: after that libjack may cancel the client's thread, and one cancelled
        inside the Python process callback never gives the GIL back (the caller hangs)."""
        with contextlib.suppress(jack.JackError):
            self.client.deactivate()
        self.client.close()

    def __enter__(self) -> JackPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sounding(messages: Iterable[tuple[float, mido.Message]]) -> set[tuple[int, int]]:
    on: set[tuple[int, int]] = set()
    for _, msg in messages:
        if msg.type == "note_on" and msg.velocity > 0:
            on.add((msg.channel, msg.note))
        elif msg.type in ("note_on", "note_off"):
            on.discard((msg.channel, msg.note))
        elif msg.type == "control_change" and msg.control in (120, 123):
            on = {key for key in on if key[0] != msg.channel}
    return on
