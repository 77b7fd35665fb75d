"""A separate JACK client that plays MIDI into Antiphon and records what comes out.

Used by ``examples/demo.py``, the end-to-end tests (``tests/e2e``) and the benchmarks: it is a
peer Antiphon does not control — its own JACK client on the JACK-Client package, with every
timestamp taken from JACK frame time, so onsets are sample-accurate and independent of Python's
scheduling.

Threads: :class:`JackPeer`'s ``_process`` runs in JACK's realtime thread every period (it only
pops due events from a deque and appends what arrives to a list — both atomic under the GIL);
everything else runs in the caller's thread.  Creating a peer lowers Python's thread switch
interval to 0.5 ms so the realtime callback gets the GIL in time.
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jack
import mido

__all__ = [
    "JackPeer",
    "JackPeerError",
    "PlayedNote",
    "notes_from_messages",
    "phrase_messages",
]


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
        self._parsed: list[tuple[float, mido.Message | None]] = []
        # The process callback needs the GIL every period (1.3 ms at 64 frames / 48 kHz); with
        # Python's default 5 ms switch interval a busy thread would make it miss periods.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self.client.set_process_callback(self._process)
        self.client.activate()

    # ----- realtime thread -----------------------------------------------------------------------
    def _process(self, frames: int) -> None:
        start = self.client.last_frame_time
        for offset, data in self.inport.incoming_midi_events():
            self._received.append((start + offset, bytes(data)))
        self.outport.clear_buffer()
        end = start + frames
        pending = self._pending
        while pending and pending[0][0] < end:
            frame, data = pending.popleft()
            self.outport.write_midi_event(max(0, frame - start), data)

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
        self._pending.append((self.client.frame_time, bytes(msg.bytes())))

    @property
    def playing(self) -> bool:
        return bool(self._pending)

    def received(
        self, *, since: float = 0.0, realtime: bool = False
    ) -> list[tuple[float, mido.Message]]:
        """What arrived on ``in`` at or after JACK time ``since``: ``(seconds, message)``.

        System real-time messages (clock, start, stop, active sensing) only if ``realtime``.
        """
        raw = self._received
        for frame, data in raw[len(self._parsed) : len(raw)]:  # parse only what is new
            try:
                msg = mido.Message.from_bytes(list(data)) if data else None
            except ValueError:
                msg = None
            self._parsed.append((frame / self.rate, msg))
        return [
            (t, msg)
            for t, msg in self._parsed
            if msg is not None and t >= since and (realtime or not msg.is_realtime)
        ]

    def clear(self) -> None:
        """Forget everything received so far (caller's thread, while nothing arrives)."""
        del self._received[:]
        del self._parsed[:]

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

    def close(self) -> None:
        """Deactivate and close the client (unregisters both ports)."""
        try:
            self.client.deactivate()
        finally:
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
