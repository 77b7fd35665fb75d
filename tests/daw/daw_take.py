"""One Ardour take against a real ``antiphon bridge``, and the measurements the DAW tests make.

A take: Ardour plays the call (example phrases, one after another on bars of its grid) from its
``call`` track into "Antiphon In", sends its MIDI clock there too (or only to the listener, for
a take on the bridge's own ``--bpm``), and records "Antiphon Out" on the armed ``answer`` track.
Two more JACK clients (``examples/jack_peer.JackPeer``), the *listeners*, hear the same answer
and Ardour's clock, stamped in JACK frames; each has one source, because JACK drops a whole
cycle of a multi-source MIDI input when one source's buffer is not ready ("MidiBufferMixdown -
invalid source buffer", seen under load).  Times the listeners heard become beats of Ardour's
grid by interpolating between the clock ticks (tick *k* after Start is beat k/24), which also
keeps the dummy driver's frame-time jumps out of the comparison.  A take whose clock listener
missed a tick is recorded again (:class:`ClockLost`).

A take in which Ardour lost JACK ("JACK HALTED") is recorded again from scratch, with a fresh
session, bridge and listener (so ``--seed`` still gives the first answer), up to three times.
"""

from __future__ import annotations

import bisect
import math
import os
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mido
from ardour_session import (
    JackHalted,
    add_call_region,
    create_session,
    read_take,
    roll,
    take_files,
    write_call,
)
from jack_peer import JackPeer

from bridge.midifile import read_midi

__all__ = [
    "PHRASES",
    "ClockLost",
    "Note",
    "Segment",
    "Take",
    "TakeSpec",
    "layout",
    "record_take",
    "sounding_at_end",
]

PHRASES = Path(__file__).resolve().parents[2] / "examples" / "phrases"
ATTEMPTS = 6
"""Takes recorded at most: Ardour loses its JACK connection in about 1 of 8 session steps ("JACK
HALTED", any client, not ours) and a take has three steps, so 3 attempts all failed in one CI
run of six (about 4 % per take at 3 attempts; 0.1 % at 6).  A lost attempt costs a few seconds."""
STATUS_KEYS = (
    "late_notes",
    "clock_ticks_lost",
    "clock_timeline_shifts",
    "tempo_bpm",
    "clock_running",
    "answer_model",
    "bad_messages",
    "error",
)
LEAD_IN_BEATS = 4.0  # the clock runs a bar before the first call: the bridge locks its tempo

Note = tuple[float, int, float, int]
"""``(onset_beats, pitch, duration_beats, velocity)``."""


@dataclass(frozen=True)
class TakeSpec:
    """What one take plays and how the bridge runs.

    ``clock``: Ardour's clock drives the bridge (``--start bar``); otherwise the bridge keeps its
    own ``--bpm`` (set to Ardour's tempo, ``--start now``) and only the listener gets the clock.
    ``stop_into_last``: stop the transport this many beats after the last answer's bar instead of
    letting it finish (the bridge must then end its notes).
    """

    name: str
    bpm: float
    clock: bool
    phrases: tuple[str, ...]
    seed: int = 7
    answer_bars: int = 2
    silence_beats: float = 1.0
    beats_per_bar: int = 4
    stop_into_last: float | None = None

    def bridge_flags(self) -> list[str]:
        flags = [
            "--backend",
            "jack",
            "--seed",
            str(self.seed),
            "--bpm",
            f"{self.bpm:g}",
            "--beats-per-bar",
            str(self.beats_per_bar),
            "--unit",
            "bars",
            "--length",
            str(self.answer_bars),
            "--silence",
            f"{self.silence_beats:g}",
            "--temperature",
            "0.8",
            "--osc-port",
            "0",
        ]
        return [*flags, "--start", "bar" if self.clock else "now"]


@dataclass(frozen=True)
class Segment:
    """One phrase of the call on Ardour's grid (beats) and the window its answer must fall in."""

    phrase: str
    start: float  # the phrase's first beat
    end: float  # its last note-off
    answer_bar: float  # the first bar at or after end + silence (where --start bar answers)
    until: float  # the next phrase's start, or the stop

    @property
    def window(self) -> tuple[float, float]:
        return self.end, self.until


