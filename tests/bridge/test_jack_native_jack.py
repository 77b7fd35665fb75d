"""The native JACK backend on a real dummy JACK server: exact frames in and out.

A :class:`~support.jack.JackPeer` (another JACK-Client client) plays messages at chosen
frames into "Antiphon:Antiphon In" and records "Antiphon:Antiphon Out" with the frame of every
event.  The server runs in synchronous mode (``jackd -S``): these tests count deliveries, and in
asynchronous mode a client late under CPU load is skipped for that cycle (its MIDI is lost); in
synchronous mode the cycle waits, and frame times stay what they are.  The server's name is
``$ANTIPHON_JACK_SYNC_SERVER`` (default ``antiphon-sync``, the suite's synchronous server).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty, Queue
from typing import NamedTuple

import mido
import pytest
from reliability_support import JackServer, private_server
from support.jack import JackPeer

from bridge.jack_native import JackMidiPorts
from bridge.jack_native_clock import FRAME_MASK, FrameClock

pytestmark = pytest.mark.jack

SERVER = os.environ.get("ANTIPHON_JACK_SYNC_SERVER", "antiphon-sync")
COUNT = 64


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JackServer]:
    with private_server(
        SERVER, Path(tmp_path_factory.mktemp("jack")) / "jackd-native.log", sync=True
    ) as jackd:
        yield jackd


class Peers(NamedTuple):
    ports: JackMidiPorts
    player: JackPeer
    recorder: JackPeer


@pytest.fixture
def peers(server: JackServer) -> Iterator[Peers]:
    """The bridge's ports, a player playing into them and a recorder recording them.

    Player and recorder are two clients: one client on both sides would close a loop in JACK's
    graph, and JACK delays one edge of a loop by a period."""
    ports = JackMidiPorts(FrameClock(), client_name="Antiphon")
    ports.open()
    player = JackPeer("native-player", server=server.name)
    recorder = JackPeer("native-recorder", server=server.name)
    try:
        player.client.connect(player.outport, "Antiphon:Antiphon In")
        recorder.client.connect("Antiphon:Antiphon Out", recorder.inport)
        deadline = time.monotonic() + 10.0
        while recorder.raw_count() == 0:  # the connection is live once a probe gets through
            assert time.monotonic() < deadline, "the recorder never heard the bridge"
            ports.output.send(mido.Message("stop"))  # a real-time byte: received() skips it
            time.sleep(0.01)
        yield Peers(ports, player, recorder)
    finally:
        player.close()
        recorder.close()
        ports.close()


def test_one_client_with_both_ports(peers: Peers, server: JackServer) -> None:
    assert {"Antiphon:Antiphon In", "Antiphon:Antiphon Out"} <= set(server.ports())


def test_input_is_stamped_with_the_frame_it_was_played_at(peers: Peers) -> None:
    ports, player, _ = peers
    queue: Queue[tuple[float, mido.Message]] = Queue()
    reader = ports.listen(queue)
    rng = random.Random(3)
    offsets = sorted(rng.uniform(0.0, 0.5) for _ in range(COUNT))
    notes = [
        (t, mido.Message("note_on", note=40 + i % 40, velocity=1 + i))
        for i, t in enumerate(offsets)
    ]
    first, _ = player.play(notes, delay=0.1)
    played = [(round(first * player.rate) + round(t * player.rate)) & FRAME_MASK for t, _ in notes]
    got: list[tuple[float, mido.Message]] = []
    deadline = time.monotonic() + 20.0
    while len(got) < COUNT and time.monotonic() < deadline:
        try:
            got.append(queue.get(timeout=0.1))
        except Empty:
            continue
    reader.close()
    assert [m for _, m in got] == [m for _, m in notes]
    assert [ports.clock.to_frame(t) for t, _ in got] == played
    assert reader.stats() == {"received": COUNT, "dropped": 0, "malformed": 0}


def test_output_lands_on_the_frame_it_was_due(peers: Peers) -> None:
    ports, _, recorder = peers
    rng = random.Random(4)
    start = ports.clock() + 0.15
    dues = sorted(start + rng.uniform(0.0, 0.5) for _ in range(COUNT))
    messages = [mido.Message("note_on", note=40 + i % 40, velocity=1 + i) for i in range(COUNT)]
    since, sent = recorder.now(), ports.output.sent
    for due, msg in zip(dues, messages, strict=True):
        ports.output.send_at(msg, due)
    deadline = time.monotonic() + 20.0
    while len(recorder.received(since)) < COUNT and time.monotonic() < deadline:
        time.sleep(0.05)
    heard = recorder.received(since)
    assert [m for _, m in heard] == messages
    assert [round(t * recorder.rate) & FRAME_MASK for t, _ in heard] == [
        ports.clock.to_frame(due) for due in dues
    ]
    late = ports.core_stats()["out_late"]
    assert (late, ports.output.sent - sent, ports.output.failed) == (0, COUNT, 0)


def test_close_sends_what_was_queued(peers: Peers) -> None:
    ports, _, recorder = peers
    since = 0.0  # a fresh recorder: only the probes came before, and received() skips them
    offs = [mido.Message("note_off", note=n) for n in range(60, 72)]
    for msg in offs:
        ports.output.send(msg)
    ports.close()  # the engine's last note-offs: sent before the client goes
    deadline = time.monotonic() + 5.0
    while len(recorder.received(since)) < len(offs) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [m for _, m in recorder.received(since)] == offs
