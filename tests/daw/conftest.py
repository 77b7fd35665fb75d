"""DAW tests: a headless Ardour 7 (``ardour7-lua``) plays the call, clocks and records the answer.

``ardour7-lua`` comes with Debian's ``ardour`` package (``bash .ci/run`` installs it).  Missing,
it fails the tests when ``ANTIPHON_STRICT=1`` (as ``.ci/run`` sets) and skips them otherwise.

The tests run on a JACK server of their own, ``antiphon-daw`` (jackd2 has 8 name slots, so the
name is fixed; reused if it already runs), with settings a DAW user would have rather than the
suite's 64-frame asynchronous server: 256 frames (5.3 ms) and synchronous mode (``jackd -S``),
where a late client delays the cycle instead of having its MIDI dropped.  On the shared server,
on a loaded 2-core machine, JACK dropped whole cycles of Ardour's clock ("client was not
finished", "MidiBufferMixdown - invalid source buffer"), and a take could not be measured.
Takes are recorded once per module and several tests read each one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))  # jack_peer is a script there, not a package

from ardour_session import find_ardour_lua  # noqa: E402

from bridge.dummy_jack import DummyJack, DummyJackError  # noqa: E402


@pytest.fixture(scope="session")
def ardour_lua() -> str:
    """Path of ``ardour7-lua``; fails under ``ANTIPHON_STRICT=1`` when it is missing."""
    binary = find_ardour_lua()
    if binary is None:
        message = (
            "ardour7-lua is not installed (Debian: apt-get install --no-install-recommends "
            "ardour; `bash .ci/run` does it)"
        )
        if os.environ.get("ANTIPHON_STRICT") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture(scope="session")
def start_bridge_fn(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """tests/conftest.py's ``start_bridge`` (fixtures here are module-scoped, so the
    function-scoped ``bridge_process`` fixture cannot serve them)."""
    root = Path(__file__).resolve().parents[1] / "conftest.py"
    module = request.config.pluginmanager.get_plugin(str(root))
    if module is None:
        raise AssertionError(f"{root} is not loaded as a conftest")
    return module.start_bridge


DAW_SERVER = "antiphon-daw"
PERIOD = 256  # frames: 5.3 ms at 48 kHz, a buffer a DAW user would pick


@pytest.fixture(scope="module")
def daw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``antiphon-daw`` JACK server's name (``jackd -S``, 256 frames); every JACK client
    started meanwhile (bridge, Ardour, listeners) goes there.  Started here unless it already
    runs (then left alone); stopped after the module."""
    server = DummyJack(
        DAW_SERVER, tmp_path_factory.mktemp("jackd") / "jackd-daw.log", period=PERIOD, sync=True
    )
    with pytest.MonkeyPatch.context() as patch:
        for key, value in server.env.items():
            patch.setenv(key, value)
        try:
            server.start(reuse=True)
        except DummyJackError as exc:
            pytest.fail(str(exc))
        try:
            yield DAW_SERVER
        finally:
            server.stop()
