"""Helpers every test suite shares, one module per kind of helper.

- :mod:`support.waiting`: ``wait_for`` / ``wait_until``, the one way a test waits for another
  thread or process;
- :mod:`support.osc`: :class:`~support.osc.OscClient`, the one test OSC client (send, read the
  replies sent back to it, collect events);
- the JACK MIDI peer is ``examples/jack_peer.py``'s :class:`JackPeer` (the demo and the
  benchmarks use it too); :mod:`support.jack` puts ``examples/`` on ``sys.path`` and re-exports
  it.

``tests/`` is on ``sys.path`` under pytest (``tests/conftest.py``), so these import as
``support.…``.  The standard library, python-osc and JACK-Client only.
"""
