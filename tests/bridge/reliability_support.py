"""Helpers for the reliability tests (fuzz flood, faults, soak): a JACK peer, a killable server.

:class:`MidiPeer` is a JACK-Client client (not RtMidi, so it is a peer Antiphon does not share
code with) whose process callback plays scheduled messages, floods at a fixed rate and records
everything arriving, each timestamped in JACK frame time.  :class:`JackServer` is a private dummy
server that a test may SIGKILL and restart (:class:`bridge.dummy_jack.DummyJack`).  Also: note
pairing (:func:`benchmarks.notecheck.unmatched`), OSC status, a model that answers
in short notes, and VmRSS from /proc.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jack
import mido
import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from waiting import wait_for

from benchmarks.notecheck import unmatched
from bridge.dummy_jack import DummyJack, jack_env

_HERE = Path(__file__).resolve().parent
_SCRIPT_PATH = os.pathsep.join(
    [str(_HERE.parents[1]), str(_HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
)
"""What this file needs on sys.path when it runs as a script (the recorder): the repository
(``benchmarks``) and ``tests/`` (``waiting``), as pytest has them."""

FAULT_SERVER = "antiphon-fault"
"""The one server name the fault tests kill and restart (never the shared antiphon-test)."""

MAX_EVENTS_PER_PERIOD = 48
"""A flood writes at most this many events per JACK period (a 64-frame buffer holds 64)."""


JackServer = DummyJack
"""A dummy JACK server of our own: ``start``, ``kill`` (SIGKILL), ``stop`` (always call it)."""


@contextlib.contextmanager
def private_server(name: str, log_path: Path, *, sync: bool = False) -> Iterator[JackServer]:
    """A JACK server of our own, running, with ``JACK_DEFAULT_SERVER`` (and the other JACK
    variables) pointing at it meanwhile; stopped, and the variables restored, after."""
    server = JackServer(name, log_path, sync=sync)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in server.env.items():
                patch.setenv(key, value)
            yield server
    finally:
        server.stop()


# ---- the peer -----------------------------------------------------------------------------------


class MidiPeer:
    """One JACK client with MIDI ``out`` (plays, floods) and ``in`` (records); see the module
    docstring.  The process callback (JACK's thread) only moves bytes between deques/lists."""

    def __init__(self, name: str, server: str) -> None:
        self.client = jack.Client(name, no_start_server=True, servername=server)
        self.rate = float(self.client.samplerate)
        self.outport = self.client.midi_outports.register("out")
        self.inport = self.client.midi_inports.register("in")
        self._pending: deque[tuple[int, bytes]] = deque()
        self._received: list[tuple[int, bytes]] = []
        self._parsed: list[tuple[float, mido.Message]] = []  # caller's thread only
        self._parsed_upto = 0
        self._flood: Sequence[bytes] = ()
        self._flood_start = 0
        self._flood_rate = 0.0
        self.flood_written = 0
        self.flood_first_frame: int | None = None
        self.flood_last_frame: int | None = None
        self.write_errors = 0
        self.shutdown = threading.Event()
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self.client.set_shutdown_callback(lambda status, reason: self.shutdown.set())
        self.client.set_process_callback(self._process)
        self.client.activate()

    # ----- JACK's thread ------------------------------------------------------------------------
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
                room = MAX_EVENTS_PER_PERIOD - written
                count = min(due - self.flood_written, room)
                for i in range(count):
                    self.outport.write_midi_event(
                        i * frames // max(count, 1), flood[self.flood_written]
                    )
                    self.flood_written += 1
                if count > 0:
                    if self.flood_first_frame is None:
                        self.flood_first_frame = start
                    self.flood_last_frame = end
        except jack.JackError:
            self.write_errors += 1

    # ----- caller's thread ----------------------------------------------------------------------
    def now(self) -> float:
        return self.client.frame_time / self.rate

    def play(
        self, messages: Sequence[tuple[float, mido.Message]], delay: float = 0.05
    ) -> tuple[float, float]:
        """Schedule ``(seconds, message)`` (sorted) from ``delay`` s from now; JACK times of the
        first and the last message."""
        base = self.client.frame_time + round(delay * self.rate)
        frames = [(base + round(t * self.rate), bytes(m.bytes())) for t, m in messages]
        self._pending.extend(frames)
        return base / self.rate, (frames[-1][0] if frames else base) / self.rate

    def send_raw(self, data: bytes) -> None:
        self._pending.append((self.client.frame_time, data))

    def flood(self, messages: Sequence[bytes], rate: float, delay: float = 0.05) -> None:
        """Write ``messages`` at ``rate`` per second, starting ``delay`` s from now."""
        self.flood_written = 0
        self.flood_first_frame = self.flood_last_frame = None
        self._flood_rate = rate
        self._flood_start = self.client.frame_time + round(delay * self.rate)
        self._flood = messages

    @property
    def flooding(self) -> bool:
        return self.flood_written < len(self._flood)

    @property
    def idle(self) -> bool:
        return not self._pending and not self.flooding

    def received(self, since: float = 0.0) -> list[tuple[float, mido.Message]]:
        """Everything that arrived at or after JACK time ``since`` (real-time bytes left out).

        Only what is new is parsed, so polling this stays cheap (a slow poll would hold the GIL
        and make our own process callback miss JACK cycles)."""
        raw = self._received
        end = len(raw)
        for frame, data in raw[self._parsed_upto : end]:
            if not data or data[0] >= 0xF8:
                continue
            try:
                self._parsed.append((frame / self.rate, mido.Message.from_bytes(list(data))))
            except ValueError:
                continue
        self._parsed_upto = end
        start = bisect.bisect_left(self._parsed, since, key=lambda item: item[0])
        return self._parsed[start:]

    def raw_count(self) -> int:
        return len(self._received)

    def connect(
        self,
        bridge_in: str = "Antiphon:Antiphon In",
        bridge_out: str = "Antiphon:Antiphon Out",
        timeout: float = 10.0,
    ) -> None:
        """Connect our out → the bridge's input and the bridge's output → our in."""
        deadline = time.monotonic() + timeout
        while True:
            names = {p.name for p in self.client.get_ports(is_midi=True)}
            if bridge_in in names and bridge_out in names:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"bridge ports never appeared: {sorted(names)}")
            time.sleep(0.05)
        self.client.connect(self.outport, bridge_in)
        self.client.connect(bridge_out, self.inport)

    def close(self) -> None:
        with contextlib.suppress(jack.JackError):
            self.client.deactivate()
        self.client.close()


