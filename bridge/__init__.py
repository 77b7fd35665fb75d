"""Antiphon's realtime bridge: MIDI in → phrase → tokens → ONNX inference → schedule → MIDI/OSC out.

Depends on numpy, onnxruntime, mido, python-rtmidi and python-osc only; never on TensorFlow or
music21 (``tests/bridge/test_imports.py`` checks it).  Start with :mod:`bridge.cli` for the command
line, :mod:`bridge.engine` for the threads, :mod:`bridge.tokens` for the token scheme shared with
``training``.  The names below load lazily, so ``antiphon --help`` does not pay for numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.errors import AntiphonError, ConfigError, ModelError, PortError, TokenError
    from bridge.tokens import Event, Note, TokenScheme

__all__ = [
    "AntiphonError",
    "ConfigError",
    "Event",
    "ModelError",
    "Note",
    "PortError",
    "TokenError",
    "TokenScheme",
]

_HOMES = {
    "AntiphonError": "bridge.errors",
    "ConfigError": "bridge.errors",
    "ModelError": "bridge.errors",
    "PortError": "bridge.errors",
    "TokenError": "bridge.errors",
    "Event": "bridge.tokens",
    "Note": "bridge.tokens",
    "TokenScheme": "bridge.tokens",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
