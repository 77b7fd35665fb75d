"""A headless Ardour 7 session driven by ``ardour7-lua`` scripts, for the DAW tests.

Ardour is the DAW here, not a helper we control: it plays the call from a MIDI track into the
bridge, sends its own MIDI clock, and records the bridge's answer on a record-armed track.  Each
step is one ``ardour7-lua`` run (a Lua session interpreter, no display):

1. :func:`create_session` — a session on the JACK backend with a tempo, 4/4, and two MIDI tracks,
   ``call`` and ``answer``;
2. :func:`add_call_region` — Ardour has no MIDI import from Lua, so the call (one-track ``.mid``)
   is put in ``interchange/<folder>/midifiles/`` and a ``<Source>`` and ``<Region>`` for it are
   added to the saved ``.ardour`` XML; the next load reads them;
3. :func:`roll` — load, wire the call track's output to the bridge's input, the bridge's output to
   the armed ``answer`` track, ``ardour:MIDI Clock out`` to the bridge (and to any listeners),
   roll from 0 until a beat, stop, save;
4. :func:`read_take` — the recorded take, a standard MIDI file in
   ``interchange/<folder>/midifiles/``
   (times in beats of Ardour's grid: the region starts at 0).

About 1 in 8 ``ardour7-lua`` runs loses its JACK connection right after connecting ("JACK
HALTED", seen with any client): :class:`JackHalted` says so, and callers retry the step.
The master bus is unplugged while rolling: its output latency (528 samples on the dummy backend)
would otherwise delay what the tracks play and record against Ardour's own clock port.

Only the caller's thread is used; Ardour runs in child processes with their own config folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mido

__all__ = [
    "ARDOUR_TICKS_PER_BEAT",
    "CLOCK_PORT",
    "ArdourError",
    "JackHalted",
    "RollResult",
    "add_call_region",
    "create_session",
    "find_ardour_lua",
    "read_take",
    "roll",
    "write_call",
]

ARDOUR_TICKS_PER_BEAT = 1920
"""Ardour 7's beat time resolution (``Temporal::ticks_per_beat``): region positions, lengths."""

CLOCK_PORT = "ardour:MIDI Clock out"
"""Ardour's MIDI clock output on JACK (its client is named ``ardour``)."""

ENV_BINARY = "ANTIPHON_ARDOUR_LUA"
BINARIES = ("ardour7-lua",)
MARK = "ANTIPHON-DAW"  # the scripts' progress lines start with this


class ArdourError(AssertionError):
    """An ``ardour7-lua`` step failed; the message holds the end of its output."""


class JackHalted(ArdourError):
    """Ardour lost its JACK connection ("JACK HALTED"): retry the step."""


def find_ardour_lua() -> str | None:
    """The ``ardour7-lua`` program (``$ANTIPHON_ARDOUR_LUA`` overrides), or None."""
    override = os.environ.get(ENV_BINARY)
    if override:
        return shutil.which(override)
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


# ---- running Lua ---------------------------------------------------------------------------------


def lua_str(text: str) -> str:
    """A Lua string literal for ``text``."""
    return (
        '"'
        + "".join(c if c.isalnum() or c in " _-.:/+,()" else f"\\{ord(c):03d}" for c in text)
        + '"'
    )


