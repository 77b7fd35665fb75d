"""A dummy JACK server (``jackd -d dummy``) of our own: the one way Antiphon starts one.

The demo, the test fixtures, the reliability tests, the benchmarks and ``.ci/run`` all start their
server here, so the command line, the environment and the shutdown live in one place.  No sound
card is needed: the dummy driver runs the JACK graph on a timer.

jackd2 has only 8 server-name slots, so every user picks a *fixed* name (``antiphon-test`` for CI
and the test session, ``antiphon-fault``, ``antiphon-sync``, ``antiphon-bench``, ``antiphon-soak``,
``antiphon-demo``; see :data:`SERVER_NAMES`) and a server is always stopped by the process id it
was started with, after its clients closed their ports.  ``sync=True`` runs ``jackd -S``: clients
run one after another, so a late client delays the cycle instead of missing it.

Only the standard library is imported.  Called from the main thread of the demo, the tests and
the benchmarks; from a shell through ``python -m bridge.dummy_jack start NAME`` (prints the
server's process id) and ``python -m bridge.dummy_jack stop PID``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = [
    "PERIOD",
    "SAMPLE_RATE",
    "SERVER_NAMES",
    "DummyJack",
    "DummyJackError",
    "client_env",
    "jack_env",
    "main",
    "missing_tools",
    "running",
    "stop_pid",
]

SAMPLE_RATE = 48000
PERIOD = 64
"""Frames per cycle unless a caller asks for another: 1.3 ms at 48 kHz."""

SERVER_NAMES = {
    "antiphon-test": "CI (.ci/run) and the pytest session fixture",
    "antiphon-fault": "reliability tests that SIGKILL and restart their server",
    "antiphon-sync": "tests on a synchronous (-S) server",
    "antiphon-bench": "latency and start-up benchmarks",
    "antiphon-soak": "the soak benchmark",
    "antiphon-demo": "examples/demo.py",
    "antiphon-daw": "the Ardour tests (tests/daw: synchronous, 256 frames)",
}
"""The fixed server names in use and who uses them (jackd2 has 8 slots)."""

TOOLS = ("jackd", "jack_wait", "jack_lsp")


class DummyJackError(RuntimeError):
    """A dummy server could not be started (the message says why, with its log's tail)."""


def jack_env(name: str) -> dict[str, str]:
    """The variables a JACK client needs to reach server ``name`` and never spawn its own."""
    return {
        "JACK_DEFAULT_SERVER": name,
        "JACK_NO_START_SERVER": "1",
        "JACK_NO_AUDIO_RESERVATION": "1",  # no D-Bus device reservation (containers, CI)
    }


def client_env(name: str) -> dict[str, str]:
    """A copy of this process's environment in which JACK clients reach server ``name``."""
    return {**os.environ, **jack_env(name)}


def missing_tools() -> list[str]:
    """The JACK tools this module runs that are not on PATH (Debian: ``apt-get install jackd2``)."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def running(name: str) -> bool:
    """Does a JACK server named ``name`` answer (``jack_wait -c``)?"""
    result = subprocess.run(
        ["jack_wait", "-s", name, "-c"],
        capture_output=True,
        text=True,
        timeout=10,
        env=client_env(name),
        check=False,
    )
    return result.stdout.strip() == "running"


class DummyJack:
    """One ``jackd -d dummy`` named ``name``: :meth:`start`, :meth:`kill` (SIGKILL, to test
    recovery), :meth:`stop` (always call it, or use ``with``).  jackd's output goes to
    ``log_path`` (default: ``jackd-NAME.log`` in the temporary directory)."""

    def __init__(
        self,
        name: str,
        log_path: Path | None = None,
        *,
        period: int = PERIOD,
        rate: int = SAMPLE_RATE,
        sync: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"jackd-{name}.log"
        self.period = period
        self.rate = rate
        self.sync = sync
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0  # servers started by this object
        self.kills = 0

    @property
    def env(self) -> dict[str, str]:
        """The JACK variables of this server (see :func:`jack_env`)."""
        return jack_env(self.name)

    @property
    def command(self) -> list[str]:
        return [
            "jackd",
            *(["-S"] if self.sync else []),
            "-n",
            self.name,
            "-d",
            "dummy",
            "-r",
            str(self.rate),
            "-p",
            str(self.period),
        ]

    def running(self) -> bool:
        return running(self.name)

    def start(self, timeout: float = 15.0, *, reuse: bool = False) -> bool:
        """Start the server and wait until it answers; True if started, False if ``reuse`` and a
        server of that name already ran (it is then left alone: :meth:`stop` does nothing).

        DummyJackError if a tool is missing, a server of that name runs and ``reuse`` is false
        (a stale one: stop it first), or jackd exits or stays silent for ``timeout`` s.
        """
        missing = missing_tools()
        if missing:
            raise DummyJackError(
                f"{', '.join(missing)} not installed (Debian: apt-get install jackd2)"
            )
        if self.running():
            if reuse:
                return False
            raise DummyJackError(
                f"a JACK server named {self.name!r} already runs (a stale one?); stop it first"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=client_env(self.name),
            )
        waited = subprocess.run(
            ["jack_wait", "-s", self.name, "-w", "-t", str(max(1, round(timeout)))],
            capture_output=True,
            timeout=timeout + 10,
            env=client_env(self.name),
            check=False,
        )
        if waited.returncode != 0 or self.process.poll() is not None:
            self.stop()
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise DummyJackError(
                f"the dummy JACK server {self.name!r} did not start: "
                f"{' | '.join(tail) or 'no output'} (log: {self.log_path})"
            )
        self.starts += 1
        return True

    def kill(self) -> None:
        """SIGKILL the server we started (what a crash looks like to its clients)."""
        if self.process is None or self.process.poll() is not None:
            raise DummyJackError(f"the JACK server {self.name!r} is not running")
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server we started (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def ports(self) -> list[str]:
        """Every port name on the server (``jack_lsp``)."""
        result = subprocess.run(
            ["jack_lsp"],
            capture_output=True,
            text=True,
            timeout=10,
            env=client_env(self.name),
            check=False,
        )
        return [line for line in result.stdout.splitlines() if line.strip()]

    def __enter__(self) -> DummyJack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    """Is process ``pid`` alive (a zombie left to an init that does not reap counts as gone)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop_pid(pid: int, timeout: float = 5.0) -> bool:
    """Stop a server started by ``python -m bridge.dummy_jack start`` (not our child): SIGTERM,
    SIGKILL after ``timeout`` s.  False if it was already gone."""
    if not _alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``start NAME`` prints the new server's pid (or nothing when ``--reuse`` found one);
    ``stop PID``.  Errors: one line on stderr, exit 1."""
    parser = argparse.ArgumentParser(
        prog="python -m bridge.dummy_jack", description="Start or stop a dummy JACK server."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start jackd -d dummy; print its pid")
    start.add_argument("name", help="server name (fixed: jackd2 has 8 name slots)")
    start.add_argument("--period", type=int, default=PERIOD, help="frames per cycle (%(default)s)")
    start.add_argument("--rate", type=int, default=SAMPLE_RATE, help="sample rate (%(default)s)")
    start.add_argument("--sync", action="store_true", help="synchronous mode (jackd -S)")
    start.add_argument("--log", type=Path, default=None, help="jackd's log file")
    start.add_argument(
        "--reuse",
        action="store_true",
        help="a server of that name already running is fine (prints nothing)",
    )
    start.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for it")
    stop = commands.add_parser("stop", help="stop the server with this pid")
    stop.add_argument("pid", type=int)
    args = parser.parse_args(argv)
    if args.command == "stop":
        stop_pid(args.pid)
        return 0
    server = DummyJack(args.name, args.log, period=args.period, rate=args.rate, sync=args.sync)
    try:
        started = server.start(args.timeout, reuse=args.reuse)
    except DummyJackError as exc:
        print(f"dummy_jack: error: {exc}", file=sys.stderr)
        return 1
    if started and server.process is not None:
        print(server.process.pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
