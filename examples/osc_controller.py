"""Steer a running Antiphon bridge over OSC: sweep temperature and length, trigger answers, and
print the ``/antiphon/note`` events that come back.

Start the bridge with its events pointed at this script, then run it::

    antiphon bridge --osc-port 9000 --osc-out 127.0.0.1:9001 &
    python examples/osc_controller.py --bridge 127.0.0.1:9000 --listen 9001

Play a phrase into "Antiphon In" first (or let the bridge answer from an empty call).  For every
(temperature, length) pair the script sets both, sends ``/antiphon/trigger``, and prints each note
of the answer as it arrives, until ``/antiphon/answer/end``.  One UDP socket sends and receives,
so the bridge's replies (``/antiphon/status``, ``/antiphon/error``) come back here too.  Only
python-osc is needed; see ``examples/OSC.md`` for every address.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import Any

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket

NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def note_name(pitch: int) -> str:
    return f"{NAMES[pitch % 12]}{pitch // 12 - 1}"


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None


class Controller:
    """One UDP socket: sends to the bridge, receives its replies and its answer events."""

    def __init__(self, bridge: tuple[str, int], listen_port: int) -> None:
        self.bridge = bridge
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", listen_port))
        self.sock.settimeout(0.1)

    def send(self, address: str, *args: Any) -> None:
        self.sock.sendto(build_msg(address, list(args)).dgram, self.bridge)

    def receive(self, timeout: float) -> list[OscMessage]:
        """Messages that arrive within ``timeout`` seconds (returns as soon as any arrive)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            try:
                return [m.message for m in OscPacket(data).messages]
            except Exception:
                print(f"  (ignored a datagram that is not OSC: {data[:16]!r})")
        return []

    def status(self) -> dict[str, Any]:
        self.send("/antiphon/status")
        for _ in range(20):
            for msg in self.receive(0.5):
                if msg.address == "/antiphon/status":
                    params = list(msg.params)
                    return dict(zip(params[::2], params[1::2], strict=False))
        raise TimeoutError("the bridge did not answer /antiphon/status (is it running?)")

    def answer(self, timeout: float) -> list[tuple[int, int, float]]:
        """Trigger an answer and collect its notes until ``/antiphon/answer/end``."""
        self.send("/antiphon/trigger")
        notes: list[tuple[int, int, float]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.receive(0.2):
                if msg.address == "/antiphon/note":
                    pitch, velocity, beats = msg.params
                    notes.append((pitch, velocity, beats))
                    print(
                        f"  /antiphon/note {pitch:3d} {velocity:3d} {beats:5.2f}  "
                        f"{note_name(pitch)}"
                    )
                elif msg.address == "/antiphon/answer/end":
                    return notes
                elif msg.address == "/antiphon/error":
                    print(f"  bridge refused {msg.params[0]}: {msg.params[1]}")
        print("  (no /antiphon/answer/end before the timeout)")
        return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bridge",
        type=host_port,
        default=("127.0.0.1", 9000),
        metavar="HOST:PORT",
        help="the bridge's --osc-port (default 127.0.0.1:9000)",
    )
    parser.add_argument(
        "--listen",
        type=int,
        default=9001,
        metavar="PORT",
        help="UDP port the bridge's --osc-out points at (default 9001)",
    )
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 1.0, 1.5])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--unit", choices=["events", "beats", "bars"], default="beats")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for one answer to end (default 30)",
    )
    args = parser.parse_args(argv)

    try:
        controller = Controller(args.bridge, args.listen)
    except OSError as exc:
        print(f"osc_controller: cannot listen on UDP port {args.listen}: {exc}", file=sys.stderr)
        return 1
    try:
        status = controller.status()
    except TimeoutError as exc:
        print(f"osc_controller: {exc}", file=sys.stderr)
        return 1
    print("bridge status: " + ", ".join(f"{k}={v}" for k, v in status.items()))
    mode = str(status.get("mode", "call"))
    controller.send("/antiphon/mode", "trigger")  # answer only when we ask
    try:
        for temperature in args.temperatures:
            for length in args.lengths:
                controller.send("/antiphon/temperature", float(temperature))
                controller.send("/antiphon/length", int(length), args.unit)
                print(f"temperature {temperature:g}, length {length} {args.unit}:")
                notes = controller.answer(args.timeout)
                print(f"  -> {len(notes)} notes")
    except KeyboardInterrupt:
        controller.send("/antiphon/stop")
    finally:
        controller.send("/antiphon/mode", mode)  # as it was
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
