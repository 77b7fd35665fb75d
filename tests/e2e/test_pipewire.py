"""The native JACK backend under PipeWire's JACK (`pw-jack antiphon bridge`), end to end.

A private, headless PipeWire (its own ``XDG_RUNTIME_DIR``, no session manager: connections are
made explicitly) runs the bridge and a JACK-Client peer, both through ``pw-jack`` (which puts
PipeWire's libjack first on the library path).  Found by this test: PipeWire answers
``jack_frame_time`` with another count until a client has run, so a bridge that attached its
frame clock before activating stood still for good — every note looked hours old and no call was
ever answered.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from e2e_support import require
from support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]

_PEER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import mido
from examples.jack_peer import JackPeer
peer = JackPeer("pw-peer")
peer.connect("Antiphon:Antiphon In", "Antiphon:Antiphon Out")
notes, t = [], 0.0
for pitch in (60, 62, 64, 65, 67):
    notes.append((t, mido.Message("note_on", note=pitch, velocity=90)))
    notes.append((t + 0.2, mido.Message("note_off", note=pitch)))
    t += 0.25
peer.play(notes)
sys.stdout.write("played\n"); sys.stdout.flush()
sys.stdin.readline()  # the bridge has stopped: everything it sent is in
heard = [m.bytes() for _, m in peer.received()]
print(json.dumps(heard), flush=True)  # before closing: what was heard is out whatever happens
peer.close()
sys.stdout.write("closed\n"); sys.stdout.flush()
"""


def _line(pipe: IO[str], timeout: float, what: str) -> str:
    """The next line of a child's output, or AssertionError after ``timeout`` seconds."""
    ready, _, _ = select.select([pipe], [], [], timeout)
    assert ready, f"no {what} within {timeout:g} s"
    return pipe.readline()


@pytest.fixture
def pipewire(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private PipeWire; yields the environment its clients need."""
    require("pw-jack", "pipewire")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JACK_")}
    env |= {"XDG_RUNTIME_DIR": str(runtime), "PIPEWIRE_QUANTUM": "64/48000"}
    log = (tmp_path / "pipewire.log").open("wb")
    server = subprocess.Popen(["pipewire"], env=env, stdout=log, stderr=log)
    try:
        wait_for(lambda: (runtime / "pipewire-0").exists(), 10, "PipeWire's socket")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.mark.timeout(120)
def test_pw_jack_bridge_answers_a_call(pipewire: dict[str, str], tmp_path: Path) -> None:
    bridge_log = tmp_path / "bridge.log"
    with bridge_log.open("wb") as log:
        bridge = subprocess.Popen(
            [
                *("pw-jack", sys.executable, "-m", "bridge", "--backend", "jack"),
                *("--seed", "7", "--bpm", "120", "--length", "6", "--osc-port", "0"),
            ],
            env=pipewire,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    peer = None
    try:
        wait_for(lambda: "ready in" in bridge_log.read_text(), 30, "the bridge's ready line")
        peer = subprocess.Popen(
            ["pw-jack", sys.executable, "-c", _PEER, str(REPO)],
            env=pipewire,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert peer.stdin is not None and peer.stdout is not None
        assert _line(peer.stdout, 30, "'played' from the peer").strip() == "played"
        wait_for(lambda: "answer 1:" in bridge_log.read_text(), 20, "the answer's log line")
        time.sleep(4.0)  # six notes at 120 bpm
    finally:
        bridge.send_signal(signal.SIGINT)
        status = bridge.wait(timeout=20)
    try:
        assert peer is not None and peer.stdin is not None and peer.stdout is not None
        peer.stdin.write("go\n")
        peer.stdin.flush()
        heard = json.loads(_line(peer.stdout, 20, "notes heard from the peer"))
        assert _line(peer.stdout, 20, "'closed' from the peer (its JACK client)").strip() == (
            "closed"
        )
        peer.wait(timeout=20)
    finally:
        if peer is not None and peer.poll() is None:
            peer.kill()  # never leave a client behind (it would outlive its PipeWire)
            peer.wait(timeout=10)
    text = bridge_log.read_text()
    assert status == 0, text
    # the whole call, as one phrase; its first four events primed while it was played
    assert "answer 1: call 5 events" in text and "4 of 5 events primed while playing" in text
    ons = [b for b in heard if b[0] & 0xF0 == 0x90 and b[2] > 0]
    offs = [b for b in heard if b[0] & 0xF0 == 0x80 or (b[0] & 0xF0 == 0x90 and b[2] == 0)]
    assert ons and len(offs) >= len(ons), heard  # answered, and every note ended
