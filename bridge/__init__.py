"""Antiphon's realtime bridge: MIDI in → phrase → tokens → ONNX inference → schedule → MIDI/OSC out.

Depends on numpy, onnxruntime, mido, python-rtmidi and python-osc only; never on TensorFlow or
music21 (``tests/bridge/test_imports.py`` checks it).  Start with :mod:`bridge.cli` for the command
line, :mod:`bridge.tokens` for the token scheme shared with ``training``.
"""

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
