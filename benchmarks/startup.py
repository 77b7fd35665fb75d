"""Section 3 — start-up and memory: ``antiphon bridge`` launch → ready line / ports visible, and
its resident memory idle and while answering; beside a bare Python start and the reference
method's start (import TensorFlow, build the window net, first ``predict``).

Memory comes from ``/proc/PID/status`` (VmRSS now, VmHWM peak).  Main thread only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from benchmarks.bridgeproc import BridgeProcess, OscLink, free_udp_port
from benchmarks.jackserver import SERVER_NAME, jack_server
from benchmarks.options import REPO, Options
from benchmarks.report import Section, Table
from benchmarks.stats import fmt, ratio, summarize

__all__ = ["run"]


def _ports_visible(client: Any) -> bool:
    names = {p.name for p in client.get_ports(is_midi=True)}
    return any("Antiphon In" in n for n in names) and any("Antiphon Out" in n for n in names)


def _launch(
    options: Options, env: dict[str, str], watcher: Any, link: OscLink
) -> tuple[float, float, BridgeProcess]:
    """Start one bridge; seconds to its ready line and to both ports being visible in JACK."""
    bridge = BridgeProcess(
        [
            "--model",
            str(options.model),
            "--backend",
            "jack",
            "--bpm",
            "300",
            "--length",
            "8",
            "--start",
            "now",
            "--osc-port",
            str(link.target[1]),
            "--osc-out",
            f"127.0.0.1:{link.port}",
        ],
        env,
    )
    ports_at = None
    deadline = time.monotonic() + 30
    while ports_at is None and time.monotonic() < deadline and bridge.process.poll() is None:
        if _ports_visible(watcher):
            ports_at = time.monotonic()
        else:
            time.sleep(0.002)
    ready = bridge.wait_ready()
    if ports_at is None:
        bridge.stop()
        raise RuntimeError("the bridge's ports never appeared in JACK")
    return ready, ports_at - bridge.started_at, bridge


def _timed_process(args: list[str], word: str = "") -> tuple[float, int | None]:
    """Seconds from launch until a line containing ``word`` (or exit), and the KiB it reported."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.monotonic()
    process = subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    rss = None
    for line in process.stdout:
        if word and line.startswith(word):
            elapsed = time.monotonic() - start
            parts = line.split()
            rss = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            process.wait(60)
            return elapsed, rss
    process.wait(60)
    return time.monotonic() - start, rss