def layout(spec: TakeSpec) -> tuple[list[Note], list[Segment], float]:
    """The call's notes, its segments, and the beat at which Ardour stops.

    Each phrase starts on a bar; its answer is due on the first bar after the silence that ends
    the phrase, and the next phrase waits for the answer plus a spare bar (a generation that
    misses its bar answers on the next one).
    """
    bar = float(spec.beats_per_bar)
    notes: list[Note] = []
    segments: list[Segment] = []
    start = LEAD_IN_BEATS
    stop = start
    for k, name in enumerate(spec.phrases):
        phrase = [n.as_tuple() for n in read_midi(PHRASES / f"{name}.mid").notes]
        end = start + max(o + d for o, _, d, _ in phrase)
        answer_bar = math.ceil((end + spec.silence_beats) / bar - 1e-9) * bar
        answer_end = answer_bar + spec.answer_bars * bar
        last = k == len(spec.phrases) - 1
        if last and spec.stop_into_last is not None:
            until = stop = answer_bar + spec.stop_into_last
        elif last:
            until = stop = answer_end + bar / 2
        else:
            until = answer_end + bar
        notes += [(o + start, p, d, v) for o, p, d, v in phrase]
        segments.append(Segment(name, start, end, answer_bar, until))
        start = until
    return notes, segments, stop


class ClockLost(AssertionError):
    """The clock listener missed ticks (JACK dropped a cycle of MIDI): the take's times cannot be
    put on Ardour's grid, so it is recorded again."""


@dataclass
class Take:
    """What Ardour recorded and what the listener heard in one take."""

    spec: TakeSpec
    segments: list[Segment]
    stop_beat: float
    recorded: list[Note]  # Ardour's take file, beats of its grid
    unterminated: int  # note-ons in the take file without a note-off
    heard: list[tuple[float, mido.Message]]  # the listeners: JACK seconds, clock included
    bridge_log: str
    bridge_exit: int
    ardour_output: str
    attempts: int
    stopped_sample: int  # where Ardour's transport stopped
    rate: float  # JACK sample rate
    status: dict[str, Any]  # the bridge's /antiphon/status reply after the take (evidence)
    retried: list[str]  # why earlier attempts were dropped
    period_s: float  # one JACK period
    ticks: list[float] = field(init=False)
    start: float = field(init=False)
    stop: float | None = field(init=False)

    def __post_init__(self) -> None:
        starts = [t for t, m in self.heard if m.type == "start"]
        if not starts:
            raise AssertionError(f"the listener heard no MIDI Start from Ardour ({self.spec.name})")
        self.start = starts[0]
        self.ticks = [t for t, m in self.heard if m.type == "clock" and t >= self.start]
        stops = [t for t, m in self.heard if m.type == "stop" and t >= self.start]
        self.stop = stops[0] if stops else None
        # Ardour ticks at every 24th of a beat from sample 0 up to where it stopped
        ticks_sent = self.stopped_sample / (self.rate * self.seconds_per_beat / 24)
        expected = {math.ceil(ticks_sent)}
        if abs(ticks_sent - round(ticks_sent)) < 0.01:  # stopped on a tick: rounding decides
            expected |= {round(ticks_sent), round(ticks_sent) + 1}
        if len(self.ticks) not in expected:
            raise ClockLost(
                f"the listener heard {len(self.ticks)} clock ticks, Ardour sent {max(expected)} "
                f"(stopped at sample {self.stopped_sample})"
            )

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.spec.bpm

    def beat_at(self, t: float) -> float:
        """Ardour's beat at JACK time ``t``: between the two clock ticks the listener heard."""
        ticks = self.ticks
        i = min(max(bisect.bisect_right(ticks, t) - 1, 0), len(ticks) - 2)
        return (i + (t - ticks[i]) / (ticks[i + 1] - ticks[i])) / 24.0

    def answer_messages(self) -> list[tuple[float, mido.Message]]:
        """The bridge's output as heard (no clock)."""
        return [(t, m) for t, m in self.heard if not m.is_realtime]

    def heard_notes(self) -> list[Note]:
        """The answer notes the listener heard, in beats of Ardour's grid."""
        from jack_peer import notes_from_messages

        notes = []
        for n in notes_from_messages(self.answer_messages()):
            onset = self.beat_at(n.onset)
            notes.append((onset, n.pitch, self.beat_at(n.onset + n.duration) - onset, n.velocity))
        return sorted(notes)

    def answers(self, notes: Sequence[Note] | None = None) -> list[list[Note]]:
        """``notes`` (default: the recorded ones) split by the segment whose window holds them."""
        source = self.recorded if notes is None else notes
        return [[n for n in source if seg.end <= n[0] < seg.until] for seg in self.segments]

    def describe(self) -> str:
        """For failure messages: the spec, the bridge's log and Ardour's output (tails)."""
        log = "\n".join(self.bridge_log.strip().splitlines()[-15:])
        ardour = "\n".join(self.ardour_output.strip().splitlines()[-8:])
        status = {k: self.status.get(k) for k in STATUS_KEYS}
        return (
            f"take {self.spec.name} ({self.spec.bpm:g} BPM, clock {self.spec.clock}, "
            f"{self.attempts} attempt(s) {self.retried}); bridge status after the take: {status}\n"
            f"--- bridge log ---\n{log}\n--- ardour ---\n{ardour}"
        )


