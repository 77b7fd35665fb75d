"""The one OSC client of the tests: a UDP socket of its own, so replies come back to it.

The bridge answers the sender's address, so one socket both sends and receives.  Two ways to read:
:meth:`OscClient.receive` / :meth:`~OscClient.ask` take the next reply (request/response, e.g.
``/antiphon/status``); :meth:`~OscClient.poll` / :meth:`~OscClient.wait` collect everything that
arrives, with its arrival time, into :attr:`~OscClient.messages` (events sent to ``--osc-out``).
python-osc builds and parses; the caller's thread only.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from typing import Any

from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket

from support.waiting import wait_for

__all__ = ["OscClient", "status_dict"]

Target = tuple[str, int]


def status_dict(args: list[Any]) -> dict[str, Any]:
    """``/antiphon/status``'s ``key, value, key, value…`` as a dict."""
    return dict(zip(args[::2], args[1::2], strict=True))


class OscClient:
    """Sends to ``target`` (a port on 127.0.0.1, or ``(host, port)``; or per call with ``to``)
    from a socket bound to 127.0.0.1, and reads what comes back to that socket."""

    def __init__(self, target: int | Target | None = None, *, host: str = "127.0.0.1") -> None:
        self.target: Target | None = (host, target) if isinstance(target, int) else target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.messages: list[tuple[float, str, list[Any]]] = []
        """Everything :meth:`poll` collected: ``(time.monotonic(), address, arguments)``."""
        self._backlog: deque[tuple[str, list[Any]]] = deque()  # the rest of a bundle

    @property
    def port(self) -> int:
        """The port replies and events arrive on (give it to ``--osc-out``)."""
        return int(self.sock.getsockname()[1])

    def _to(self, to: Target | None) -> Target:
        target = to or self.target
        assert target is not None, "OscClient: no target given"
        return target

    def send(self, address: str, *args: Any, to: Target | None = None) -> None:
        """Send one message (python-osc picks each argument's type)."""
        self.sock.sendto(build_msg(address, list(args)).dgram, self._to(to))

    def send_raw(self, data: bytes, *, to: Target | None = None) -> None:
        """Send a datagram as it is (a bundle, or junk)."""
        self.sock.sendto(data, self._to(to))

    def _read(self, timeout: float) -> list[tuple[str, list[Any]]]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        return [(t.message.address, list(t.message.params)) for t in OscPacket(data).messages]

    def receive(self, timeout: float = 5.0) -> tuple[str, list[Any]]:
        """The next message that arrives: ``(address, arguments)``; AssertionError after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._backlog:
            try:
                self._backlog.extend(self._read(max(deadline - time.monotonic(), 1e-3)))
            except TimeoutError:
                raise AssertionError(f"no OSC reply within {timeout:g} s") from None
        return self._backlog.popleft()

    def ask(self, address: str, *args: Any, timeout: float = 5.0) -> tuple[str, list[Any]]:
        """Send a message and return the next reply."""
        self.send(address, *args)
        return self.receive(timeout)

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The ``/antiphon/status`` reply as a dict."""
        address, args = self.ask("/antiphon/status", timeout=timeout)
        assert address == "/antiphon/status", (address, args)
        return status_dict(args)

    def drain(self) -> int:
        """Throw away what is still queued; how many messages."""
        count = len(self._backlog)
        self._backlog.clear()
        while True:
            try:
                count += len(self._read(0.0))
            except (BlockingIOError, TimeoutError):
                return count

    def poll(self) -> None:
        """Move everything that has arrived into :attr:`messages` (does not wait)."""
        now = time.monotonic()
        self.messages += [(now, address, args) for address, args in self._backlog]
        self._backlog.clear()
        while True:
            try:
                received = self._read(0.0)
            except (BlockingIOError, TimeoutError):
                return
            now = time.monotonic()
            self.messages += [(now, address, args) for address, args in received]

    def wait(self, address: str, timeout: float, *, count: int = 1) -> list[list[Any]]:
        """Arguments of the first ``count`` messages at ``address`` (polls until they came)."""

        def found() -> list[list[Any]] | None:
            self.poll()
            hits = [args for _, a, args in self.messages if a == address]
            return hits[:count] if len(hits) >= count else None

        return list(wait_for(found, timeout, f"OSC {address}"))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> OscClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