def run(options: Options, context: dict[str, object]) -> Section:
    import jack

    from benchmarks.latency import PHRASE, _peer_module, _round

    section = Section(3, "Start-up and memory")
    ready_s: list[float] = []
    ports_s: list[float] = []
    idle_rss: list[int] = []
    answering_rss: list[int] = []
    peak_rss: list[int] = []
    with jack_server(64) as env:
        watcher = jack.Client("antiphon-bench-watch", no_start_server=True, servername=SERVER_NAME)
        try:
            for i in range(options.launches):
                link = OscLink(free_udp_port())
                try:
                    ready_one, ports_one, bridge = _launch(options, env, watcher, link)
                    ready_s.append(ready_one)
                    ports_s.append(ports_one)
                    try:
                        time.sleep(0.3)
                        idle_rss.append(bridge.rss_kib() or 0)
                        if i == options.launches - 1:
                            answering_rss, peak = _answer_some(
                                options, bridge, link, _peer_module(), _round, PHRASE
                            )
                            peak_rss.append(peak)
                    finally:
                        bridge.stop()
                finally:
                    link.close()
        finally:
            watcher.close()
    python_s = [
        _timed_process([sys.executable, "-c", "print('ready')"], "ready")[0]
        for _ in range(max(3, options.launches))
    ]
    ref_runs = [
        _timed_process(
            [
                sys.executable,
                "-c",
                "from benchmarks.reference import start_and_report; start_and_report()",
            ],
            "ready",
        )
        for _ in range(1 if options.quick else 3)
    ]
    ref_s = [r[0] for r in ref_runs]
    ref_rss = [r[1] for r in ref_runs if r[1]]
    ready, ports, py, ref = (
        summarize(ready_s),
        summarize(ports_s),
        summarize(python_s),
        summarize(ref_s),
    )
    section.method = (
        f"`antiphon bridge --model {options.model.name} --backend jack` launched "
        f"{options.launches} times against the dummy JACK server `{SERVER_NAME}` (period 64): "
        "seconds from launch to its ready line, and to both ports being visible to another "
        "JACK client. Baselines: a bare `python -c` start, and the reference method's start "
        "(import TensorFlow, build its window net, first `model.predict`) in "
        f"{len(ref_s)} launch(es). Resident memory from /proc/PID/status: idle after start-up, "
        "and while answering (phrases and triggers through the JACK peer)."
    )
    table = Table(
        ["start-up", "n", "p50 s", "p99 s", "vs bridge ready (p50)"], caption="**Launch → ready**"
    )
    for label, item in (
        ("antiphon bridge → ready line", ready),
        ("antiphon bridge → ports visible in JACK", ports),
        ("bare Python interpreter", py),
        ("reference: TensorFlow + window net + first predict", ref),
    ):
        table.rows.append(
            [
                label,
                str(item.n),
                fmt(item.p50),
                fmt(item.p99),
                f"{fmt(ratio(item.p50, ready.p50))}×",
            ]
        )
    section.tables.append(table)
    mem = Table(["process", "resident memory MiB", "note"], caption="**Memory**")
    mib = 1 / 1024
    idle = summarize(idle_rss)
    mem.rows.append(["antiphon bridge, idle", fmt(idle.p50 * mib), f"p50 of {idle.n} launches"])
    answering = summarize(answering_rss)
    mem.rows.append(
        [
            "antiphon bridge, while answering",
            fmt(answering.max * mib),
            f"max of {answering.n} samples; peak VmHWM "
            f"{fmt(max(peak_rss) * mib if peak_rss else None)}",
        ]
    )
    ref_mem = max(ref_rss) if ref_rss else None
    mem.rows.append(
        [
            "reference method after its first predict",
            fmt(ref_mem * mib if ref_mem else None),
            "TensorFlow + Keras window net",
        ]
    )
    section.tables.append(mem)
    section.data.update(
        ready=ready,
        ports=ports,
        python=py,
        reference=ref,
        idle_rss_kib=idle.p50,
        answering_rss_kib=answering.max,
        reference_rss_kib=ref_mem,
    )
    section.headline.append(
        (
            "start-up to ready, p50 s",
            fmt(ready.p50),
            f"{fmt(ref.p50)} (reference: TF + net)",
            f"{fmt(ratio(ref.p50, ready.p50))}× faster",
        )
    )
    section.headline.append(
        (
            "resident memory while answering, MiB",
            fmt(answering.max * mib),
            f"{fmt(ref_mem * mib if ref_mem else None)} (reference after first predict)",
            f"{fmt(ratio(ref_mem or float('nan'), answering.max))}× less",
        )
    )
    return section


def _answer_some(
    options: Options,
    bridge: BridgeProcess,
    link: OscLink,
    jack_peer: Any,
    round_fn: Any,
    phrase_notes: Any,
) -> tuple[list[int], int]:
    """Play phrases and triggers at the running bridge, sampling its VmRSS after each answer."""
    samples: list[int] = []
    peer = jack_peer.JackPeer("antiphon-bench-mem", server=SERVER_NAME)
    try:
        peer.connect_out("Antiphon In")
        peer.connect_in("Antiphon Out")
        phrase = jack_peer.phrase_messages(phrase_notes, 300)
        for i in range(4 if options.quick else 12):
            round_fn(
                "phrase" if i % 2 == 0 else "trigger", peer, link, phrase, stop=False, timeout=10.0
            )
            value = bridge.rss_kib()
            if value:
                samples.append(value)
    finally:
        peer.close()
    return samples, bridge.rss_kib("VmHWM") or 0
