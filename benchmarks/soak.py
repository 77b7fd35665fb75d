"""Soak: many call-and-response rounds through real JACK ports; stuck notes, memory, latency drift.

``python -m benchmarks.soak --rounds 5000`` runs ``antiphon bridge`` on a dummy JACK server
(its own, ``antiphon-soak``, unless ``--server`` names a running one) and plays one short phrase
per round from :class:`examples.jack_peer.JackPeer`, a separate JACK client that also records
"Antiphon Out".  A round ends when the bridge reports ``/antiphon/answer/end`` (``--osc-out``)
and every note-on of the answer has its note-off at the peer.  Measured:

* stuck notes over the whole run (note-ons recorded without a later note-off) — and, so that a
  note-off lost by JACK in transport is not blamed on the bridge, the recording is compared with
  the bridge's own count of messages sent (its exit log line) and the notes it still holds;
* rounds whose phrase JACK lost on its way in (the bridge's input count says so: it got fewer
  messages than the peer played) are counted apart, All Notes Off clears them, and the soak goes
  on; a round the bridge heard in full but did not answer is a failure;
* resident memory (``VmRSS``) of the bridge after the warm-up rounds and at the end;
* latency per round: from the phrase-ending silence (last note-off + ``--silence`` beats) to the
  first answer note at the peer, in JACK time; p50/p99 of the first and the last tenth of the
  rounds show any drift.

``tests/bridge/test_soak.py`` runs :func:`run_soak` at CI size (a fast random model); this
command line is the long run.  Output: one JSON object (``--json FILE`` also writes it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket

from benchmarks.notecheck import unmatched
from bridge.dummy_jack import client_env

REPO = Path(__file__).resolve().parent.parent
SOAK_SERVER = "antiphon-soak"
CLIENT = "AntiphonSoak"
READY = re.compile(r"OSC (?P<host>[^\s,]+):(?P<port>\d+)")

__all__ = ["SoakResult", "main", "percentile", "run_soak"]


def _peer_module() -> Any:
    examples = str(REPO / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    import jack_peer

    return jack_peer


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0..100) of ``values``; NaN if empty."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class SoakResult:
    """Figures of one soak run (JSON-friendly)."""

    rounds: int
    answered: int = 0
    incomplete_rounds: int = 0  # answer seen, a note-off missing at the peer (JACK lost it?)
    input_lost_rounds: int = 0  # JACK lost part of the phrase before the bridge got it
    output_lost_rounds: int = 0  # no answer note reached the peer although one was sent
    note_ons: int = 0
    stuck_notes: int = 0
    bridge_sent: int = -1
    bridge_sounding: int = -1  # notes the bridge itself still held at the end (must be 0)
    bridge_send_failures: int = -1
    recorded: int = 0
    lost_in_transport: int = 0
    rss_warm_kib: int = 0
    rss_end_kib: int = 0
    rss_growth_kib: int = 0
    latency_ms: list[float] = field(default_factory=list)
    first_decile_p50_ms: float = float("nan")
    first_decile_p99_ms: float = float("nan")
    last_decile_p50_ms: float = float("nan")
    last_decile_p99_ms: float = float("nan")
    seconds: float = 0.0
    exit_code: int | None = None
    failures: list[str] = field(default_factory=list)
    log_tail: str = ""

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latency_ms")
        data.pop("log_tail")
        for key, value in data.items():
            if isinstance(value, float):
                data[key] = round(value, 2)
        return data


class _Events:
    """The bridge's ``--osc-out`` stream (counts ``/antiphon/answer/end``) and ``/antiphon/status``
    replies, on one socket with a reader thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.ended = 0
        self.status: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-osc-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                packet = OscPacket(data)
            except Exception:
                continue
            with self._cond:
                for timed in packet.messages:
                    if timed.message.address == "/antiphon/answer/end":
                        self.ended += 1
                    elif timed.message.address == "/antiphon/status":
                        params = list(timed.message.params)
                        self.status = dict(zip(params[::2], params[1::2], strict=True))
                self._cond.notify_all()

    def wait_ended(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.ended >= count, timeout)

    def ask_status(self, port: int, timeout: float = 5.0) -> dict[str, Any]:
        with self._cond:
            self.status = None
        self.sock.sendto(build_msg("/antiphon/status", []).dgram, ("127.0.0.1", port))
        with self._cond:
            if not self._cond.wait_for(lambda: self.status is not None, timeout):
                raise RuntimeError("no reply to /antiphon/status")
            assert self.status is not None
            return self.status

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _start_bridge(
    model: Path,
    env: dict[str, str],
    log_path: Path,
    *,
    bpm: float,
    length: int,
    silence: float,
    events_port: int,
) -> tuple[subprocess.Popen[str], int]:
    command = [
        sys.executable,
        "-m",
        "bridge",
        "--model",
        str(model),
        "--client-name",
        CLIENT,
        "--bpm",
        f"{bpm:g}",
        "--silence",
        f"{silence:g}",
        "--length",
        str(length),
        "--start",
        "now",
        "--osc-port",
        "0",
        "--osc-out",
        f"127.0.0.1:{events_port}",
        "--seed",
        "7",
        "--log-level",
        "info",
    ]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log_path.open("w"),
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = READY.search(line)
    if not match:
        process.kill()
        process.wait(timeout=10)
        raise RuntimeError(f"the bridge did not start: {line!r} {log_path.read_text()[-1000:]}")
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
    return process, int(match.group("port"))


