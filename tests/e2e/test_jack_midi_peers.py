"""MIDI in and out through JACK's own tools: ``jack_midiseq`` plays a phrase into the bridge,
``jack_midi_dump`` records the answer (its parser checks every byte Antiphon sends).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Tool, bridge_flags, parse_midi_dump, run_tool, wait_port
from support.osc import OscClient

pytestmark = pytest.mark.jack

RATE = 48000
LOOP_S = 30  # jack_midiseq loops; the test ends long before the phrase comes round again
# (start frame, pitch, length in frames): C E G C' from 2 s in, one beat each at 120 BPM
PHRASE = [
    (2 * RATE, 60, 18000),
    (int(2.5 * RATE), 64, 18000),
    (3 * RATE, 67, 18000),
    (int(3.5 * RATE), 72, 24000),
]


def test_jack_midiseq_in_jack_midi_dump_out(
    jack_server: str,
    e2e_model: Path,
    bridge_process: Callable[..., Any],
    tools: Callable[..., Tool],
    osc_listener: OscClient,
) -> None:
    client = "E2E-seq"
    bridge = bridge_process(
        *bridge_flags(
            client,
            e2e_model,
            3,
            osc_listener.port,
            bpm=120,
            length=6,
            unit="events",
            silence=1,
            out_channel=3,
        )
    )
    dump = tools("jack_midi_dump", "-a", "e2e-dump")
    run_tool("jack_connect", f"{client}:Antiphon Out", wait_port("e2e-dump:input"))

    seq = tools(
        "jack_midiseq", "e2e-seq", str(LOOP_S * RATE), *(str(v) for note in PHRASE for v in note)
    )
    run_tool("jack_connect", wait_port("e2e-seq:out"), f"{client}:Antiphon In")

    osc_listener.wait("/antiphon/answer/end", 30)
    seq.stop()
    time.sleep(0.2)  # the last note-off travels through jack_midi_dump's ring buffer
    osc_listener.poll()
    announced = [args for _, address, args in osc_listener.messages if address == "/antiphon/note"]
    assert bridge.stop() == 0
    dumped = parse_midi_dump(dump.stop())

    log = bridge.log()
    call_events = re.search(
        r"answer 1: call (\d+) events, answer (\d+) events \((\d+) notes\)", log
    )
    assert call_events, log
    assert int(call_events[1]) == len(PHRASE), "the bridge did not hear jack_midiseq's phrase"
    assert int(call_events[2]) == 6, "--length 6 events"

    notes_on = [(f, m) for f, m, _ in dumped if m.type == "note_on" and m.velocity > 0]
    notes_off = [
        (f, m)
        for f, m, _ in dumped
        if m.type == "note_off" or (m.type == "note_on" and m.velocity == 0)
    ]
    assert notes_on, f"jack_midi_dump saw no notes:\n{dumped}"
    assert len(notes_on) == int(call_events[3]) == len(announced)
    assert len(notes_off) == len(notes_on), "every note gets its note-off"
    assert {m.channel for _, m in notes_on + notes_off} == {2}, "--out-channel 3 (zero-based 2)"
    assert all(
        "note on" in text or "note off" in text
        for _, m, text in dumped
        if m.type in ("note_on", "note_off")
    ), "jack_midi_dump's own decoding disagrees"
    sounding: dict[int, int] = {}
    for frame, msg in sorted(notes_on + notes_off, key=lambda fm: fm[0]):
        if msg.type == "note_on" and msg.velocity > 0:
            sounding[msg.note] = sounding.get(msg.note, 0) + 1
        else:
            assert sounding.get(msg.note), f"note-off for {msg.note} at frame {frame} not sounding"
            sounding[msg.note] -= 1
    assert not any(sounding.values()), f"stuck notes: {sounding}"
    assert sorted(m.note for _, m in notes_on) == sorted(int(a[0]) for a in announced)


def test_bridge_exit_releases_every_note_jack_midi_dump_sees(
    jack_server: str,
    e2e_model: Path,
    bridge_process: Callable[..., Any],
    tools: Callable[..., Tool],
    osc_listener: OscClient,
) -> None:
    """SIGINT in the middle of an answer: jack_midi_dump still gets a note-off for each note."""
    client = "E2E-stop"
    bridge = bridge_process(
        *bridge_flags(
            client,
            e2e_model,
            5,
            osc_listener.port,
            bpm=60,
            length=64,
            unit="events",
            mode="trigger",
        )
    )
    dump = tools("jack_midi_dump", "-a", "e2e-dump-stop")
    run_tool("jack_connect", f"{client}:Antiphon Out", wait_port("e2e-dump-stop:input"))
    osc_listener.send("/antiphon/trigger", to=("127.0.0.1", bridge.osc_port))
    osc_listener.wait("/antiphon/note", 30)
    assert bridge.stop() == 0
    time.sleep(0.2)
    dumped = parse_midi_dump(dump.stop())
    sounding: set[tuple[int, int]] = set()
    for _, msg, _ in dumped:
        if msg.type == "note_on" and msg.velocity > 0:
            sounding.add((msg.channel, msg.note))
        elif msg.type in ("note_on", "note_off"):
            sounding.discard((msg.channel, msg.note))
        elif msg.type == "control_change" and msg.control in (120, 123):
            sounding = {s for s in sounding if s[0] != msg.channel}
    assert any(m.type == "note_on" for _, m, _ in dumped), "jack_midi_dump saw no answer"
    assert not sounding, f"notes left sounding after SIGINT: {sounding}"
