"""Fixtures shared by every test suite: the dummy JACK server and running ``antiphon`` as a process.

``jack_server`` (session): the JACK server named by ``ANTIPHON_JACK_SERVER`` (default
``antiphon-test``, the name ``.ci/run`` uses).  If it already runs it is reused and left running;
otherwise ``jackd -d dummy`` is started here (:mod:`bridge.dummy_jack`) and stopped at the end of
the session, after every test's clients are gone (function fixtures are torn down first).  jackd2
has only 8 server-name slots, so the name is fixed rather than random.  A missing ``jackd`` or a
server that does not come up is a test *failure*, never a skip: the integration tests are part of
"done".

``antiphon`` runs the command line in a subprocess; ``bridge_process`` starts ``antiphon bridge``
and waits for its ready line (see :class:`BridgeProcess`).

Only the standard library, pytest and :mod:`bridge.dummy_jack` (standard library only) are
imported here, so every suite can load this file cheaply.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.dummy_jack import DummyJack, DummyJackError, jack_env

REPO = Path(__file__).resolve().parent.parent
JACK_SERVER_ENV = "ANTIPHON_JACK_SERVER"
DEFAULT_JACK_SERVER = "antiphon-test"
READY_PREFIX = "antiphon: ready"
READY_RE = re.compile(
    r'antiphon: ready — in "(?P<inp>[^"]*)", out "(?P<out>[^"]*)", '
    r"OSC (?:(?P<host>[^\s,]+):(?P<port>\d+)|off)"
)


# ---- JACK ---------------------------------------------------------------------------------------


def jack_ports(server: str | None = None) -> list[str]:
    """Every port name on the JACK server (``jack_lsp``)."""
    env = {**os.environ, **(jack_env(server) if server else {})}
    result = subprocess.run(
        ["jack_lsp"], capture_output=True, text=True, timeout=10, env=env, check=True
    )
    return [line for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def jack_server() -> Iterator[str]:
    """A running dummy JACK server's name; ``JACK_DEFAULT_SERVER`` points at it meanwhile."""
    server = os.environ.get(JACK_SERVER_ENV, DEFAULT_JACK_SERVER)
    saved = {key: os.environ.get(key) for key in jack_env(server)}
    os.environ.update(jack_env(server))
    jackd = DummyJack(server, REPO / ".cache" / f"jackd-{server}.log")
    try:
        try:
            jackd.start(reuse=True)  # one that already runs is reused and left running
        except DummyJackError as exc:
            pytest.fail(str(exc))
        yield server
    finally:
        jackd.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---- the antiphon command ------------------------------------------------------------------------


def antiphon_command(*args: str) -> list[str]:
    """argv running ``antiphon ARGS`` with this interpreter (no reliance on PATH)."""
    return [
        sys.executable,
        "-c",
        "import sys; from bridge.cli import main; sys.exit(main())",
        *args,
    ]


def run_antiphon(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``antiphon ARGS`` to completion; stdout/stderr captured as text."""
    return subprocess.run(
        antiphon_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


@dataclass
class BridgeProcess:
    """A running ``antiphon bridge``: its process, its ready line, its log (stderr) file."""

    process: subprocess.Popen[str]
    log_path: Path
    stdout_lines: list[str] = field(default_factory=list)
    ready_line: str = ""
    startup_s: float = 0.0  # spawn → ready line

    @property
    def osc_port(self) -> int:
        match = READY_RE.search(self.ready_line)
        if not match or not match.group("port"):
            raise AssertionError(f"no OSC port in the ready line {self.ready_line!r}")
        return int(match.group("port"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15) -> int:
        """Send ``sig`` and wait; returns the exit status (kills it after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
                raise AssertionError(f"bridge ignored signal {sig}; log:\n{self.log()}") from None
        return self.process.returncode


def start_bridge(
    *flags: str, log_path: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> BridgeProcess:
    """Start ``antiphon bridge FLAGS`` and wait for its ready line on stdout.

    stderr goes to ``log_path`` (a pipe nobody reads could fill and block the bridge); stdout is
    drained by a thread.  AssertionError with the log if it exits or stays silent.
    """
    log_file = log_path.open("w")
    started = time.monotonic()
    process = subprocess.Popen(
        antiphon_command("bridge", *flags),
        stdout=subprocess.PIPE,
        stderr=log_file,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    log_file.close()
    bridge = BridgeProcess(process, log_path)
    ready = threading.Event()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            bridge.stdout_lines.append(line.rstrip("\n"))
            if line.startswith(READY_PREFIX) and not ready.is_set():
                bridge.ready_line = line.strip()
                bridge.startup_s = time.monotonic() - started
                ready.set()
        ready.set()  # EOF: the process is gone

    threading.Thread(target=drain, name="bridge-stdout", daemon=True).start()
    if not ready.wait(timeout) or not bridge.ready_line:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        raise AssertionError(
            f"antiphon bridge never became ready (exit {process.poll()}); log:\n{bridge.log()}"
        )
    return bridge


@pytest.fixture
def antiphon() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``antiphon(*args)`` runs the command line in a subprocess."""
    return run_antiphon


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Mark the test item with the phase that failed (``item.failed_phase``: setup or call), so
    fixtures can tell in their teardown that the test failed."""
    report = yield
    if report.failed:
        item.failed_phase = report.when  # type: ignore[attr-defined]
    return report


BRIDGE_LOG_TAIL = 60
"""Lines of each bridge's log printed when a test that started bridges fails."""


@pytest.fixture
def bridge_process(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., BridgeProcess]]:
    """``bridge_process(*flags)`` starts ``antiphon bridge``; any left running are stopped after.

    The test itself should call ``bridge.stop()`` and check the exit status; teardown only makes
    sure no bridge (and so no JACK client) outlives its test.  When the test failed, the end of
    every bridge's log is printed (pytest shows it under "Captured stdout teardown"), so a
    failure in CI says what the bridge heard and played.
    """
    started: list[BridgeProcess] = []

    def start(*flags: str, **kwargs: object) -> BridgeProcess:
        bridge = start_bridge(*flags, log_path=tmp_path / f"bridge-{len(started)}.log", **kwargs)  # type: ignore[arg-type]
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        if bridge.process.poll() is None:
            bridge.stop()
    if getattr(request.node, "failed_phase", None):
        for index, bridge in enumerate(started):
            tail = bridge.log().splitlines()[-BRIDGE_LOG_TAIL:]
            print(f"---- bridge {index} log (last {len(tail)} lines) ----", *tail, sep="\n")
