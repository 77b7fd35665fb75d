"""The real bridge process on a dummy JACK server, with real MIDI and OSC peers.

``antiphon bridge`` runs as a subprocess (its backend chosen automatically: only a JACK server is
reachable here).  A python-rtmidi JACK client plays a phrase into "Antiphon In", another records
"Antiphon Out"; python-osc talks to the OSC port.

These tests count every message (every note-on has its note-off), so they are about delivery,
not timing under load: the server runs in synchronous mode (``jackd -S``, this module's own
``antiphon-sync``), where a client that is late for a cycle delays the cycle instead of losing
its input, and the recorder is a polled queue (RtMidi's C++ callback fills it; a thread here
drains it), never a Python callback in JACK's thread, which is late whenever another thread holds
the GIL.  On the shared asynchronous server a late recorder lost two note-offs the bridge had
sent (CI, stop 17).  The model is the random tiny test model with its
output bias pushed towards short shifts and durations (and away from rests), so answers are quick
to play; it is still a random model, so tests check structure (counts, note-offs, determinism),
not musical quality.

Measured numbers (bridge start-up, phrase end → first answer note) are printed with ``-s`` and
attached as junit properties.
"""

from __future__ import annotations

import math
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mido
import pytest
import rtmidi
from pythonosc.osc_message import OscMessage
from reliability_support import JackServer, private_server, quick_model, unmatched
from support.osc import OscClient

from bridge.ports import find_port

pytestmark = pytest.mark.jack

BPM = 90.0
SPB = 60.0 / BPM
PHRASE = [(0.0, 60), (0.5, 64), (1.0, 67), (1.5, 72)]  # (beat, pitch), each half a beat long
START = (
    "--bpm",
    str(BPM),
    "--silence",
    "0.5",
    "--osc-port",
    "0",
    "--log-level",
    "info",
)

StartBridge = Callable[..., Any]

SYNC_SERVER = "antiphon-sync"
"""This module's server (jackd2 has 8 name slots: a fixed name, shared with the other modules
that need a synchronous server, one module at a time)."""

POLL_S = 0.001
"""How often the recorder drains RtMidi's queue: the resolution of its timestamps."""


@pytest.fixture(scope="module")
def sync_jack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JackServer]:
    """A synchronous dummy JACK server, ``JACK_DEFAULT_SERVER`` pointing at it meanwhile."""
    log = tmp_path_factory.mktemp("jack") / "jackd-sync.log"
    with private_server(SYNC_SERVER, log, sync=True) as server:
        yield server


# ---- a quick random model -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("jack-models")
    quick_model(tiny_model_path, directory / "quick.onnx")
    quick_model(tiny_model_path, directory / "quick2.onnx")
    return directory


# ---- MIDI peers ------------------------------------------------------------------------------


