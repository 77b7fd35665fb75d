"""Helpers for the end-to-end tests (imported by tests/e2e/conftest.py and the test modules).

The JACK peer, the OSC client and ``wait_for`` are the suites' shared ones (``tests/support``).
"""

from __future__ import annotations

import itertools
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mido
import pytest
from support.jack import EXAMPLES
from support.osc import OscClient
from support.waiting import wait_for

PHRASES = EXAMPLES / "phrases"
APT_HINT = {
    "jack_midiseq": "jackd2",
    "jack_midi_dump": "jackd2",
    "jack_transport": "jackd2",
    "jack_connect": "jackd2",
    "jack_midi_clock": "jack-midi-clock",
    "oscsend": "liblo-tools",
    "oscdump": "liblo-tools",
    "fluidsynth": "fluidsynth",
    "pipewire": "pipewire",
    "pw-jack": "pipewire-jack",
}


def require(*tools: str) -> dict[str, str]:
    """Full paths of ``tools``; a missing one fails the test with the package to install."""
    found: dict[str, str] = {}
    for tool in tools:
        path = shutil.which(tool)
        if path is None:
            pytest.fail(
                f"{tool} is not installed (Debian: apt-get install "
                f"{APT_HINT.get(tool, tool)}; `bash .ci/run` does it)"
            )
        found[tool] = path
    return found


# ---- external programs ---------------------------------------------------------------------------


@dataclass
class Tool:
    """A running third-party program; stdout+stderr go to a file read by :meth:`output`."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 5.0) -> str:
        """SIGTERM (then SIGKILL), and return everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.output()


def run_tool(*argv: str, stdin: str | None = None, timeout: float = 15) -> str:
    """Run a program to completion; its stdout.  AssertionError with its output if it fails."""
    require(argv[0])
    done = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def wait_port(name: str, timeout: float = 10.0) -> str:
    """Wait until ``jack_lsp`` lists the port ``name`` (full ``client:port``) and return it."""
    return str(
        wait_for(
            lambda: name if name in run_tool("jack_lsp").splitlines() else None,
            timeout,
            f"JACK port {name!r}",
        )
    )


def transport(*commands: str) -> None:
    """Drive the JACK transport with ``jack_transport`` (commands on its stdin)."""
    run_tool("jack_transport", stdin="\n".join(commands) + "\n")


# ---- the bridge ----------------------------------------------------------------------------------


def bridge_flags(client: str, model: Path, seed: int, osc_out: int, **flags: object) -> list[str]:
    """``antiphon bridge`` flags of an end-to-end test: the native JACK backend as ``client``,
    ``model``, ``--seed``, OSC on any free port, events to 127.0.0.1:``osc_out``; then each of
    ``flags`` (``out_channel=3`` → ``--out-channel 3``)."""
    argv = ["--backend", "jack", "--client-name", client, "--model", str(model)]
    argv += ["--seed", str(seed), "--osc-port", "0", "--osc-out", f"127.0.0.1:{osc_out}"]
    for name, value in flags.items():
        argv += [
            f"--{name.replace('_', '-')}",
            f"{value:g}" if isinstance(value, float) else str(value),
        ]
    return argv


# ---- jack_midi_dump ------------------------------------------------------------------------------

_DUMP_LINE = re.compile(r"^\s*(?P<frame>-?\d+):(?P<hex>(?: [0-9a-fA-F]{2})+)(?P<text>.*)$")


def parse_midi_dump(text: str) -> list[tuple[int, mido.Message, str]]:
    """``jack_midi_dump -a`` output → ``(frame, message, its description)``.

    Every line must hold a complete, valid MIDI message: anything else raises AssertionError
    (this is where jack_midi_dump's strict parser checks the bytes Antiphon sends).
    """
    out: list[tuple[int, mido.Message, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _DUMP_LINE.match(line)
        if match is None:
            if line.lstrip().startswith(("Cannot", "JackShm", "jack_")):
                continue  # libjack chatter on shutdown
            raise AssertionError(f"jack_midi_dump printed a line that is not a message: {line!r}")
        data = [int(b, 16) for b in match["hex"].split()]
        try:
            msg = mido.Message.from_bytes(data)
        except ValueError as exc:
            raise AssertionError(f"invalid MIDI bytes {match['hex'].strip()}: {exc}") from None
        out.append((int(match["frame"]), msg, match["text"].strip()))
    return out


# ---- OSC -----------------------------------------------------------------------------------------


def free_udp_port() -> int:
    """A UDP port free *now*: another process may take it before ours binds it, so a caller
    must prove its listener got it (see :func:`start_oscdump`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_oscdump(start_tool: Callable[..., Tool], tries: int = 5) -> tuple[Tool, int]:
    """``oscdump`` listening on a free UDP port, proven by a probe message in its output (which
    also means it listens before anyone sends it events); another port if it lost the race."""
    with OscClient() as probe:
        for _ in range(tries):
            port = free_udp_port()
            dump = start_tool("oscdump", "-L", str(port))
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and dump.process.poll() is None:
                probe.send("/e2e/probe", to=("127.0.0.1", port))
                if "/e2e/probe" in dump.output():
                    return dump, port
                time.sleep(0.05)
            dump.stop()
    raise AssertionError(f"oscdump never listened on a free port ({tries} tries)")


# ---- phrases -------------------------------------------------------------------------------------


def phrase(name: str) -> list[tuple[float, int, float, int]]:
    """An example phrase's notes as ``(onset_beats, pitch, duration_beats, velocity)``."""
    from bridge.midifile import read_midi

    return [n.as_tuple() for n in read_midi(PHRASES / f"{name}.mid").notes]


def intervals(onsets: Sequence[float], *, tolerance: float = 0.005) -> list[float]:
    """Inter-onset intervals between distinct onsets (chord notes share one onset)."""
    distinct: list[float] = []
    for t in sorted(onsets):
        if not distinct or t - distinct[-1] > tolerance:
            distinct.append(t)
    return [b - a for a, b in itertools.pairwise(distinct)]