class RecorderProcess:
    """Records a JACK MIDI output port from a separate process for a whole test.

    A recorder inside the test process shares the GIL with the peer that plays or floods, so
    under load its process callback misses JACK cycles and "loses" note-offs the bridge did
    send; this one does nothing but append raw events (its main thread sleeps).  ``stop()``
    returns every message with its JACK time.
    """

    def __init__(
        self, name: str, server: str, source: str, path: Path, timeout: float = 20.0
    ) -> None:
        self.path = path
        self.process = subprocess.Popen(
            [sys.executable, __file__, "record", name, server, source, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **jack_env(server), "PYTHONPATH": _SCRIPT_PATH},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until connected (or it failed)
        if line.strip() != "recording":
            self.process.kill()
            raise AssertionError(
                f"recorder did not start: {line!r} "
                f"{self.process.stderr.read() if self.process.stderr else ''}"
            )

    def stop(self, timeout: float = 20.0) -> list[tuple[float, mido.Message]]:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=timeout)
        messages = []
        for line in self.path.read_text().splitlines():
            t, _, hexdata = line.partition(" ")
            data = bytes.fromhex(hexdata)
            if not data or data[0] >= 0xF8:
                continue
            with contextlib.suppress(ValueError):
                messages.append((float(t), mido.Message.from_bytes(list(data))))
        return messages


def _record_main(name: str, server: str, source: str, path: str) -> int:
    """``python reliability_support.py record NAME SERVER SOURCE FILE`` (see RecorderProcess)."""
    client = jack.Client(name, no_start_server=True, servername=server)
    inport = client.midi_inports.register("in")
    events: list[tuple[int, bytes]] = []
    stop = threading.Event()

    @client.set_process_callback
    def process(frames: int) -> None:
        start = client.last_frame_time
        for offset, data in inport.incoming_midi_events():
            events.append((start + offset, bytes(data)))

    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.activate()
    deadline = time.monotonic() + 10
    while not any(p.name == source for p in client.get_ports(is_midi=True, is_output=True)):
        if time.monotonic() > deadline:
            print(f"no port {source}", flush=True)
            return 1
        time.sleep(0.05)
    client.connect(source, inport)
    print("recording", flush=True)
    while not stop.wait(0.2):
        pass
    client.deactivate()
    rate = float(client.samplerate)
    with open(path, "w") as out:
        for frame, data in events:
            out.write(f"{frame / rate:.6f} {data.hex()}\n")
    client.close()
    return 0


