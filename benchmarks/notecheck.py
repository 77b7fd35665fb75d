"""Stuck-note check on recorded MIDI: which note-ons never got their note-off.

The bridge promises a note-off for every note-on (All Notes Off does not count), so the soak
benchmark and the reliability tests count what is left open with this one function.  Pure; called
from the caller's thread on messages already recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["unmatched"]


def unmatched(messages: Iterable[tuple[float, Any]]) -> list[tuple[int, int]]:
    """(channel, pitch) of every note-on without a later note-off, once per open note.

    ``messages`` are (time, mido.Message) in the order they arrived; a note-on with velocity 0 is
    a note-off; other message types are ignored.
    """
    open_notes: dict[tuple[int, int], int] = {}
    for _, msg in messages:
        if msg.type not in ("note_on", "note_off"):
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes[key] = open_notes.get(key, 0) + 1
        elif open_notes.get(key):
            open_notes[key] -= 1
    return [key for key, n in open_notes.items() for _ in range(n)]
