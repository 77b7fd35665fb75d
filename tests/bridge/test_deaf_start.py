"""The bridge's JACK input is never deaf after a start (issue 9, item 1).

Before the fix the supervisor opened RtMidi's output client before its input client, and with
python-rtmidi's bundled libjack the input client was then never run by jackd in about 1 start
in 6 (11-22 of 30 in a minimal script): the ports existed and nothing was heard.  Here the ports
are opened :data:`STARTS` times on a server of their own in synchronous mode (``jackd -S``: the
test is about delivery, so a late cycle must not drop messages); each time a sender in another
process (RtMidi's output, whose JACK callback is C++ and never waits for Python) plays
:data:`MESSAGES` messages into "Antiphon In" and every one must arrive.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from reliability_support import JackServer, private_server

from bridge.supervisor import PortSpec

pytestmark = pytest.mark.jack

SYNC_SERVER = "antiphon-sync"
"""This test's own server (jackd2 has 8 name slots: a fixed name, never the shared one)."""
STARTS = 30
MESSAGES = 32

_SENDER = textwrap.dedent("""
    import sys, time, rtmidi
    target = sys.argv[1]
    out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="deaf-test sender")
    for line in sys.stdin:
        if line.strip() == "close":  # the bridge has counted: only now may the port go
            out.close_port()
            print("closed", flush=True)
            continue
        names = out.get_ports()
        if target not in names:
            print("missing", flush=True)
            continue
        out.open_port(names.index(target), "out")
        time.sleep(0.05)  # the connection is made by the server's next cycle
        for i in range(int(line)):
            note = 48 + i // 2
            out.send_message([0x90, note, 80] if i % 2 == 0 else [0x80, note, 0])
            time.sleep(0.002)
        print("sent", flush=True)
    out.delete()
""")


@pytest.fixture(scope="module")
def sync_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JackServer]:
    with private_server(
        SYNC_SERVER, tmp_path_factory.mktemp("jack") / "jackd-sync.log", sync=True
    ) as server:
        yield server


_BRIDGE_PORTS = textwrap.dedent("""
    import sys, time
    from queue import Queue
    from bridge.ports import BACKENDS
    from bridge.supervisor import PortSupervisor, PortSpec
    want, backend = int(sys.argv[1]), sys.argv[2]
    sup = PortSupervisor(BACKENDS[backend], PortSpec())
    inbox = Queue()
    sup.open()
    sup.start(inbox)
    print("ready", flush=True)
    got, deadline = 0, None
    while got < want and (deadline is None or time.monotonic() < deadline):
        if deadline is None and sys.stdin.readline():  # the sender has played
            deadline = time.monotonic() + 5.0
        while not inbox.empty():
            inbox.get_nowait()
            got += 1
        time.sleep(0.005)
    sup.close()
    print(f"received {got} deaf_reopens {sup.deaf_reopens}", flush=True)
""")


@pytest.mark.parametrize("backend", ["rtmidi-jack", "jack"])
def test_every_start_hears_every_message(sync_server: JackServer, backend: str) -> None:
    """Each start is a fresh process, as a user's is (libjack's first clients of a process):
    RtMidi-JACK (two clients, the input's self-test) and the native backend (one client, its
    C process callback)."""
    spec = PortSpec()
    client = f"{spec.client} In" if backend == "rtmidi-jack" else spec.client
    target = f"{client}:{spec.in_name}"
    sender = subprocess.Popen(
        [sys.executable, "-c", _SENDER, target],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sender.stdin is not None and sender.stdout is not None
    counts: list[int] = []
    deaf_reopens = 0
    try:
        for _ in range(STARTS):
            bridge = subprocess.Popen(
                [sys.executable, "-c", _BRIDGE_PORTS, str(MESSAGES), backend],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert bridge.stdin is not None and bridge.stdout is not None
            try:
                assert bridge.stdout.readline().strip() == "ready"
                sender.stdin.write(f"{MESSAGES}\n")
                sender.stdin.flush()
                assert sender.stdout.readline().strip() == "sent"
                bridge.stdin.write("played\n")
                bridge.stdin.flush()
                words = bridge.stdout.readline().split()
                sender.stdin.write("close\n")
                sender.stdin.flush()
                assert sender.stdout.readline().strip() == "closed"
                assert words[0] == "received", words
                counts.append(int(words[1]))
                deaf_reopens += int(words[3])
            finally:
                bridge.stdin.close()
                bridge.wait(timeout=10)
    finally:
        sender.stdin.close()
        sender.wait(timeout=10)
    deaf = sum(1 for n in counts if n < MESSAGES)
    assert deaf == 0, f"{deaf} of {STARTS} starts missed messages: {counts}"
    # The self-test's reopens are no failure, but worth seeing (pytest -s).
    print(f"{STARTS} starts, every one heard {MESSAGES} messages; {deaf_reopens} deaf reopens")
