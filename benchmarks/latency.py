"""Section 2 — bridge latency and answer timing, through real ports on a dummy JACK server.

For each JACK period a fresh server (``antiphon-bench``) runs, ``antiphon bridge`` starts against
it with virtual ports, and :class:`examples.jack_peer.JackPeer` — a separate JACK client — plays
short phrases into "Antiphon In" and records "Antiphon Out", every event stamped in JACK frame
time.  Rounds alternate between a played phrase (latency from its last note-off) and an OSC
``/antiphon/trigger`` (latency from the moment it is sent).  Answer timing compares each received
note-on with its intended time from the ``/antiphon/answer/plan`` OSC events (beats after the
answer's anchor, converted at the fixed tempo), relative to the answer's first note.  Main thread
only (the peer and the OSC link have their own threads).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bridgeproc import BridgeProcess, OscLink, free_udp_port
from benchmarks.jackserver import SAMPLE_RATE, SERVER_NAME, jack_server
from benchmarks.options import REPO, Options
from benchmarks.report import Section, Table
from benchmarks.stats import Summary, fmt, summarize

__all__ = ["BPM", "PHRASE", "Round", "match_plan", "run", "steady"]

BPM = 300.0  # fastest tempo the bridge accepts: fast rounds
SILENCE_BEATS = 0.25  # shortest phrase-ending silence the bridge accepts
ANSWER_EVENTS = 3  # latency rounds: short answers, stopped once their first note is heard
TIMING_EVENTS = 128  # timing rounds: long answers (fewer tails to wait for), played to the end
PHRASE = [(0.0, 60, 0.25, 90), (0.25, 64, 0.25, 90), (0.5, 67, 0.25, 90)]
"""(onset_beats, pitch, duration_beats, velocity): a short arpeggio, 0.15 s at 300 bpm."""


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


def steady(times: list[float], clock: list[tuple[float, float]],
           threshold: float) -> tuple[list[float], int]:
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


def match_plan(note_ons: list[tuple[float, int]], plan: list[tuple[float, int]],
               seconds_per_beat: float) -> list[float]:
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


def run(options: Options, context: dict[str, object]) -> Section:
    section = Section(2, "Bridge latency through JACK")
    per_period: dict[int, dict[str, Any]] = {}
    for period in options.periods:
        with jack_server(period) as env:
            per_period[period] = _measure(period, env, options)
    spb = 60.0 / BPM
    silence_ms = SILENCE_BEATS * spb * 1e3
    section.method = (
        f"A dummy JACK server `{SERVER_NAME}` at {SAMPLE_RATE} Hz, restarted for each period; "
        f"`antiphon bridge` ({options.model.name}, {BPM:g} bpm, answers of {ANSWER_EVENTS} "
        f"events, phrase-ending silence {SILENCE_BEATS:g} beat = {silence_ms:.0f} ms, start "
        "now) with its virtual ports; `examples/jack_peer.py` as an external JACK client plays "
        "and records, stamping every event in JACK frame time. Latency rounds alternate: a "
        "3-note phrase (latency from its last note-off), then `/antiphon/trigger` over OSC "
        "(latency from the send); each answer is stopped (`/antiphon/stop`) once its first "
        "note is heard, so rounds are fast. The JACK period is the floor: RtMidi writes output "
        f"at the start of the next period. Timing rounds: answers of {TIMING_EVENTS} events, "
        "triggered and played to their end. Timing error = received − intended note-on, "
        "intended from `/antiphon/answer/plan` beats at the fixed tempo on a grid anchored at "
        "the answer's median offset (the bridge's own anchor time is not visible from outside)."
    )
    table = Table(["JACK period", "period ms (floor)", "figure", "n", "p50 ms", "p99 ms",
                   "max ms"], caption="**Latency and timing**")
    for period, result in per_period.items():
        floor = period / SAMPLE_RATE * 1e3
        rows: list[tuple[str, Summary]] = [
            ("phrase end (last note-off) → first answer note", result["phrase"]),
            (f"  same, minus the {silence_ms:.0f} ms silence setting", result["phrase_net"]),
            ("/antiphon/trigger sent → first answer note", result["trigger"]),
            ("answer timing error (received − intended)", result["timing"]),
            ("  |timing error|", result["timing_abs"]),
        ]
        for label, s in rows:
            table.rows.append([str(period), fmt(floor), label, str(s.n), fmt(s.p50 * 1e3),
                               fmt(s.p99 * 1e3), fmt(s.max * 1e3)])
        section.data[f"period_{period}"] = result
    section.tables.append(table)
    counts = Table(["JACK period", "latency rounds", "answers heard", "missed",
                    "early notes", "JACK clock jumps", "timing rounds", "notes timed",
                    "bridge RSS while answering (MiB)"], caption="**Rounds**")
    for period, result in per_period.items():
        counts.rows.append([str(period), str(result["rounds"]), str(result["heard"]),
                            str(result["missed"]), str(result["early"]), str(result["clock_jumps"]),
                            str(result["timing_rounds"]),
                            str(result["timing"].n),
                            fmt(result["rss_kib"] / 1024 if result["rss_kib"] else None)])
    section.tables.append(counts)
    section.figures.append(_plot(options.out_dir, per_period))
    section.notes.append(
        "missed = an answer began and ended without a note reaching the peer; early notes = a "
        "note-on heard before the request (the previous answer's last MIDI still in flight) — "
        "both counted and left out of the figures. JACK clock jumps = moments the dummy "
        "driver's frame clock fell behind the monotonic clock (a late cycle; its frame count "
        "never catches up): JACK-stamped times are corrected by the measured jump, since the "
        "bridge schedules on the monotonic clock."
    )
    rss = [r["rss_kib"] for r in per_period.values() if r["rss_kib"]]
    if rss:
        context["bridge_rss_kib"] = max(rss)
    for period, result in per_period.items():
        floor = period / SAMPLE_RATE * 1e3
        section.headline.append((
            f"trigger → first note, period {period}, p50 / p99 ms",
            f"{fmt(result['trigger'].p50 * 1e3)} / {fmt(result['trigger'].p99 * 1e3)}",
            f"JACK period {fmt(floor)} ms (floor)",
            f"{fmt(result['trigger'].p50 * 1e3 / floor)}× the floor (p50)",
        ))
        section.headline.append((
            f"answer timing error, period {period}, p50 / p99 ms",
            f"{fmt(result['timing'].p50 * 1e3)} / {fmt(result['timing'].p99 * 1e3)}",
            f"JACK period {fmt(floor)} ms", f"{result['timing'].n} notes",
        ))
    return section


def _bridge_args(options: Options, osc_port: int, events_port: int) -> list[str]:
    return [
        "--model", str(options.model), "--backend", "jack", "--bpm", f"{BPM:g}",
        "--length", str(ANSWER_EVENTS), "--length-unit", "events",
        "--silence", f"{SILENCE_BEATS:g}", "--start", "now", "--seed", "7",
        "--osc-port", str(osc_port), "--osc-out", f"127.0.0.1:{events_port}",
    ]


def _measure(period: int, env: dict[str, str], options: Options) -> dict[str, Any]:
    jack_peer = _peer_module()
    osc_port = free_udp_port()
    link = OscLink(osc_port)
    bridge = BridgeProcess(_bridge_args(options, osc_port, link.port), env)
    peer = None
    rounds: list[Round] = []
    timing: list[Round] = []
    rss: list[int] = []
    try:
        bridge.wait_ready()
        peer = jack_peer.JackPeer(f"antiphon-bench-peer-{period}", server=SERVER_NAME)
        peer.connect_out("Antiphon In")
        peer.connect_in("Antiphon Out")
        phrase = jack_peer.phrase_messages(PHRASE, BPM)
        warmup = 2 if options.quick else 6
        # latency: alternate phrase / trigger, stop each answer once its first note is heard
        while len(rounds) < 2 * options.answers + warmup:
            kind = "phrase" if len(rounds) % 2 == 0 else "trigger"
            rounds.append(_round(kind, peer, link, phrase, stop=True))
        # timing: longer answers (triggered, same seed), each played to its end
        link.send("/antiphon/length", TIMING_EVENTS)
        give_up = time.monotonic() + (30 if options.quick else 240)
        while sum(len(r.note_ons) for r in timing) < options.notes and \
                time.monotonic() < give_up:
            timing.append(_round("trigger", peer, link, phrase, stop=False, timeout=30.0))
            value = bridge.rss_kib()
            if value:
                rss.append(value)
    finally:
        if peer is not None:
            peer.close()
        bridge.stop()
        link.close()
    measured = rounds[warmup:] if len(rounds) > warmup else rounds
    spb = 60.0 / BPM
    # a first note before the request belongs to the previous answer (should not happen after
    # the settling pause in _round): counted, not used
    phrase_lat = [r.first_note - r.asked_at for r in measured
                  if r.kind == "phrase" and r.first_note is not None
                  and r.first_note >= r.asked_at]
    trigger_lat = [r.first_note - r.asked_at for r in measured
                   if r.kind == "trigger" and r.first_note is not None
                   and r.first_note >= r.asked_at]
    early = sum(r.first_note is not None and r.first_note < r.asked_at for r in measured)
    errors: list[float] = []
    for r in timing:
        errors += match_plan(r.note_ons, r.plan, spb)
    return {
        "phrase": summarize(phrase_lat),
        "phrase_net": summarize(np.asarray(phrase_lat) - SILENCE_BEATS * spb),
        "trigger": summarize(trigger_lat),
        "timing": summarize(errors),
        "timing_abs": summarize(np.abs(errors)),
        "rounds": len(measured),
        "heard": sum(r.first_note is not None for r in measured),
        "missed": sum(r.first_note is None for r in measured),
        "early": early,
        "clock_jumps": sum(r.jumps for r in rounds + timing),
        "timing_rounds": len(timing),
        "timing_missed": sum(not r.ended for r in timing),
        "rss_kib": max(rss) if rss else bridge.rss_kib("VmHWM"),
        "raw": {"phrase": phrase_lat, "trigger": trigger_lat, "timing": errors},
    }


def _round(kind: str, peer: Any, link: OscLink, phrase: list[Any], *, stop: bool,
           timeout: float = 5.0) -> Round:
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
                result.plan += [(float(values[i]), int(values[i + 1]))
                                for i in range(0, len(values) - 3, 4)]
            elif address == "/antiphon/answer/end" and args and int(args[0]) == answer_id:
                result.ended = True
        if stop and not stopped and _note_ons(peer):
            link.send("/antiphon/stop")
            stopped = True
    result.clock.append((peer.now(), time.monotonic()))
    heard = _note_ons(peer)
    times, result.jumps = steady([result.asked_at, *(t for t, _ in heard)], result.clock,
                                 threshold=max(0.002, period))
    result.asked_at = times[0]
    result.note_ons = [(t, p) for t, (_, p) in zip(times[1:], heard, strict=True)]
    if result.note_ons:
        result.first_note = min(t for t, _ in result.note_ons)
    return result


def _note_ons(peer: Any) -> list[tuple[float, int]]:
    """Every note-on since the round began (``peer.clear()``); the previous answer had ended."""
    return [(t, msg.note) for t, msg in peer.received()
            if msg.type == "note_on" and msg.velocity > 0]


def _plot(out_dir: Path, per_period: dict[int, dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    data, labels = [], []
    for period, result in per_period.items():
        for key, name in (("phrase", "phrase end"), ("trigger", "trigger")):
            data.append(np.asarray(result["raw"][key]) * 1e3)
            labels.append(f"{name}\nperiod {period}")
    left.boxplot(data, whis=(1, 99), showfliers=True)
    left.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    for period in per_period:
        left.axhline(period / SAMPLE_RATE * 1e3, ls=":", color="gray")
    left.set_ylabel("ms to first answer note (whiskers p1–p99)")
    left.set_title("Latency")
    for period, result in per_period.items():
        errors = np.asarray(result["raw"]["timing"]) * 1e3
        if errors.size:
            right.hist(errors, bins=60, histtype="step", label=f"period {period}")
    right.set_xlabel("note-on received − intended (ms)")
    right.set_ylabel("notes")
    right.set_title("Answer timing error")
    right.legend()
    fig.tight_layout()
    name = "latency.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name
