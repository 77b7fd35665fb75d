"""Helpers for the reliability tests (fuzz flood, faults, soak): a killable server, a recorder.

The JACK peer that plays, floods and records is :class:`support.jack.JackPeer` (a JACK-Client
client, not RtMidi, so a peer Antiphon does not share code with); the OSC client is
:class:`support.osc.OscClient`.  Here: :class:`JackServer`, a private dummy server that a test
may SIGKILL and restart (:class:`bridge.dummy_jack.DummyJack`); :class:`RecorderProcess`, a
recorder in a process of its own; note pairing (:func:`benchmarks.notecheck.unmatched`), a model
that answers in short notes, and VmRSS from /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import jack
import mido
import pytest
from support.jack import JackPeer
from support.waiting import wait_for

from benchmarks.notecheck import unmatched
from bridge.dummy_jack import DummyJack, jack_env

_HERE = Path(__file__).resolve().parent
_SCRIPT_PATH = os.pathsep.join(
    [str(_HERE.parents[1]), str(_HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
)
"""What this file needs on sys.path when it runs as a script (the recorder): the repository
(``benchmarks``) and ``tests/`` (``support``), as pytest has them."""

FAULT_SERVER = "antiphon-fault"
"""The one server name the fault tests kill and restart (never the shared antiphon-test)."""

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


# ---- the recorder --------------------------------------------------------------------------------


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
    peer: JackPeer, since: float, *, quiet: float = 0.3, timeout: float = 20.0
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


# ---- models, memory ------------------------------------------------------------------------


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
