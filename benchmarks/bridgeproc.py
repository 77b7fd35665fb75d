"""Run ``antiphon bridge`` as a subprocess and talk to it over OSC, as a user's tools would.

:class:`BridgeProcess` launches the console script, timestamps its ready line (a reader thread
per pipe), reads its resident memory and stops it with SIGINT.  :class:`OscLink` is one UDP
socket that sends control messages and receives the bridge's event stream (``--osc-out``
pointed at it) on a reader thread, each message stamped with ``time.monotonic``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket

from benchmarks.machine import rss_kib

__all__ = ["BridgeProcess", "OscLink", "bridge_command", "free_udp_port"]

READY_WORDS = ("ready",)


def bridge_command() -> list[str]:
    """``antiphon`` from this interpreter's environment, else ``python -m bridge`` + subcommand."""
    script = Path(sys.executable).with_name("antiphon")
    if script.exists():
        return [str(script), "bridge"]
    found = shutil.which("antiphon")
    return [found, "bridge"] if found else [sys.executable, "-m", "bridge"]


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BridgeProcess:
    """One ``antiphon bridge`` subprocess; ``ready_at`` is when its ready line appeared."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        self.command = [*bridge_command(), *args]
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.ready_at: float | None = None
        self.ready_line = ""
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True, name=f"bridge-{name}")
            for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self, stream: Any) -> None:
        for line in stream:
            now = time.monotonic()
            self.lines.append(line.rstrip("\n"))
            if not self._ready.is_set() and any(w in line.lower() for w in READY_WORDS):
                self.ready_at, self.ready_line = now, line.strip()
                self._ready.set()

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Seconds from launch to the ready line; RuntimeError (with its last output) if the
        bridge exits or stays silent."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = " | ".join(self.lines[-3:]) or "no output"
                state = (
                    f"exited {self.process.returncode}"
                    if self.process.poll() is not None
                    else f"no ready line within {timeout:g} s"
                )
                raise RuntimeError(f"antiphon bridge {state}: {tail}")
        assert self.ready_at is not None
        return self.ready_at - self.started_at

    def rss_kib(self, field: str = "VmRSS") -> int | None:
        return rss_kib(self.pid, field)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (the bridge closes its ports and exits 0), then SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for reader in self._readers:
            reader.join(2)
        return int(self.process.returncode)


class OscLink:
    """Sends to the bridge's OSC port and records what it sends back to ours (reader thread)."""

    def __init__(self, bridge_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (host, bridge_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.messages: list[tuple[float, str, list[Any]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="osc-link")
        self._thread.start()

    def send(self, address: str, *args: Any) -> float:
        """Send one message; returns ``time.monotonic()`` just before it left."""
        data = build_msg(address, list(args)).dgram
        sent = time.monotonic()
        self.sock.sendto(data, self.target)
        return sent

    def take(self) -> list[tuple[float, str, list[Any]]]:
        """Everything received since the last call."""
        with self._lock:
            out, self.messages = self.messages, []
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            try:
                packet = OscPacket(data)
            except Exception:  # not OSC: ignore
                continue
            with self._lock:
                for item in packet.messages:
                    self.messages.append((now, item.message.address, list(item.message.params)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