def _all_notes_off() -> Any:
    import mido

    return mido.Message("control_change", control=123, value=0)


def _phrase(round_: int, spb: float) -> list[tuple[float, Any]]:
    """A short note, or a two-note chord every other round; pitches vary with the round so the
    seeds differ."""
    import mido

    pitches = [48 + (round_ * 7) % 36]
    if round_ % 2:
        pitches.append(pitches[0] + 4)
    ons = [(0.0, mido.Message("note_on", note=p, velocity=60 + round_ % 60)) for p in pitches]
    offs = [(0.05 * spb, mido.Message("note_off", note=p)) for p in pitches]
    return ons + offs


def run_soak(
    rounds: int,
    *,
    model: Path,
    env: dict[str, str],
    workdir: Path,
    bpm: float = 300.0,
    length: int = 3,
    silence_beats: float = 0.25,
    warmup: int = 20,
    round_timeout: float = 3.0,
    progress: Callable[[int, SoakResult], None] | None = None,
) -> SoakResult:
    """Run ``rounds`` call-and-response rounds against a fresh bridge on the server in ``env``."""
    jack_peer = _peer_module()
    workdir.mkdir(parents=True, exist_ok=True)
    result = SoakResult(rounds=rounds)
    spb = 60.0 / bpm
    silence_s = silence_beats * spb
    events = _Events()
    log_path = workdir / "soak-bridge.log"
    process, control_port = _start_bridge(
        model, env, log_path, bpm=bpm, length=length, silence=silence_beats, events_port=events.port
    )
    saved_env = {k: os.environ.get(k) for k in env if k.startswith("JACK")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("JACK")})
    peer = None
    started = time.monotonic()
    try:
        peer = jack_peer.JackPeer("antiphon-soak-peer", server=env.get("JACK_DEFAULT_SERVER"))
        peer.connect_out(f"{CLIENT}:Antiphon In")
        peer.connect_in(f"{CLIENT}:Antiphon Out")
        sent_in = 0  # messages the peer played into the bridge
        for i in range(rounds):
            if i == warmup:
                result.rss_warm_kib = rss_kib(process.pid)
            ended = events.ended
            phrase = _phrase(i, spb)
            _, end = peer.play(phrase, delay=0.003)
            sent_in += len(phrase)
            if not events.wait_ended(ended + 1, round_timeout):
                status = events.ask_status(control_port)
                if int(status["midi_in_received"]) >= sent_in:
                    result.failures.append(
                        f"round {i}: the bridge got the phrase but sent no "
                        f"/antiphon/answer/end in {round_timeout} s"
                    )
                    break
                # JACK lost part of the phrase on its way in (a late peer cycle): release any
                # key left down, let a late answer finish, and go on.
                result.input_lost_rounds += 1
                peer.play([(0.0, _all_notes_off())], delay=0.003)
                sent_in += 1
                events.wait_ended(ended + 1, 1.0)
                deadline = time.monotonic() + round_timeout
                while events.ask_status(control_port)["answering"]:
                    if time.monotonic() > deadline:
                        result.failures.append(f"round {i}: the bridge stays busy")
                        break
                    time.sleep(0.05)
                time.sleep(0.05)
                continue
            # The last note-off reaches the peer a JACK period after answer/end.  Polls are few
            # and spaced: the peer's process callback needs the GIL every period, and a busy
            # poll would make it miss cycles (and so lose events in JACK).
            for _ in range(50):
                time.sleep(0.004)
                got = peer.received(since=end + 1e-4)
                ons = [(t, m) for t, m in got if m.type == "note_on" and m.velocity > 0]
                if ons and not unmatched(got):
                    break
            else:
                result.incomplete_rounds += 1  # judged at the end against what JACK lost
            if not ons:  # the answer's notes were lost in JACK on their way out
                result.output_lost_rounds += 1
                continue
            result.answered += 1
            result.latency_ms.append((ons[0][0] - (end + silence_s)) * 1e3)
            if progress is not None and (i + 1) % 100 == 0:
                progress(i + 1, result)
        if not result.rss_warm_kib:
            result.rss_warm_kib = rss_kib(process.pid)
        result.rss_end_kib = rss_kib(process.pid)
        status = events.ask_status(control_port)
        result.bridge_sounding = int(status["sounding"])
        result.bridge_send_failures = int(status["midi_out_failed"])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            result.exit_code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            result.exit_code = process.wait(timeout=5)
            result.failures.append("the bridge ignored SIGINT")
        time.sleep(0.3)  # the last note-offs reach the peer
        everything = peer.received() if peer is not None else []
        if peer is not None:
            peer.close()
        events.close()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    result.seconds = time.monotonic() - started
    log = log_path.read_text(errors="replace")
    result.log_tail = log[-3000:]
    sent = re.search(r"MIDI out (\d+) sent", log)
    result.bridge_sent = int(sent.group(1)) if sent else -1
    result.recorded = len(everything)
    result.lost_in_transport = max(0, result.bridge_sent - result.recorded)
    result.note_ons = sum(1 for _, m in everything if m.type == "note_on" and m.velocity > 0)
    result.stuck_notes = len(unmatched(everything))
    result.rss_growth_kib = result.rss_end_kib - result.rss_warm_kib
    tenth = max(1, len(result.latency_ms) // 10)
    first, last = result.latency_ms[:tenth], result.latency_ms[-tenth:]
    result.first_decile_p50_ms = percentile(first, 50)
    result.first_decile_p99_ms = percentile(first, 99)
    result.last_decile_p50_ms = percentile(last, 50)
    result.last_decile_p99_ms = percentile(last, 99)
    if "Traceback" in log:
        result.failures.append("a traceback in the bridge log")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Soak the bridge: ROUNDS call-and-response rounds through real JACK ports; "
        "prints stuck notes, memory growth and latency drift as JSON.",
    )
    parser.add_argument("--rounds", type=int, default=5000, help="rounds (default %(default)s)")
    parser.add_argument(
        "--model",
        type=Path,
        default=REPO / "models" / "default.onnx",
        help="model file (default %(default)s)",
    )
    parser.add_argument("--bpm", type=float, default=300.0, help="tempo (default %(default)g)")
    parser.add_argument(
        "--length", type=int, default=3, help="answer length in events (default %(default)s)"
    )
    parser.add_argument(
        "--silence",
        type=float,
        default=0.25,
        help="phrase-ending silence in beats (default %(default)g)",
    )
    parser.add_argument(
        "--server",
        default=None,
        help=f"a running JACK server to use (default: start {SOAK_SERVER!r})",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO / ".cache" / "soak",
        help="where the bridge log goes (default %(default)s)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"no model file {args.model} (train one, or pass --model)")

    def report(done: int, result: SoakResult) -> None:
        recent = result.latency_ms[-100:]
        print(
            f"{done} rounds, last 100: p50 {percentile(recent, 50):.1f} ms, "
            f"p99 {percentile(recent, 99):.1f} ms",
            file=sys.stderr,
            flush=True,
        )

    def soak(env: dict[str, str]) -> SoakResult:
        return run_soak(
            args.rounds,
            model=args.model,
            env=env,
            workdir=args.workdir,
            bpm=args.bpm,
            length=args.length,
            silence_beats=args.silence,
            progress=report,
        )

    if args.server:
        env = client_env(args.server)
        result = soak(env)
    else:
        from benchmarks.jackserver import jack_server

        with jack_server(64, name=SOAK_SERVER) as env:
            result = soak(env)
    figures = result.summary()
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**figures, "latency_ms": result.latency_ms}, indent=1))
    ok = (
        not result.failures
        and result.bridge_sounding == 0
        and result.stuck_notes <= result.lost_in_transport
        and result.answered + result.input_lost_rounds + result.output_lost_rounds == result.rounds
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
