"""The JACK MIDI peer of the tests: ``examples/jack_peer.py`` (the demo and the benchmarks use it
too), importable as ``support.jack``.  ``examples/`` is a folder of scripts, not a package, so it
is put on ``sys.path`` here; ``import jack_peer`` then works as well.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import jack_peer  # noqa: E402
from jack_peer import *  # noqa: E402, F403  (JackPeer, PlayedNote, phrase_messages, …)

__all__ = ["EXAMPLES", *jack_peer.__all__]