# ---- MIDI checks --------------------------------------------------------------------------------


def note_ons(messages: Iterable[tuple[float, mido.Message]]) -> list[tuple[float, mido.Message]]:
    return [(t, m) for t, m in messages if m.type == "note_on" and m.velocity > 0]


def phrase(
    pitches: Sequence[int],
    spacing_s: float,
    length_s: float,
    *,
    channel: int = 0,
    velocity: int = 90,
) -> list[tuple[float, mido.Message]]:
    """Notes ``spacing_s`` apart, each ``length_s`` long, as sorted (seconds, message)."""
    timed = []
    for i, pitch in enumerate(pitches):
        on = i * spacing_s
        timed.append(
            (on, 1, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel))
        )
        timed.append((on + length_s, 0, mido.Message("note_off", note=pitch, channel=channel)))
    timed.sort(key=lambda e: (e[0], e[1]))
    return [(t, m) for t, _, m in timed]


def wait_answer(
    peer: MidiPeer, since: float, *, quiet: float = 0.3, timeout: float = 20.0
) -> list[tuple[float, mido.Message]]:
    """What arrived after ``since`` once an answer came, every note ended and ``quiet`` s passed."""

    def done() -> list[tuple[float, mido.Message]] | None:
        got = peer.received(since)
        if note_ons(got) and not unmatched(got) and peer.now() - got[-1][0] >= quiet:
            return got
        return None

    try:
        return wait_for(done, timeout, "a complete answer")
    except AssertionError:
        got = [
            (round(t - since, 3), m)
            for t, m in peer.received(since)
            if m.type in ("note_on", "note_off")
        ]
        raise AssertionError(
            f"no complete answer within {timeout:g} s: {len(note_ons(got))} "
            f"note-ons, unmatched {unmatched(got)[:10]}, first {got[:12]}, "
            f"peer now +{peer.now() - since:.2f} s"
        ) from None


# ---- OSC, models, memory ------------------------------------------------------------------------


class Osc:
    """An OSC client on its own UDP socket; replies come back to it."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def send(self, address: str, *args: Any) -> None:
        self.sock.sendto(build_msg(address, list(args)).dgram, self.target)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def receive(self, timeout: float = 5.0) -> tuple[str, list[Any]]:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no OSC reply within {timeout:g} s") from None
        msg = OscMessage(data)
        return msg.address, list(msg.params)

    def ask(self, address: str, *args: Any, timeout: float = 5.0) -> tuple[str, list[Any]]:
        self.send(address, *args)
        return self.receive(timeout)

    def drain(self) -> int:
        """Throw away replies still queued; how many."""
        self.sock.settimeout(0.0)
        count = 0
        while True:
            try:
                self.sock.recv(65536)
            except (BlockingIOError, TimeoutError):
                return count
            count += 1

    def close(self) -> None:
        self.sock.close()

    def status(self) -> dict[str, Any]:
        address, args = self.ask("/antiphon/status")
        assert address == "/antiphon/status", (address, args)
        return dict(zip(args[::2], args[1::2], strict=True))


def quick_model(src: Path, dst: Path, *, steps: Sequence[int] = (1, 2)) -> Path:
    """A copy of a test model whose output bias favours shifts and durations of ``steps`` grid
    steps and no rests, so answers are short and quick to play."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from bridge.tokens import TokenScheme

    model = onnx.load(str(src))
    meta = {p.key: p.value for p in model.metadata_props}
    scheme = TokenScheme.from_json(meta["antiphon.token_scheme"])
    (bias,) = [t for t in model.graph.initializer if t.name == "b_out"]
    values = numpy_helper.to_array(bias).copy()
    for n in range(scheme.max_shift + 1):
        values[scheme.shift_token(n)] += 4.0 if n in steps else -4.0
    for n in range(1, scheme.max_duration + 1):
        values[scheme.duration_token(n)] += 4.0 if n in steps else -4.0
    values[scheme.rest] -= 8.0
    bias.CopyFrom(numpy_helper.from_array(values.astype(np.float32), "b_out"))
    for prop in model.metadata_props:
        if prop.key == "antiphon.training":
            prop.value = json.dumps({"fixture": "random, biased to short events"})
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


def vm_rss_kb(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (``VmRSS`` in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "record":
        sys.exit(_record_main(*sys.argv[2:]))
    sys.exit("usage: reliability_support.py record NAME SERVER SOURCE FILE")
