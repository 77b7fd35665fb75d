"""Section 2 — bridge latency and answer timing, through real ports on a dummy JACK server.

For each JACK period and load (quiet, or a busy-loop process per core) a fresh server
(``antiphon-bench``, or ``$ANTIPHON_BENCH_JACK_SERVER``) runs, and for each backend (RtMidi on
JACK, the native JACK backend) ``antiphon bridge`` starts against it with virtual ports;
:class:`examples.jack_peer.JackPeer` — a separate JACK client — plays short phrases into
"Antiphon In" and records "Antiphon Out", every event stamped in JACK frame time.  Rounds
alternate between a played phrase (latency from its last note-off) and an OSC
``/antiphon/trigger`` (latency from the moment it is sent).  Answer timing compares each received
note-on with its intended time from the ``/antiphon/answer/plan`` OSC events (beats after the
answer's anchor, converted at the fixed tempo), relative to the answer's first note, in JACK
frame time.  Xruns are counted by a client of their own.  Main thread only (the peer and the OSC
link have their own threads)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bridgeproc import BridgeProcess, OscLink, free_udp_port
from benchmarks.jackserver import SAMPLE_RATE, SERVER_NAME, jack_server
from benchmarks.options import REPO, Options
from benchmarks.report import Section, Table
from benchmarks.stats import Summary, fmt, summarize

__all__ = [
    "BACKENDS",
    "BPM",
    "LOADS",
    "PHRASE",
    "Round",
    "cpu_hogs",
    "first_strikes",
    "grid_offsets",
    "match_plan",
    "run",
    "steady",
]

BPM = 300.0  # fastest tempo the bridge accepts: fast rounds
SILENCE_BEATS = 0.25  # shortest phrase-ending silence the bridge accepts
ANSWER_EVENTS = 3  # latency rounds: short answers, stopped once their first note is heard
TIMING_EVENTS = 128  # timing rounds: long answers (fewer tails to wait for), played to the end
PHRASE = [(0.0, 60, 0.25, 90), (0.25, 64, 0.25, 90), (0.5, 67, 0.25, 90)]
"""(onset_beats, pitch, duration_beats, velocity): a short arpeggio, 0.15 s at 300 bpm."""
BACKENDS = {"rtmidi-jack": "RtMidi-JACK", "jack": "native JACK"}
"""``--backend`` values measured side by side, and their names in the tables."""
LOADS = ("quiet", "loaded")
"""loaded: one busy-loop process per CPU core for the whole measurement."""
SERVER = os.environ.get("ANTIPHON_BENCH_JACK_SERVER", SERVER_NAME)
GRID_BPM = 120.0
"""Tempo of the external MIDI clock (``jack_midi_clock``) the grid rounds follow."""
GRID_EVENTS = 16
PPQN = 24


@contextlib.contextmanager
def cpu_hogs(on: bool) -> Iterator[int]:
    """With ``on``, one busy-looping Python process per core until the block ends; yields how
    many run."""
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        if on:
            for _ in range(os.cpu_count() or 1):
                hogs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL
                    )
                )
        yield len(hogs)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=10)


class XrunCounter:
    """A JACK client that only counts the server's xruns (libjack's notification thread)."""

    def __init__(self, server: str) -> None:
        import jack

        self.count = 0
        self.client = jack.Client("antiphon-bench-xruns", no_start_server=True, servername=server)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, delayed_usecs: float) -> None:
        self.count += 1

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def _peer_module() -> Any:
    examples = str(REPO / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    import jack_peer

    return jack_peer


@dataclass
class Round:
    """One answer: how it was asked for, when (JACK seconds), what came back and was planned."""

    kind: str  # "phrase" | "trigger"
    asked_at: float
    first_note: float | None = None
    note_ons: list[tuple[float, int]] = field(default_factory=list)  # (JACK s, pitch)
    plan: list[tuple[float, int]] = field(default_factory=list)  # (beat, pitch)
    ended: bool = False
    clock: list[tuple[float, float]] = field(default_factory=list)  # (JACK s, monotonic s)
    jumps: int = 0  # JACK clock jumps against the monotonic clock during the round
    repeats: int = 0  # note-ons heard again in the next periods (see first_strikes)


def steady(
    times: list[float], clock: list[tuple[float, float]], threshold: float
) -> tuple[list[float], int]:
    """JACK times corrected for the JACK clock's jumps against the monotonic clock.

    The dummy driver's frame counter does not catch up when a cycle runs late, so after a
    hiccup everything stamped in frames is shifted for good; the bridge schedules on the
    monotonic clock.  ``clock`` holds ``(JACK s, monotonic s)`` samples taken during the round;
    each time is moved by the change of ``JACK − monotonic`` since the first sample, as of the
    last sample at or before it.  Returns the corrected times and how many jumps larger than
    ``threshold`` seconds the samples show.
    """
    if len(clock) < 2:
        return list(times), 0
    jack_t = np.array([c[0] for c in clock])
    drift = jack_t - np.array([c[1] for c in clock])
    drift -= drift[0]
    jumps = int(np.count_nonzero(np.abs(np.diff(drift)) > threshold))
    index = np.clip(np.searchsorted(jack_t, times, side="right") - 1, 0, len(clock) - 1)
    return [float(t - drift[i]) for t, i in zip(times, index, strict=True)], jumps


def match_plan(
    note_ons: list[tuple[float, int]], plan: list[tuple[float, int]], seconds_per_beat: float
) -> list[float]:
    """Timing errors (received − intended, seconds) of an answer's received note-ons.

    The bridge's own anchor time is not visible from outside, so the answer's grid is anchored at
    the median of ``received − planned`` (a single late note then shows as one late note rather
    than shifting all the others).  First a provisional anchor from matching each received
    note-on, in order, to the earliest unmatched planned note of its pitch; then every note-on is
    matched to the unmatched planned note of its pitch nearest to it on that grid, so a planned
    note that never sounded (an interrupted answer, a re-struck pitch) cannot shift the matches
    after it.  Fewer than two matches give no figure.
    """
    if not note_ons or not plan:
        return []
    planned = sorted(plan)
    received = sorted(note_ons)

    def offsets(anchor: float | None) -> list[float]:
        used = [False] * len(planned)
        out = []
        for t, pitch in received:
            best, best_gap = -1, float("inf")
            for i, (beat, p) in enumerate(planned):
                if used[i] or p != pitch:
                    continue
                gap = 0.0 if anchor is None else abs(t - anchor - beat * seconds_per_beat)
                if gap < best_gap:
                    best, best_gap = i, gap
                if anchor is None:
                    break  # greedy: the earliest unmatched one
            if best >= 0:
                used[best] = True
                out.append(t - planned[best][0] * seconds_per_beat)
        return out

    first = offsets(None)
    if len(first) < 2:
        return []
    final = offsets(float(np.median(first)))
    anchor = float(np.median(final))
    return [o - anchor for o in final]


def grid_offsets(note_ons: list[float], ticks: list[float], ticks_per_step: int) -> list[float]:
    """Each note-on's distance (seconds, signed) from the nearest grid line of an external MIDI
    clock: ``ticks`` are the clock's tick times as a recorder heard them (the first one is beat
    0, as after Start), a grid line every ``ticks_per_step`` ticks; the tick position of a
    note-on is interpolated between the ticks around it.  Note-ons outside the ticks are left
    out.

    The recorder is a Python JACK client, and one that misses a period loses that period's
    tick: a gap of about n median intervals counts as n ticks (the clock's ticks sit on an exact
    frame lattice at a fixed tempo), or the whole grid after it would shift by a tick."""
    tick_t = np.asarray(ticks, dtype=float)
    if tick_t.size < 2:
        return []
    gaps = np.diff(tick_t)
    nominal = float(np.median(gaps))
    steps = np.maximum(1, np.round(gaps / nominal)) if nominal > 0 else np.ones_like(gaps)
    index = np.concatenate(([0.0], np.cumsum(steps)))  # each heard tick's number
    out = []
    for t in note_ons:
        i = int(np.searchsorted(tick_t, t, side="right")) - 1
        if i < 0 or i + 1 >= tick_t.size:
            continue
        per_tick = (tick_t[i + 1] - tick_t[i]) / steps[i]
        position = index[i] + (t - tick_t[i]) / per_tick
        nearest = round(position / ticks_per_step) * ticks_per_step
        out.append(float((position - nearest) * per_tick))
    return out


Key = tuple[int, str, str]
"""(JACK period, load, backend)."""


def run(options: Options, context: dict[str, object]) -> Section:
    section = Section(2, "Bridge latency through JACK")
    results: dict[Key, dict[str, Any]] = {}
    for period in options.periods:
        for load in LOADS:
            with cpu_hogs(load == "loaded") as hogs, jack_server(period, name=SERVER) as env:
                for backend in BACKENDS:
                    result = _measure(period, env, options, backend)
                    result.update(_grid(period, env, options, backend))
                    result["hogs"] = hogs
                    results[(period, load, backend)] = result
    spb = 60.0 / BPM
    silence_ms = SILENCE_BEATS * spb * 1e3
    section.method = (
        f"A dummy JACK server `{SERVER}` at {SAMPLE_RATE} Hz, restarted for each period and "
        "load (quiet; loaded = one busy-loop Python process per CPU core for the whole "
        "measurement); in each, `antiphon bridge` runs once per backend — "
        "`--backend rtmidi-jack` (python-rtmidi: input stamped when a thread drains RtMidi's "
        "queue, output sent when due, written at the start of the next period) and "
        "`--backend jack` (native, JACK-Client: input stamped with its frame, scheduling in "
        "JACK frame time, each note written at its frame offset) — "
        f"({options.model.name}, {BPM:g} bpm, answers of {ANSWER_EVENTS} "
        f"events, phrase-ending silence {SILENCE_BEATS:g} beat = {silence_ms:.0f} ms, start "
        "now) with its virtual ports; `examples/jack_peer.py` as an external JACK client plays "
        "and records, stamping every event in JACK frame time. Latency rounds alternate: a "
        "3-note phrase (latency from its last note-off), then `/antiphon/trigger` over OSC "
        "(latency from the send); each answer is stopped (`/antiphon/stop`) once its first "
        f"note is heard, so rounds are fast. Timing rounds: answers of {TIMING_EVENTS} events, "
        "triggered and played to their end. Timing error = received − intended note-on in "
        "JACK frame time (as a DAW on the same server hears it; no correction for the dummy "
        "driver's clock jumps), intended from `/antiphon/answer/plan` beats at the fixed tempo "
        "on a grid anchored at the answer's median offset (the bridge's own anchor time is "
        "not visible from outside). Grid rounds: `jack_midi_clock` (JACK transport rolling, "
        f"{GRID_BPM:g} bpm) clocks the bridge (`--start beat`, answers of {GRID_EVENTS} "
        "events, triggered over OSC) and the peer records its ticks; each answer note-on is "
        "compared with the nearest grid step of that clock (a quarter beat), interpolated "
        "between the ticks around it, in frames (a tick the recording peer missed — it is a "
        "Python client and loses a period now and then — is counted from the gap, or the "
        "grid would move by a tick). Xruns counted by a separate JACK client."
    )
    table = Table(
        ["JACK period", "load", "backend", "figure", "n", "p50 ms", "p99 ms", "max ms"],
        caption="**Latency and timing** (period 64 = 1.33 ms, 256 = 5.33 ms)",
    )
    for (period, load, backend), result in results.items():
        rows: list[tuple[str, Summary]] = [
            ("phrase end (last note-off) → first answer note", result["phrase"]),
            (f"  same, minus the {silence_ms:.0f} ms silence setting", result["phrase_net"]),
            ("/antiphon/trigger sent → first answer note", result["trigger"]),
            ("answer timing error (received − intended)", result["timing"]),
            ("  |timing error|", result["timing_abs"]),
            (f"note-on − external MIDI clock grid ({GRID_BPM:g} bpm)", result["grid"]),
            ("  |note-on − grid|", result["grid_abs"]),
        ]
        for label, s in rows:
            table.rows.append(
                [
                    str(period),
                    load,
                    BACKENDS[backend],
                    label,
                    str(s.n),
                    fmt(s.p50 * 1e3),
                    fmt(s.p99 * 1e3),
                    fmt(s.max * 1e3),
                ]
            )
        section.data[f"period_{period}_{load}_{backend}"] = result
    section.tables.append(table)
    counts = Table(
        [
            "JACK period",
            "load",
            "backend",
            "latency rounds",
            "answers heard",
            "missed",
            "early notes",
            "xruns",
            "repeated note-ons",
            "JACK clock jumps",
            "timing rounds",
            "notes timed",
            "grid answers",
            "grid notes",
            "grid xruns",
            "bridge RSS while answering (MiB)",
        ],
        caption="**Rounds**",
    )
    for (period, load, backend), result in results.items():
        counts.rows.append(
            [
                str(period),
                load,
                BACKENDS[backend],
                str(result["rounds"]),
                str(result["heard"]),
                str(result["missed"]),
                str(result["early"]),
                str(result["xruns"]),
                str(result["repeats"]),
                str(result["clock_jumps"]),
                str(result["timing_rounds"]),
                str(result["timing"].n),
                str(result["grid_answers"]),
                str(result["grid"].n),
                str(result["grid_xruns"]),
                fmt(result["rss_kib"] / 1024 if result["rss_kib"] else None),
            ]
        )
    section.tables.append(counts)
    section.figures.append(_plot(options.out_dir, results))
    section.notes.append(
        "missed = an answer began and ended without a note reaching the peer; early notes = a "
        "note-on heard before the request (the previous answer's last MIDI still in flight) — "
        "both counted and left out of the figures. JACK clock jumps = moments the dummy "
        "driver's frame clock fell behind the monotonic clock (a late cycle; its frame count "
        "never catches up): RtMidi-JACK schedules on the monotonic clock, so its notes move "
        "off the frame grid there; the native backend schedules in frames. Repeated note-ons = "
        "a note-on heard again within 50 ms with no note-off between: a client whose process "
        "callback missed periods (an overloaded machine) has its last "
        "buffer read again by the clients after it; left out of the figures, counted here."
    )
    rss = [r["rss_kib"] for r in results.values() if r["rss_kib"]]
    if rss:
        context["bridge_rss_kib"] = max(rss)
    for (period, load, backend), result in results.items():
        if load != "quiet" and backend != "jack":
            continue
        floor = period / SAMPLE_RATE * 1e3
        name = BACKENDS[backend]
        section.headline.append(
            (
                f"trigger → first note, {name}, period {period}, {load}, p50 / p99 ms",
                f"{fmt(result['trigger'].p50 * 1e3)} / {fmt(result['trigger'].p99 * 1e3)}",
                f"JACK period {fmt(floor)} ms",
                f"{fmt(result['trigger'].p50 * 1e3 / floor)}× the period (p50)",
            )
        )
        section.headline.append(
            (
                f"answer timing error, {name}, period {period}, {load}, p50 / p99 ms",
                f"{fmt(result['timing'].p50 * 1e3)} / {fmt(result['timing'].p99 * 1e3)}",
                f"JACK period {fmt(floor)} ms",
                f"{result['timing'].n} notes",
            )
        )
    return section


def _bridge_args(
    options: Options, osc_port: int, events_port: int, backend: str = "jack"
) -> list[str]:
    return [
        "--model",
        str(options.model),
        "--backend",
        backend,
        "--bpm",
        f"{BPM:g}",
        "--length",
        str(ANSWER_EVENTS),
        "--length-unit",
        "events",
        "--silence",
        f"{SILENCE_BEATS:g}",
        "--start",
        "now",
        "--seed",
        "7",
        "--osc-port",
        str(osc_port),
        "--osc-out",
        f"127.0.0.1:{events_port}",
    ]


def _measure(
    period: int, env: dict[str, str], options: Options, backend: str = "jack"
) -> dict[str, Any]:
    jack_peer = _peer_module()
    osc_port = free_udp_port()
    link = OscLink(osc_port)
    bridge = BridgeProcess(_bridge_args(options, osc_port, link.port, backend), env)
    peer = None
    xruns = None
    rounds: list[Round] = []
    timing: list[Round] = []
    rss: list[int] = []
    try:
        bridge.wait_ready()
        peer = jack_peer.JackPeer(f"antiphon-bench-peer-{period}", server=SERVER)
        peer.connect_out("Antiphon In")
        peer.connect_in("Antiphon Out")
        xruns = XrunCounter(SERVER)
        phrase = jack_peer.phrase_messages(PHRASE, BPM)
        warmup = 2 if options.quick else 6
        # latency: alternate phrase / trigger, stop each answer once its first note is heard
        while len(rounds) < 2 * options.answers + warmup:
            kind = "phrase" if len(rounds) % 2 == 0 else "trigger"
            rounds.append(_round(kind, peer, link, phrase, stop=True))
        # timing: longer answers (triggered, same seed), each played to its end
        link.send("/antiphon/length", TIMING_EVENTS)
        give_up = time.monotonic() + (30 if options.quick else 240)
        while sum(len(r.note_ons) for r in timing) < options.notes and time.monotonic() < give_up:
            timing.append(_round("trigger", peer, link, phrase, stop=False, timeout=30.0))
            value = bridge.rss_kib()
            if value:
                rss.append(value)
    finally:
        if xruns is not None:
            xruns.close()
        if peer is not None:
            peer.close()
        bridge.stop()
        link.close()
    measured = rounds[warmup:] if len(rounds) > warmup else rounds
    spb = 60.0 / BPM
    # a first note before the request belongs to the previous answer (should not happen after
    # the settling pause in _round): counted, not used
    phrase_lat = [
        r.first_note - r.asked_at
        for r in measured
        if r.kind == "phrase" and r.first_note is not None and r.first_note >= r.asked_at
    ]
    trigger_lat = [
        r.first_note - r.asked_at
        for r in measured
        if r.kind == "trigger" and r.first_note is not None and r.first_note >= r.asked_at
    ]
    early = sum(r.first_note is not None and r.first_note < r.asked_at for r in measured)
    errors: list[float] = []
    for r in timing:
        errors += match_plan(r.note_ons, r.plan, spb)
    return {
        "backend": backend,
        "phrase": summarize(phrase_lat),
        "phrase_net": summarize(np.asarray(phrase_lat) - SILENCE_BEATS * spb),
        "trigger": summarize(trigger_lat),
        "timing": summarize(errors),
        "timing_abs": summarize(np.abs(errors)),
        "rounds": len(measured),
        "heard": sum(r.first_note is not None for r in measured),
        "missed": sum(r.first_note is None for r in measured),
        "early": early,
        "xruns": xruns.count if xruns is not None else 0,
        "clock_jumps": sum(r.jumps for r in rounds + timing),
        "repeats": sum(r.repeats for r in rounds + timing),
        "timing_rounds": len(timing),
        "timing_missed": sum(not r.ended for r in timing),
        "rss_kib": max(rss) if rss else bridge.rss_kib("VmHWM"),
        "raw": {"phrase": phrase_lat, "trigger": trigger_lat, "timing": errors},
    }


def _grid(period: int, env: dict[str, str], options: Options, backend: str) -> dict[str, Any]:
    """Answers while ``jack_midi_clock`` clocks the bridge: note-ons against the clock's grid."""
    jack_peer = _peer_module()
    osc_port = free_udp_port()
    link = OscLink(osc_port)
    args = _bridge_args(options, osc_port, link.port, backend)
    args[args.index("--start") + 1] = "beat"
    args[args.index("--length") + 1] = str(GRID_EVENTS)
    args[args.index("--bpm") + 1] = f"{GRID_BPM:g}"
    bridge = BridgeProcess(args, env)
    peer = clock = xruns = None
    answers = 0
    try:
        bridge.wait_ready()
        peer = jack_peer.JackPeer(f"antiphon-bench-grid-{period}", server=SERVER)
        peer.connect_in("Antiphon Out")
        bridge_in = peer.find_port("Antiphon In", is_input=True)
        clock = subprocess.Popen(
            [
                "jack_midi_clock",
                "-b",
                f"{GRID_BPM:g}",
                "-B",
                "-P",
                bridge_in,
                f"{peer.name}:in",
            ],  # it connects them itself
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        peer.find_port("jack_midi_clock", is_input=False)
        time.sleep(0.3)  # its connections are made right after its port appears
        xruns = XrunCounter(SERVER)
        peer.client.transport_start()
        time.sleep(1.5)  # the bridge locks to the clock's tempo (two beats of ticks)
        wanted = max(options.notes // 4, 16)
        give_up = time.monotonic() + (20 if options.quick else 90)
        while time.monotonic() < give_up and len(_note_ons(peer)) < wanted:
            link.take()
            link.send("/antiphon/trigger")
            answers += 1
            deadline = time.monotonic() + 15.0
            ended = False
            while not ended and time.monotonic() < deadline:
                time.sleep(0.01)
                ended = any(address == "/antiphon/answer/end" for _, address, _ in link.take())
            time.sleep(0.1)
        peer.client.transport_stop()
        time.sleep(0.1)
    finally:
        if xruns is not None:
            xruns.close()
        if clock is not None:
            clock.terminate()
            clock.wait(timeout=10)
        ticks = [t for t, m in peer.received(realtime=True) if m.type == "clock"] if peer else []
        notes = [t for t, _ in _note_ons(peer)] if peer is not None else []
        if peer is not None:
            peer.close()
        bridge.stop()
        link.close()
    offsets = grid_offsets(notes, ticks, PPQN // _steps_per_beat(options.model))
    return {
        "grid": summarize(offsets),
        "grid_abs": summarize(np.abs(offsets)),
        "grid_answers": answers,
        "grid_xruns": xruns.count if xruns is not None else 0,
        "raw_grid": offsets,
    }


def _steps_per_beat(model: Path) -> int:
    from bridge.model import load_model

    return int(load_model(model).scheme.steps_per_beat)


def _round(
    kind: str, peer: Any, link: OscLink, phrase: list[Any], *, stop: bool, timeout: float = 5.0
) -> Round:
    """Ask for one answer; with ``stop``, send ``/antiphon/stop`` as soon as its first note is
    heard; either way wait for ``/antiphon/answer/end`` (or ``timeout``).

    Starts by letting three JACK periods pass: ``/antiphon/answer/end`` travels over UDP at
    once, while the previous answer's last MIDI (a chord's other notes, the stop's note-offs)
    still waits for the next period — it must not count as this round's answer.
    """
    period = peer.client.blocksize / peer.rate
    for _ in range(20):  # until three periods pass with nothing arriving
        before = len(peer.received())
        time.sleep(3 * period + 0.002)
        if len(peer.received()) == before:
            break
    peer.clear()
    link.take()
    if kind == "phrase":
        played = peer.play(phrase, delay=0.01)  # (start, last message) in JACK seconds
        asked = float(played[-1] if isinstance(played, tuple) else played)
    else:
        asked = peer.now()
        link.send("/antiphon/trigger")
    result = Round(kind, asked)
    result.clock.append((peer.now(), time.monotonic()))
    answer_id: int | None = None
    stopped = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not result.ended:
        time.sleep(0.002)
        result.clock.append((peer.now(), time.monotonic()))
        for _, address, args in link.take():
            if address == "/antiphon/answer/begin" and args:
                answer_id = int(args[0])
                result.plan.clear()
            elif address == "/antiphon/answer/plan" and args and int(args[0]) == answer_id:
                values = args[1:]
                result.plan += [
                    (float(values[i]), int(values[i + 1])) for i in range(0, len(values) - 3, 4)
                ]
            elif address == "/antiphon/answer/end" and args and int(args[0]) == answer_id:
                result.ended = True
        if stop and not stopped and _note_ons(peer):
            link.send("/antiphon/stop")
            stopped = True
    result.clock.append((peer.now(), time.monotonic()))
    heard, result.repeats = first_strikes(peer.received())
    # JACK frame times as they are (what a DAW hears); the clock jumps are only counted
    _, result.jumps = steady([result.asked_at], result.clock, threshold=max(0.002, period))
    result.note_ons = heard
    if result.note_ons:
        result.first_note = min(t for t, _ in result.note_ons)
    return result


def _note_ons(peer: Any) -> list[tuple[float, int]]:
    """Every note-on since the round began (``peer.clear()``; the previous answer had ended),
    less repeats (see :func:`first_strikes`)."""
    return first_strikes(peer.received())[0]


def first_strikes(
    messages: list[tuple[float, Any]], window: float = 0.05
) -> tuple[list[tuple[float, int]], int]:
    """``(time, pitch)`` of each note-on, and how many repeats were left out: a note-on of a key
    already on (no note-off since) within ``window`` seconds of the previous one.  That is how
    a JACK client's last buffer looks when it is read again because the client missed periods
    (an overloaded machine); a real re-strike has a note-off between."""
    out: list[tuple[float, int]] = []
    repeats = 0
    last_on: dict[tuple[int, int], float] = {}
    for t, msg in messages:
        if msg.type not in ("note_on", "note_off"):
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            previous = last_on.get(key)
            last_on[key] = t
            if previous is not None and t - previous <= window:
                repeats += 1
                continue
            out.append((t, msg.note))
        else:
            last_on.pop(key, None)
    return out, repeats


def _plot(out_dir: Path, results: dict[Key, dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    data, labels = [], []
    for (period, load, backend), result in results.items():
        data.append(np.asarray(result["raw"]["trigger"]) * 1e3)
        labels.append(f"{BACKENDS[backend]}\n{period}, {load}")
    left.boxplot(data, whis=(1, 99), showfliers=True)
    left.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=60)
    for period in sorted({key[0] for key in results}):
        left.axhline(period / SAMPLE_RATE * 1e3, ls=":", color="gray")
    left.set_ylabel("trigger → first note, ms (whiskers p1–p99)")
    left.set_title("Latency (dotted: one JACK period)")
    for (period, load, backend), result in results.items():
        errors = np.abs(np.asarray(result["raw"]["timing"])) * 1e3
        if errors.size:
            ordered = np.sort(errors)
            share = np.arange(1, ordered.size + 1) / ordered.size
            style = "-" if backend == "jack" else "--"
            right.plot(ordered, share, style, label=f"{BACKENDS[backend]}, {period}, {load}")
    right.set_xscale("symlog", linthresh=0.01)
    right.set_xlabel("|note-on received − intended|, ms (JACK frames)")
    right.set_ylabel("share of notes (cumulative)")
    right.set_title("Answer timing error")
    right.legend(fontsize=7)
    fig.tight_layout()
    name = "latency.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name