class Recording:
    """Everything an RtMidi input receives, drained from its queue by a thread of its own
    (:meth:`stop` joins it), each message stamped with ``time.monotonic()`` when drained."""

    def __init__(self, rt: Any) -> None:
        self._rt = rt
        self.messages: list[tuple[float, mido.Message]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="rtmidi-recorder", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            while (event := self._rt.get_message()) is not None:
                message = mido.Message.from_bytes(event[0])
                with self._lock:
                    self.messages.append((time.monotonic(), message))
            self._stop.wait(POLL_S)

    def since(self, t: float) -> list[tuple[float, mido.Message]]:
        with self._lock:
            return [(when, m) for when, m in self.messages if when >= t]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Peer:
    """A python-rtmidi JACK client connected to one of the bridge's ports: a player
    (``kind="out"``) or a recorder (``kind="in"``, its messages in :attr:`recording`)."""

    def __init__(self, kind: str, client: str, target: str) -> None:
        self.rt: Any = (rtmidi.MidiOut if kind == "out" else rtmidi.MidiIn)(
            rtapi=rtmidi.API_UNIX_JACK, name=client
        )
        self.recording: Recording | None = None
        deadline = time.monotonic() + 10
        while True:
            names = self.rt.get_ports()
            exact = [i for i, n in enumerate(names) if n.endswith(":" + target)]
            if exact:
                self.rt.open_port(exact[0] if len(exact) == 1 else find_port(names, target, kind))
                break
            assert time.monotonic() < deadline, f"{target!r} never appeared: {names}"
            time.sleep(0.05)
        if kind == "in":
            self.rt.ignore_types(sysex=True, timing=True, active_sense=True)
            self.recording = Recording(self.rt)

    def since(self, t: float) -> list[tuple[float, mido.Message]]:
        assert self.recording is not None, "only a recorder records"
        return self.recording.since(t)

    def send(self, msg: mido.Message) -> None:
        self.rt.send_message(msg.bytes())

    def close(self) -> None:
        if self.rt.is_deleted:  # deleting twice crashes RtMidi
            return
        if self.recording is not None:
            self.recording.stop()
        self.rt.close_port()
        self.rt.delete()


@pytest.fixture
def peers(sync_jack: JackServer) -> Iterator[Callable[[], tuple[Peer, Peer]]]:
    made: list[Peer] = []

    def connect() -> tuple[Peer, Peer]:
        # the input client first: an RtMidi output client opened before an input client
        # leaves the input unscheduled in about half the tries (jackd 1.9.21)
        recorder = Peer("in", "antiphon-it-recorder", "Antiphon Out")
        player = Peer("out", "antiphon-it-player", "Antiphon In")
        made.extend([recorder, player])
        return player, recorder

    yield connect
    for peer in made:
        peer.close()


def next_beat(osc: OscClient, *, lead_beats: float = 0.5) -> float:
    """When (``time.monotonic()``) the bridge's grid reaches its next beat at least
    ``lead_beats`` from now, from the ``beat`` ``/antiphon/status`` reports (the quickest of
    three round trips; the reply is taken as made halfway through)."""
    replies = []
    for _ in range(3):
        sent = time.monotonic()
        beat = float(osc.status()["beat"])
        back = time.monotonic()
        replies.append((back - sent, (sent + back) / 2, beat))
    _, at, beat = min(replies)
    return at + (math.ceil(beat + lead_beats) - beat) * SPB


def play_phrase(player: Peer, osc: OscClient) -> float:
    """Play :data:`PHRASE` in real time from the bridge's next beat; returns the moment the
    last note-off was sent.

    The bridge quantizes a call on its own beat grid, which runs from its start: a phrase begun
    anywhere can have its onsets near the middle between two grid
    steps, where a few milliseconds of scheduling decide which step they take, so two bridges
    would hear the same phrase as different calls.  Begun on the beat, every onset is half a
    step (83 ms) from a rounding boundary."""
    start = next_beat(osc)
    events = []
    for beat, pitch in PHRASE:
        events.append((beat * SPB, mido.Message("note_on", note=pitch, velocity=90)))
        events.append(((beat + 0.45) * SPB, mido.Message("note_off", note=pitch)))
    for at, msg in sorted(events, key=lambda e: e[0]):
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        player.send(msg)
    return time.monotonic()


def note_ons(messages: list[tuple[float, mido.Message]]) -> list[tuple[float, mido.Message]]:
    return [(t, m) for t, m in messages if m.type == "note_on" and m.velocity > 0]


def wait_answer(
    recorder: Peer, since: float, *, quiet: float = 0.6, timeout: float = 30
) -> list[tuple[float, mido.Message]]:
    """Everything recorded after ``since`` once an answer came and went quiet, every note off."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = recorder.since(since)
        if note_ons(got) and not unmatched(got) and time.monotonic() - got[-1][0] >= quiet:
            return got
        time.sleep(0.02)
    got = recorder.since(since)
    raise AssertionError(
        f"no complete answer within {timeout} s: {len(note_ons(got))} notes, "
        f"unmatched {unmatched(got)}"
    )


def answer_of(
    player: Peer, recorder: Peer, osc: OscClient
) -> tuple[float, list[tuple[float, mido.Message]]]:
    phrase_end = play_phrase(player, osc)
    return phrase_end, wait_answer(recorder, phrase_end)


def pitches(messages: list[tuple[float, mido.Message]]) -> list[int]:
    return [m.note for _, m in note_ons(messages)]


def jack_port_names() -> list[str]:
    """Every port on the JACK server (jack_lsp)."""
    out = subprocess.run(["jack_lsp"], capture_output=True, text=True, check=True, timeout=10)
    return [line for line in out.stdout.splitlines() if line.strip()]


# ---- tests ---------------------------------------------------------------------------------------


def test_a_phrase_is_answered_on_antiphon_out_with_every_note_off(
    bridge_process: StartBridge,
    peers: Callable[[], tuple[Peer, Peer]],
    model_dir: Path,
    record_property: Callable[[str, object], None],
) -> None:
    events_in = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    events_in.bind(("127.0.0.1", 0))
    events_in.settimeout(0.5)
    bridge = bridge_process(
        "--model",
        str(model_dir / "quick.onnx"),
        "--seed",
        "1",
        "--length",
        "8",
        "--osc-out",
        f"127.0.0.1:{events_in.getsockname()[1]}",
        *START,
    )
    try:
        assert '"Antiphon In"' in bridge.ready_line and '"Antiphon Out"' in bridge.ready_line
        assert "backend jack" in bridge.ready_line  # chosen automatically
        assert {"Antiphon:Antiphon In", "Antiphon:Antiphon Out"} <= set(jack_port_names())
        player, recorder = peers()
        phrase_end, answer = answer_of(player, recorder, OscClient(bridge.osc_port))
        ons = note_ons(answer)
        assert len(ons) >= 8  # 8 note events, each a note or a chord
        assert unmatched(answer) == []
        assert {m.channel for _, m in answer if hasattr(m, "channel")} == {0}  # --out-channel 1
        latency_ms = (ons[0][0] - phrase_end) * 1e3
        silence_ms = 0.5 * SPB * 1e3
        print(
            f"\nbridge start-up {bridge.startup_s * 1e3:.0f} ms; phrase end → first answer "
            f"note {latency_ms:.0f} ms (silence {silence_ms:.0f} ms + "
            f"{latency_ms - silence_ms:.0f} ms)"
        )
        record_property("startup_ms", round(bridge.startup_s * 1e3))
        record_property("phrase_end_to_first_note_ms", round(latency_ms))
        assert latency_ms >= silence_ms - 20  # it waited for the silence that ends the phrase

        addresses = []
        while True:
            try:
                addresses.append(OscMessage(events_in.recv(65536)).address)
            except TimeoutError:
                break
        assert addresses[0] in ("/antiphon/answer/plan", "/antiphon/answer/begin")
        assert "/antiphon/answer/begin" in addresses and addresses[-1] == "/antiphon/answer/end"
        assert addresses.count("/antiphon/note") == len(ons)
    finally:
        events_in.close()
        status = bridge.stop(signal.SIGINT)
    log = bridge.log()
    assert status == 0, log
    assert "Traceback" not in log
    assert re.search(r"answer 1: call 4 events, answer \d+ events .*first note [\d.]+ ms", log), log
    assert [p for p in jack_port_names() if p.startswith("Antiphon")] == []


def test_osc_length_and_temperature_change_the_next_answer(
    bridge_process: StartBridge,
    peers: Callable[[], tuple[Peer, Peer]],
    model_dir: Path,
) -> None:
    """Two bridges with the same --seed hear the same phrase twice.  Their first answers agree
    (so answers are reproducible); before the second, both get /antiphon/length 12 but only the
    second bridge /antiphon/temperature 0.3 — so the second answers differ by temperature alone."""
    flags = ("--model", str(model_dir / "quick.onnx"), "--seed", "11", "--length", "3", *START)

    first = bridge_process(*flags)
    player, recorder = peers()
    osc = OscClient(first.osc_port)
    _, a0 = answer_of(player, recorder, osc)
    osc.send("/antiphon/length", 12)
    assert osc.status()["length"] == 12
    _, a1 = answer_of(player, recorder, osc)
    assert first.stop(signal.SIGINT) == 0
    player.close()
    recorder.close()

    second = bridge_process(*flags)
    player, recorder = peers()
    osc = OscClient(second.osc_port)
    _, b0 = answer_of(player, recorder, osc)
    osc.send("/antiphon/length", 12)
    osc.send("/antiphon/temperature", 0.3)
    status = osc.status()
    assert (status["length"], status["temperature"]) == (12, pytest.approx(0.3))
    _, b1 = answer_of(player, recorder, osc)
    assert second.stop(signal.SIGTERM) == 0

    print(
        f"\nanswers (note-ons): length 3 → {len(pitches(a0))}, length 12 → {len(pitches(a1))}; "
        f"length 12 at temperature 0.3 → {len(pitches(b1))}"
    )
    assert 3 <= len(pitches(a0)) <= 9  # 3 note events of at most a 3-note chord
    assert len(pitches(a1)) >= 12 and len(pitches(b1)) >= 12  # 12 note events
    assert pitches(b0) == pitches(a0)  # --seed: the same phrase gets the same answer
    assert pitches(b1) != pitches(a1)  # only the temperature differs


def test_osc_control_over_udp_against_the_real_engine(
    bridge_process: StartBridge,
    peers: Callable[[], tuple[Peer, Peer]],
    model_dir: Path,
    antiphon: Callable[..., Any],
) -> None:
    bridge = bridge_process(
        "--model", str(model_dir / "quick.onnx"), "--cc", "temperature=21", *START
    )
    osc = OscClient(bridge.osc_port)
    status = osc.status()
    assert status["model"] == "quick" and status["bpm"] == pytest.approx(BPM)
    assert status["mode"] == "call" and status["in_channel"] == "none"
    assert status["cc_bindings"] == "temperature=21"

    listed = antiphon("ports")
    assert listed.returncode == 0
    assert "backend: jack" in listed.stdout
    assert "  Antiphon:Antiphon Out" in listed.stdout.split("outputs")[0]  # readable: --in
    assert "  Antiphon:Antiphon In" in listed.stdout.split("outputs")[1]  # writable: --out

    player, _ = peers()
    player.send(mido.Message("control_change", control=21, value=127))  # the bound CC
    deadline = time.monotonic() + 5
    while osc.status()["temperature"] != pytest.approx(5.0):
        assert time.monotonic() < deadline, "CC 21 did not set the temperature"
        time.sleep(0.05)
    assert osc.ask("/antiphon/temperature", float("nan"))[0] == "/antiphon/error"
    assert osc.ask("/antiphon/tempo", "fast") == (
        "/antiphon/error",
        ["/antiphon/tempo", "expects a number, got str 'fast'"],
    )
    assert osc.ask("/antiphon/nope")[1] == ["/antiphon/nope", "unknown address"]
    assert osc.ask("/antiphon/model", "quick2") == ("/antiphon/model", ["quick2"])
    address, args = osc.ask("/antiphon/model", "../quick")
    assert address == "/antiphon/error" and "not allowed" in args[1]
    osc.send("/antiphon/mode", "listen")
    osc.send("/antiphon/tempo", 100)
    status = osc.status()
    assert (status["model"], status["mode"], status["tempo_bpm"]) == ("quick2", "listen", 100)
    assert status["osc_errors"] == 4
    assert bridge.stop(signal.SIGINT) == 0


def test_sigint_while_answering_ends_every_note_and_closes_the_ports(
    bridge_process: StartBridge,
    peers: Callable[[], tuple[Peer, Peer]],
    model_dir: Path,
) -> None:
    bridge = bridge_process(
        "--model", str(model_dir / "quick.onnx"), "--length", "200", "--seed", "5", *START
    )
    player, recorder = peers()
    phrase_end = play_phrase(player, OscClient(bridge.osc_port))
    deadline = time.monotonic() + 20
    while len(note_ons(recorder.since(phrase_end))) < 3:
        assert time.monotonic() < deadline, "the answer never started"
        time.sleep(0.01)
    assert bridge.stop(signal.SIGINT) == 0, bridge.log()
    time.sleep(0.2)
    answer = recorder.since(phrase_end)
    assert unmatched(answer) == []  # the bridge sent the note-off of every sounding note
    assert len(note_ons(answer)) < 200  # it really was interrupted
    assert [p for p in jack_port_names() if p.startswith("Antiphon")] == []


def test_a_taken_osc_port_fails_cleanly_and_leaves_no_port(
    antiphon: Callable[..., Any],
    model_dir: Path,
    sync_jack: JackServer,
) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        result = antiphon(
            "bridge",
            "--model",
            str(model_dir / "quick.onnx"),
            "--osc-port",
            str(taken.getsockname()[1]),
        )
    finally:
        taken.close()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--osc-port" in lines[0] and "Traceback" not in result.stderr
    assert [p for p in jack_port_names() if p.startswith("Antiphon")] == []


def test_existing_ports_instead_of_virtual_ones(
    bridge_process: StartBridge,
    model_dir: Path,
    sync_jack: JackServer,
) -> None:
    """The Windows/loopMIDI way: --in/--out name ports that exist (here two virtual ports of a
    stand-in "loopMIDI" client); the bridge connects its own client ports to them."""
    loop_out = rtmidi.MidiIn(rtapi=rtmidi.API_UNIX_JACK, name="loopMIDI B")  # input first
    loop_out.open_virtual_port("loop B")  # the bridge plays into this
    heard = Recording(loop_out)
    loop_in = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="loopMIDI A")
    loop_in.open_virtual_port("loop A")  # the DAW plays into this; the bridge reads it
    try:
        bridge = bridge_process(
            "--model",
            str(model_dir / "quick.onnx"),
            "--in",
            "loop A",
            "--out",
            "loop B",
            "--length",
            "4",
            "--seed",
            "2",
            *START,
        )
        assert '"loopMIDI A:loop A"' in bridge.ready_line
        assert '"loopMIDI B:loop B"' in bridge.ready_line
        connections = subprocess.run(
            ["jack_lsp", "-c"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
        assert "loopMIDI A:loop A\n   Antiphon:Antiphon In" in connections
        assert "loopMIDI B:loop B\n   Antiphon:Antiphon Out" in connections

        class Wrapped(Peer):
            def __init__(self) -> None:
                self.rt = loop_in

        phrase_end = play_phrase(Wrapped(), OscClient(bridge.osc_port))
        deadline = time.monotonic() + 30
        while True:
            answer = heard.since(phrase_end)
            if len(note_ons(answer)) >= 4 and not unmatched(answer):
                break
            assert time.monotonic() < deadline, f"no answer on loop B: {answer}"
            time.sleep(0.02)
        assert bridge.stop(signal.SIGINT) == 0
    finally:
        heard.stop()
        for port in (loop_in, loop_out):
            port.close_port()
            port.delete()
