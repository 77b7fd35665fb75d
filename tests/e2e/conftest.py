"""End-to-end fixtures: real third-party peers around a real ``antiphon bridge`` process.

The peers are programs Antiphon does not control: JACK's ``jack_midiseq``, ``jack_midi_dump``,
``jack_transport`` and ``jack_connect``, ``jack_midi_clock``, liblo's ``oscsend`` / ``oscdump``,
and ``examples/jack_peer.py`` (its own JACK client on the JACK-Client package).  A missing tool
is a failure, never a skip (``bash .ci/run`` installs them all).

The bridge runs the shipped model (``models/default.onnx``) unless ``ANTIPHON_E2E_MODEL`` names
another file.  Helpers live in ``e2e_support.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_support import Tool, require
from support.jack import JackPeer
from support.osc import OscClient


@pytest.fixture(scope="session")
def e2e_model() -> Path:
    """The model the end-to-end bridges run: the shipped one, or ``$ANTIPHON_E2E_MODEL``."""
    from bridge.model import default_model_path

    override = os.environ.get("ANTIPHON_E2E_MODEL")
    path = Path(override) if override else default_model_path()
    if not path.is_file():
        pytest.fail(
            f"no model at {path}: the repository ships models/default.onnx "
            "(or set ANTIPHON_E2E_MODEL to a model file)"
        )
    return path


@pytest.fixture
def tools(tmp_path: Path) -> Iterator[Callable[..., Tool]]:
    """``tools(name, *args)`` starts a program; every one still running is stopped after."""
    started: list[Tool] = []

    def start(*argv: str) -> Tool:
        require(argv[0])
        log_path = tmp_path / f"{Path(argv[0]).name}-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        tool = Tool(process, log_path)
        started.append(tool)
        return tool

    yield start
    for tool in reversed(started):
        tool.stop()


@pytest.fixture
def osc_listener() -> Iterator[OscClient]:
    """The OSC client that hears the bridge's events (``--osc-out``) and replies."""
    with OscClient() as listener:
        yield listener


@pytest.fixture
def peer(jack_server: str, request: pytest.FixtureRequest) -> Iterator[JackPeer]:
    """``examples/jack_peer.JackPeer`` on the test server (closed after the test)."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:40]
    with JackPeer(f"peer-{name}", server=jack_server) as jack_peer:
        yield jack_peer
