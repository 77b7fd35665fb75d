"""The benchmarks' dummy JACK server (fixed name ``antiphon-bench``, chosen period).

A thin layer over :mod:`bridge.dummy_jack`, the one place that starts a dummy jackd: jackd2 has
only 8 server-name slots, so the name is fixed and the server is always stopped by the process id
it was started with, after every client closed its ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bridge.dummy_jack import SAMPLE_RATE, DummyJack, client_env
from bridge.dummy_jack import DummyJackError as JackServerError

__all__ = ["SAMPLE_RATE", "SERVER_NAME", "JackServerError", "jack_env", "jack_server"]

SERVER_NAME = "antiphon-bench"


def jack_env(name: str = SERVER_NAME) -> dict[str, str]:
    """A copy of the environment in which JACK clients reach server ``name``."""
    return client_env(name)


@contextmanager
def jack_server(
    period: int, *, name: str = SERVER_NAME, rate: int = SAMPLE_RATE
) -> Iterator[dict[str, str]]:
    """Run ``jackd -d dummy`` with ``period`` frames per cycle; yields the client environment.

    Refuses (JackServerError) to touch a server of the same name that someone else left running.
    """
    with DummyJack(name, period=period, rate=rate):
        yield client_env(name)