def run_lua(binary: str, script: str, *, workdir: Path, timeout: float, expect: str) -> str:
    """Run ``script`` with ``ardour7-lua -X`` (exit when the engine halts); its output.

    ``expect`` is the progress line that means success.  JackHalted if Ardour lost JACK,
    ArdourError for anything else that kept the line from appearing.
    """
    path = workdir / f"step-{len(list(workdir.glob('step-*.lua')))}.lua"
    path.write_text(script)
    config = workdir / "config"  # Ardour's own settings stay out of $HOME
    config.mkdir(exist_ok=True)
    env = {**os.environ, "XDG_CONFIG_HOME": str(config), "JACK_NO_START_SERVER": "1"}
    try:
        done = subprocess.run(
            [binary, "-X", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=workdir,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr) + f"\n(timed out after {timeout:g} s)"
    path.with_suffix(".log").write_text(output)
    if f"{MARK} {expect}" in output:
        return output
    tail = "\n".join(output.strip().splitlines()[-25:])
    if "JACK HALTED" in output or "Cannot start Audio/MIDI engine" in output:
        raise JackHalted(f"ardour7-lua lost JACK during {path.name}:\n{tail}")
    raise ArdourError(f"ardour7-lua {path.name} did not reach {expect!r}:\n{tail}")


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


# ---- 1. a new session ----------------------------------------------------------------------------

_CREATE = """
assert(AudioEngine:set_backend("JACK", "ardour", ""), "no JACK backend")
local session = create_session({folder}, {name}, 48000)
assert(session, "create_session failed")
local tm = Temporal.TempoMap.fetch_writable()
tm:set_tempo(Temporal.Tempo({bpm}, {bpm}, 4), Temporal.timepos_t(0))
tm:set_meter(Temporal.Meter({beats_per_bar}, 4), Temporal.timepos_t(0))
Temporal.TempoMap.update(tm)
local midi = ARDOUR.ChanCount(ARDOUR.DataType("midi"), 1)
for _, name in ipairs({{"call", "answer"}}) do
  local made = Session:new_midi_track(midi, midi, true, ARDOUR.PluginInfo(), nil, nil, 1, name,
    ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, false, false)
  assert(made:size() == 1, "new_midi_track " .. name)
end
Session:save_state("", false, false, false, false, false)
print("{mark} created")
close_session()
quit()
"""


def create_session(
    binary: str, folder: Path, name: str, *, bpm: float, beats_per_bar: int = 4, timeout: float = 90
) -> Path:
    """A new session in ``folder`` (which must not exist); returns its ``.ardour`` file."""
    script = _CREATE.format(
        folder=lua_str(str(folder)),
        name=lua_str(name),
        bpm=float(bpm),
        beats_per_bar=int(beats_per_bar),
        mark=MARK,
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    run_lua(binary, script, workdir=folder.parent, timeout=timeout, expect="created")
    return folder / f"{name}.ardour"


# ---- 2. the call, put in by editing the saved session --------------------------------------------


def write_call(notes: Iterable[tuple[float, int, float, int]], path: Path) -> float:
    """Write ``(onset_beats, pitch, duration_beats, velocity)`` as a one-track (type 0) MIDI file
    at Ardour's resolution; returns its length in beats.  Ardour reads only a file's first track.
    """
    events: list[tuple[int, int, mido.Message]] = []
    for onset, pitch, duration, velocity in notes:
        on = round(onset * ARDOUR_TICKS_PER_BEAT)
        off = round((onset + duration) * ARDOUR_TICKS_PER_BEAT)
        events.append((on, 1, mido.Message("note_on", note=pitch, velocity=velocity)))
        events.append((off, 0, mido.Message("note_off", note=pitch, velocity=64)))
    events.sort(key=lambda e: (e[0], e[1]))  # at equal times the note-off first
    track = mido.MidiTrack()
    last = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(type=0, ticks_per_beat=ARDOUR_TICKS_PER_BEAT)
    midi.tracks.append(track)
    midi.save(str(path))
    return last / ARDOUR_TICKS_PER_BEAT


def add_call_region(session_file: Path, call: Path, *, track: str = "call") -> None:
    """Copy ``call`` into the session's MIDI folder and place it at 0 on ``track``'s playlist.

    Adds a ``<Source>``, its whole-file ``<Region>`` and the playlist's ``<Region>`` to the saved
    XML (new ids above the session's id counter); Ardour reads them at the next load.
    """
    tree = ET.parse(session_file)
    root = tree.getroot()
    midifiles = session_file.parent / "interchange" / session_file.parent.name / "midifiles"
    shutil.copyfile(call, midifiles / call.name)
    length = _length_ticks(call)
    counter = int(root.get("id-counter", "0"))
    source_id, whole_id, region_id = (str(counter + k) for k in (1, 2, 3))
    root.set("id-counter", str(counter + 4))

    sources = _child(root, "Sources")
    ET.SubElement(
        sources,
        "Source",
        {
            "name": call.name,
            "type": "midi",
            "flags": "",
            "id": source_id,
            "origin": "",
            "natural-position": "b0",
        },
    )
    region = {
        "name": call.stem,
        "muted": "0",
        "opaque": "1",
        "locked": "0",
        "video-locked": "0",
        "automatic": "0",
        "whole-file": "1",
        "import": "1",
        "external": "0",
        "sync-marked": "0",
        "left-of-split": "0",
        "right-of-split": "0",
        "hidden": "0",
        "position-locked": "0",
        "valid-transients": "0",
        "start": "b0",
        "length": f"b{length}@b0",
        "sync-position": "b0",
        "ancestral-start": "b0",
        "ancestral-length": "b0@b0",
        "stretch": "1",
        "shift": "1",
        "layering-index": "0",
        "tags": "",
        "contents": "0",
        "type": "midi",
        "first-edit": "nothing",
        "source-0": source_id,
        "master-source-0": source_id,
    }
    ET.SubElement(_child(root, "Regions"), "Region", {**region, "id": whole_id})
    playlists = [p for p in _child(root, "Playlists") if p.get("name") == track]
    if len(playlists) != 1:
        raise ArdourError(f"{session_file} has no single playlist named {track!r}")
    ET.SubElement(
        playlists[0],
        "Region",
        {**region, "name": f"{call.stem}.1", "whole-file": "0", "id": region_id},
    )
    tree.write(session_file, encoding="UTF-8", xml_declaration=True)


def _child(root: ET.Element, tag: str) -> ET.Element:
    found = root.find(tag)
    if found is None:
        raise ArdourError(f"the session file has no <{tag}>")
    return found


def _length_ticks(path: Path) -> int:
    midi = mido.MidiFile(str(path))
    ticks = sum(msg.time for msg in midi.tracks[0])
    return max(1, round(ticks * ARDOUR_TICKS_PER_BEAT / midi.ticks_per_beat))


# ---- 3. rolling ----------------------------------------------------------------------------------

_ROLL = """
assert(AudioEngine:set_backend("JACK", "ardour", ""), "no JACK backend")
local session = load_session({folder}, {name})
assert(session, "load_session failed")
local call = Session:route_by_name("call"):to_track()
local answer = Session:route_by_name("answer"):to_track()
assert(call:playlist():region_list():size() == 1, "the call region did not load")
Session:master_out():output():disconnect_all(nil)
ARDOUR.config():set_send_midi_clock({clock})
call:output():midi(0):disconnect_all()
assert(call:output():midi(0):connect({bridge_in}) == 0, "call -> bridge")
answer:input():midi(0):disconnect_all()
assert(answer:input():midi(0):connect({bridge_out}) == 0, "bridge -> answer")
for _, port in ipairs({clock_to}) do
  assert(AudioEngine:connect({clock_port}, port) == 0, "clock -> " .. port)
end
answer:rec_enable_control():set_value(1, PBD.GroupControlDisposition.NoGroup)
Session:maybe_enable_record(false)
Session:request_locate(0, false, ARDOUR.LocateTransportDisposition.MustStop,
  ARDOUR.TransportRequestSource.TRS_UI)
ARDOUR.LuaAPI.usleep(300000)
print("{mark} connected")
local rate = Session:nominal_sample_rate()
local stop_at = math.floor({stop_s} * rate)
Session:request_roll(ARDOUR.TransportRequestSource.TRS_UI)
local waited = 0
while Session:transport_sample() < stop_at do
  ARDOUR.LuaAPI.usleep(5000)
  waited = waited + 1
  assert(waited < {max_polls}, "the transport did not reach the stop position")
end
Session:request_stop(false, false, ARDOUR.TransportRequestSource.TRS_UI)
print("{mark} stop requested at sample " .. Session:transport_sample())
waited = 0
while Session:transport_rolling() do
  ARDOUR.LuaAPI.usleep(10000)
  waited = waited + 1
  assert(waited < 500, "the transport did not stop")
end
print("{mark} stopped at sample " .. Session:transport_sample())
ARDOUR.LuaAPI.usleep(300000)
Session:save_state("", false, false, false, false, false)
print("{mark} saved")
close_session()
quit()
"""


@dataclass(frozen=True)
class RollResult:
    """Where the transport stopped (samples from 0) and all Ardour printed."""

    stopped_at: int
    output: str


def roll(
    binary: str,
    session_file: Path,
    *,
    bridge_in: str,
    bridge_out: str,
    clock: bool,
    clock_to: Sequence[str],
    stop_s: float,
    timeout: float | None = None,
) -> RollResult:
    """Load the session, wire it to the bridge, record from 0 until ``stop_s`` seconds of the
    transport, stop and save.  Port names are full JACK names (``client:port``)."""
    wall = timeout if timeout is not None else 60 + 2 * stop_s
    script = _ROLL.format(
        folder=lua_str(str(session_file.parent)),
        name=lua_str(session_file.stem),
        clock="true" if clock else "false",
        bridge_in=lua_str(bridge_in),
        bridge_out=lua_str(bridge_out),
        clock_port=lua_str(CLOCK_PORT),
        clock_to="{" + ", ".join(lua_str(p) for p in (clock_to if clock else ())) + "}",
        stop_s=float(stop_s),
        max_polls=int(wall / 0.005),
        mark=MARK,
    )
    output = run_lua(
        binary, script, workdir=session_file.parent.parent, timeout=wall, expect="saved"
    )
    stopped = re.search(rf"{MARK} stopped at sample (\d+)", output)
    if stopped is None:
        raise ArdourError(f"the roll did not say where it stopped:\n{output[-2000:]}")
    return RollResult(int(stopped[1]), output)


# ---- 4. the take ---------------------------------------------------------------------------------

_TAKE_RE = re.compile(r"^Take\d+_(?P<track>.+)-\d+\.mid$")


def take_files(session_file: Path, track: str = "answer") -> list[Path]:
    """The recorded take files of ``track`` (``Take1_answer-N.mid``)."""
    folder = session_file.parent / "interchange" / session_file.parent.name / "midifiles"
    return sorted(
        p for p in folder.glob("*.mid") if (m := _TAKE_RE.match(p.name)) and m["track"] == track
    )


def read_take(path: Path) -> tuple[list[tuple[float, int, float, int]], int]:
    """The take's notes ``(onset_beats, pitch, duration_beats, velocity)`` in time order, and how
    many note-ons it holds without a note-off (Ardour closes notes open at the stop itself)."""
    midi = mido.MidiFile(str(path))
    scale = 1.0 / midi.ticks_per_beat
    open_notes: dict[tuple[int, int], list[tuple[float, int]]] = {}
    notes: list[tuple[float, int, float, int]] = []
    tick = 0
    for msg in mido.merge_tracks(midi.tracks):
        tick += msg.time
        if msg.type not in ("note_on", "note_off"):
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes.setdefault(key, []).append((tick * scale, msg.velocity))
        elif open_notes.get(key):
            onset, velocity = open_notes[key].pop(0)
            notes.append((onset, msg.note, tick * scale - onset, velocity))
    unterminated = sum(len(v) for v in open_notes.values())
    return sorted(notes), unterminated