def sounding_at_end(messages: Sequence[tuple[float, mido.Message]]) -> list[tuple[int, int]]:
    """(channel, pitch) still on after the last message: stuck notes."""
    on: dict[tuple[int, int], int] = {}
    for _, msg in messages:
        if msg.type == "note_on" and msg.velocity > 0:
            on[(msg.channel, msg.note)] = on.get((msg.channel, msg.note), 0) + 1
        elif msg.type in ("note_on", "note_off") and on.get((msg.channel, msg.note)):
            on[(msg.channel, msg.note)] -= 1
        elif msg.type == "control_change" and msg.control in (120, 123):
            on = {k: v for k, v in on.items() if k[0] != msg.channel}
    return sorted(k for k, v in on.items() if v > 0)


def record_take(
    spec: TakeSpec, *, binary: str, server: str, workdir: Path, start_bridge: Callable[..., Any]
) -> Take:
    """Record ``spec`` (retrying a take whose Ardour lost JACK); ``start_bridge(*flags,
    log_path=...)`` is tests/conftest.py's ``start_bridge``."""
    notes, segments, stop_beat = layout(spec)
    failures: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        folder = workdir / f"{spec.name}-{attempt}"
        try:
            take = _record_once(
                spec,
                notes,
                segments,
                stop_beat,
                binary=binary,
                server=server,
                folder=folder,
                start_bridge=start_bridge,
                attempt=attempt,
            )
            take.retried = failures
            return take
        except (JackHalted, ClockLost) as exc:
            failures.append(str(exc).splitlines()[0])
    raise AssertionError(f"no usable take in {ATTEMPTS} attempts: {failures}")


def _record_once(
    spec: TakeSpec,
    notes: list[Note],
    segments: list[Segment],
    stop_beat: float,
    *,
    binary: str,
    server: str,
    folder: Path,
    start_bridge: Callable[..., Any],
    attempt: int,
) -> Take:
    folder.mkdir(parents=True)
    session = create_session(
        binary, folder / "session", spec.name, bpm=spec.bpm, beats_per_bar=spec.beats_per_bar
    )
    call = folder / "call.mid"
    write_call(notes, call)
    add_call_region(session, call)
    bridge = start_bridge(*spec.bridge_flags(), log_path=folder / "bridge.log")
    try:
        with (
            JackPeer(f"daw-answer-{os.getpid()}", server=server) as listener,
            JackPeer(f"daw-clock-{os.getpid()}", server=server) as clock_listener,
        ):
            bridge_out = listener.connect_in("Antiphon Out")
            bridge_in = listener.find_port("Antiphon In", is_input=True)
            clock_to = [f"{clock_listener.name}:in"] + ([bridge_in] if spec.clock else [])
            result = roll(
                binary,
                session,
                bridge_in=bridge_in,
                bridge_out=bridge_out,
                clock=True,
                clock_to=clock_to,
                stop_s=stop_beat * 60.0 / spec.bpm,
            )
            time.sleep(0.3)  # what the bridge sends right after the stop is heard too
            status = bridge_status(bridge.osc_port)
            heard = sorted(
                listener.received() + clock_listener.received(realtime=True), key=lambda e: e[0]
            )
            listener_rate = listener.rate
            period_s = listener.client.blocksize / listener.rate
    finally:
        bridge_exit = bridge.stop()
    files = take_files(session)
    if len(files) != 1:
        raise AssertionError(
            f"expected one take on the answer track, found {files}\n{result.output[-2000:]}"
        )
    recorded, unterminated = read_take(files[0])
    return Take(
        spec,
        segments,
        stop_beat,
        recorded,
        unterminated,
        heard,
        bridge.log(),
        bridge_exit,
        result.output,
        attempt,
        result.stopped_at,
        listener_rate,
        status,
        [],
        period_s,
    )


def bridge_status(port: int, timeout: float = 5.0) -> dict[str, Any]:
    """The bridge's ``/antiphon/status`` reply as a dict ({"error": ...} if none came)."""
    from pythonosc.osc_message_builder import build_msg
    from pythonosc.osc_packet import OscPacket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        sock.sendto(build_msg("/antiphon/status", []).dgram, ("127.0.0.1", port))
        try:
            while True:
                for timed in OscPacket(sock.recv(65536)).messages:
                    if timed.message.address == "/antiphon/status":
                        params = list(timed.message.params)
                        return dict(zip(params[::2], params[1::2], strict=False))
        except OSError as exc:
            return {"error": f"no /antiphon/status reply: {exc}"}


def grid_offsets_s(beats: Sequence[float], spb: float, step_beats: float = 0.25) -> list[float]:
    """Distance in seconds from each beat position to the nearest grid step (sixteenths)."""
    return [abs(b / step_beats - round(b / step_beats)) * step_beats * spb for b in beats]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0
