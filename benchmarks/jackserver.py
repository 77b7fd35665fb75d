"""Our own dummy JACK server for the latency and start-up sections (fixed name, chosen period).

jackd2 has only 8 server-name slots, so the name is fixed (``antiphon-bench``) and the server is
always stopped by the process id we started it with, after every client closed its ports.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SERVER_NAME", "JackServerError", "jack_env", "jack_server"]

SERVER_NAME = "antiphon-bench"
SAMPLE_RATE = 48000


class JackServerError(RuntimeError):
    """The benchmark JACK server could not be started (the message says why)."""


def jack_env(name: str = SERVER_NAME) -> dict[str, str]:
    """A copy of the environment in which JACK clients reach server ``name``."""
    env = dict(os.environ)
    env["JACK_DEFAULT_SERVER"] = name
    env["JACK_NO_AUDIO_RESERVATION"] = "1"
    env["JACK_NO_START_SERVER"] = "1"
    return env


def _running(name: str, env: dict[str, str]) -> bool:
    result = subprocess.run(["jack_wait", "-s", name, "-c"], env=env, capture_output=True,
                            text=True, timeout=10, check=False)
    return result.stdout.strip() == "running"


@contextmanager
def jack_server(period: int, *, name: str = SERVER_NAME,
                rate: int = SAMPLE_RATE) -> Iterator[dict[str, str]]:
    """Run ``jackd -d dummy`` with ``period`` frames per cycle; yields the client environment.

    Refuses to touch a server of the same name that someone else left running.
    """
    env = jack_env(name)
    if _running(name, env):
        raise JackServerError(f"a JACK server named {name!r} is already running; stop it first")
    process = subprocess.Popen(
        ["jackd", "-n", name, "-d", "dummy", "-r", str(rate), "-p", str(period)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not _running(name, env):
            if process.poll() is not None:
                err = (process.stderr.read() if process.stderr else "").strip().splitlines()
                raise JackServerError(f"jackd exited: {err[-1] if err else process.returncode}")
            if time.monotonic() > deadline:
                raise JackServerError("jackd did not become ready within 15 s")
            time.sleep(0.1)
        yield env
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process.stderr:
            process.stderr.close()
