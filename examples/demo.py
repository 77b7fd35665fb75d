"""Antiphon's demo: a real bridge answers an example phrase; the answer is saved as MIDI, a piano
roll and a WAV.

What happens, in order:

1. a dummy JACK server named ``antiphon-demo`` is started (or reused if one runs under that
   name), so the demo needs no sound card, no ALSA and no running audio system;
2. ``antiphon bridge`` starts as its own process with the shipped model (or ``--model``) and a
   fixed ``--seed``, and announces its ready line;
3. a separate JACK client (``examples/jack_peer.py``) plays the phrase into "Antiphon In" and
   records "Antiphon Out"; the bridge's OSC events (``/antiphon/answer/end``) say when the
   answer is complete;
4. ``demo-out/answer.mid`` (tracks "call" and "answer"), ``demo-out/pianoroll.png`` (call and
   answer in two colours) and ``demo-out/answer.wav`` (rendered with FluidSynth and a General
   MIDI soundfont, when both are installed) are written and listed;
5. the bridge is stopped with SIGINT (it must exit 0) and the JACK server is stopped.

Any failure ends with one ``demo: error: …`` line and exit status 1.  Run it through
``bash examples/demo.sh``, which installs what it needs first.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

try:
    from jack_peer import (
        JackPeer,
        JackPeerError,
        PlayedNote,
        notes_from_messages,
        phrase_messages,
    )
except (ImportError, OSError) as exc:  # JACK-Client not installed, or libjack missing
    sys.exit(f"demo: error: {exc} (bash examples/demo.sh installs what the demo needs)")

from bridge.dummy_jack import DummyJack, DummyJackError
from bridge.dummy_jack import client_env as jack_env
from bridge.midifile import MidiFileError, TimedNote, read_midi, write_midi

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

SERVER = "antiphon-demo"
READY = "antiphon: ready"
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
)


class DemoError(Exception):
    """Ends the demo with one line."""


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


# ---- JACK server ---------------------------------------------------------------------------------


@contextmanager
def jack_server(server: str, log_path: Path) -> Iterator[None]:
    """A dummy JACK server named ``server`` for the duration (reused if already running)."""
    jackd = DummyJack(server, log_path)
    try:
        started = jackd.start(reuse=True)
    except DummyJackError as exc:
        raise DemoError(f"{exc} (bash examples/demo.sh installs what the demo needs)") from None
    if not started:
        say(f"using the running JACK server {server!r}")
        yield
        return
    say(f"started a dummy JACK server {server!r} (48 kHz, 64-frame periods)")
    try:
        yield
    finally:
        jackd.stop()
        say(f"stopped the JACK server {server!r}")


# ---- the bridge ----------------------------------------------------------------------------------


class Bridge:
    """``antiphon bridge`` as a subprocess: stdout drained by a thread, stderr to a log file."""

    def __init__(self, flags: Sequence[str], log_path: Path, server: str) -> None:
        self.log_path = log_path
        command = [sys.executable, "-m", "bridge", *flags]  # = antiphon bridge FLAGS
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                cwd=REPO,
                env=jack_env(server),
            )
        self.ready_line = ""
        self._ready = threading.Event()
        threading.Thread(target=self._drain, name="bridge-stdout", daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(READY) and not self._ready.is_set():
                self.ready_line = line.strip()
                self._ready.set()
        self._ready.set()

    def last_log_line(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def wait_ready(self, timeout: float) -> str:
        if not self._ready.wait(timeout) or not self.ready_line:
            status = self.process.poll()
            raise DemoError(
                f"the bridge did not start (exit {status}): {self.last_log_line()}"
                if status is not None
                else f"the bridge was not ready after {timeout:g} s"
            )
        return self.ready_line

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT and wait; the bridge must exit 0 (killed after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise DemoError(f"the bridge ignored SIGINT for {timeout:g} s") from None
        return self.process.returncode


class AnswerEvents:
    """Listens for the bridge's OSC events (``--osc-out``) on a free UDP port."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.notes = 0

    def _messages(self, timeout: float) -> Iterator[Any]:
        """Every OSC message that arrives within ``timeout`` seconds (bad datagrams skipped)."""
        from pythonosc.osc_packet import OscPacket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            try:
                messages = [m.message for m in OscPacket(data).messages]
            except Exception:
                continue
            yield from messages

    def wait_end(self, timeout: float) -> bool:
        """True once ``/antiphon/answer/end`` arrives; counts ``/antiphon/note`` meanwhile."""
        for msg in self._messages(timeout):
            if msg.address == "/antiphon/note":
                self.notes += 1
            elif msg.address == "/antiphon/answer/end":
                return True
        return False

    def ask_status(self, host: str, port: int, timeout: float = 2.0) -> dict[str, Any]:
        """The bridge's ``/antiphon/status`` reply (key, value, …) as a dict; {} if none came."""
        from pythonosc.osc_message_builder import OscMessageBuilder

        self.sock.sendto(OscMessageBuilder("/antiphon/status").build().dgram, (host, port))
        for msg in self._messages(timeout):
            if msg.address == "/antiphon/status":
                values = list(msg.params)
                return dict(zip(values[::2], values[1::2], strict=False))
        return {}

    def close(self) -> None:
        self.sock.close()


# ---- outputs -------------------------------------------------------------------------------------


def answer_in_beats(notes: Sequence[PlayedNote], start: float, bpm: float) -> list[TimedNote]:
    """Recorded notes (JACK seconds) → beats from the phrase's start."""
    spb = 60.0 / bpm
    return [
        TimedNote(
            max(0.0, (n.onset - start) / spb),
            n.pitch,
            max(n.duration / spb, 1e-3),
            n.velocity,
            n.channel,
        )
        for n in notes
    ]


def write_pianoroll(
    path: Path, call: Sequence[TimedNote], answer: Sequence[TimedNote], title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = {"call": "#3b6fb6", "answer": "#e07b39"}
    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=120)
    for label, notes in (("call", call), ("answer", answer)):
        for n in notes:
            ax.broken_barh(
                [(n.onset, n.duration)],
                (n.pitch - 0.4, 0.8),
                facecolors=colours[label],
                edgecolors="black",
                linewidth=0.3,
                alpha=0.35 + 0.65 * n.velocity / 127,
            )
    if answer:
        ax.axvline(min(n.onset for n in answer), color="grey", linestyle="--", linewidth=0.8)
    pitches = [n.pitch for n in (*call, *answer)]
    ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
    ax.set_xlim(0, max(n.end for n in (*call, *answer)) + 0.5)
    ax.set_xlabel("beats")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title)
    ax.grid(axis="x", color="#dddddd", linewidth=0.5)
    ax.legend(handles=[Patch(color=c, label=k) for k, c in colours.items()], loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def find_soundfont(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit if explicit.is_file() else None
    return next((Path(p) for p in SOUNDFONTS if Path(p).is_file()), None)


def render_wav(midi: Path, wav: Path, soundfont: Path | None) -> str | None:
    """Render with FluidSynth; returns why it was skipped, or None when written."""
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None:
        return "fluidsynth is not installed"
    if soundfont is None:
        return "no General MIDI soundfont found (install fluid-soundfont-gm or pass --soundfont)"
    result = subprocess.run(
        [
            fluidsynth,
            "-ni",
            "-q",
            "-g",
            "0.8",
            "-r",
            "44100",
            "-F",
            str(wav),
            str(soundfont),
            str(midi),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise DemoError(f"fluidsynth failed: {detail[-1] if detail else result.returncode}")
    return None


# ---- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Play an example phrase into a real Antiphon bridge and save its answer."
    )
    parser.add_argument(
        "--phrase",
        type=Path,
        default=HERE / "phrases" / "ode_to_joy.mid",
        help="the call: a phrase (.mid), played at its own tempo (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model file or name (default: the bridge's own, auto: the shipped melody model for "
        "a single-line call, models/default.onnx otherwise)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=7,
        help="random seed, so the demo's answer is reproducible (default 7)",
    )
    parser.add_argument("--length", type=int, default=4, help="answer length (default 4)")
    parser.add_argument(
        "--unit",
        choices=("events", "beats", "bars"),
        default="bars",
        help="what --length counts (default bars)",
    )
    parser.add_argument(
        "--temperature", type=float, default=0.9, help="sampling temperature (default 0.9)"
    )
    parser.add_argument(
        "--soundfont",
        type=Path,
        default=None,
        help="General MIDI .sf2 for the WAV (default: FluidR3_GM if installed)",
    )
    parser.add_argument(
        "--server", default=SERVER, help="name of the dummy JACK server (default %(default)s)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the answer to finish (default 60)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[Path]:
    started = time.monotonic()
    try:
        song = read_midi(args.phrase)
    except MidiFileError as exc:
        raise DemoError(str(exc)) from None
    if not song.notes:
        raise DemoError(f"{args.phrase} has no notes")
    args.out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with ExitStack() as stack:
        stack.enter_context(jack_server(args.server, args.out / "jackd.log"))
        events = AnswerEvents()
        stack.callback(events.close)
        flags = [
            "--backend",
            "jack",
            "--seed",
            str(args.seed),
            "--bpm",
            f"{song.bpm:g}",
            "--length",
            str(args.length),
            "--unit",
            args.unit,
            "--temperature",
            f"{args.temperature:g}",
            "--silence",
            "1",
            "--osc-port",
            "0",
            "--osc-out",
            f"127.0.0.1:{events.port}",
        ]
        if args.model:
            flags += ["--model", str(args.model)]
        bridge = Bridge(flags, args.out / "bridge.log", args.server)
        stack.callback(bridge.stop)  # if anything below fails; stopping twice is harmless
        ready = bridge.wait_ready(60.0)
        say(f"bridge ready ({ready.removeprefix(READY).strip(' —')})")

        try:
            peer = JackPeer("antiphon-demo-peer", server=args.server)
        except JackPeerError as exc:
            raise DemoError(str(exc)) from None
        stack.callback(peer.close)
        try:
            peer.connect_out("Antiphon In")
            peer.connect_in("Antiphon Out")
        except JackPeerError as exc:
            raise DemoError(str(exc)) from None

        messages = phrase_messages([n.as_tuple() for n in song.notes], song.bpm)
        say(
            f"playing {args.phrase.name} ({len(song.notes)} notes, {song.end:g} beats at "
            f'{song.bpm:g} BPM) into "Antiphon In"'
        )
        start, end = peer.play(messages, delay=0.2)
        if not events.wait_end(args.timeout + song.end * 60.0 / song.bpm):
            raise DemoError(
                f"no complete answer within {args.timeout:g} s: {bridge.last_log_line()}"
            )
        time.sleep(0.1)  # the last note-off is already out; let the peer's period pass
        recorded = notes_from_messages(peer.received(since=end))
        if not recorded:
            raise DemoError(
                'the bridge said the answer ended, but no notes arrived on "Antiphon Out"'
            )
        latency_ms = (recorded[0].onset - end) * 1e3
        osc = re.search(r"OSC ([\d.]+):(\d+)", ready)
        reply = events.ask_status(osc[1], int(osc[2])) if osc else {}
        answered_by = str(reply.get("answer_model") or "(unknown: no /antiphon/status reply)")
        say(
            f"answer by the {answered_by} model: {len(recorded)} notes, the first "
            f"{latency_ms:.0f} ms after the phrase's last note-off (the bridge waits for 1 beat "
            f"of silence = {60000 / song.bpm:.0f} ms)"
        )

        status = bridge.stop()
        if status != 0:
            raise DemoError(f"the bridge exited with status {status}: {bridge.last_log_line()}")
        say("bridge stopped (SIGINT, exit 0)")

    call = list(song.notes)
    answer = answer_in_beats(recorded, start, song.bpm)
    midi_path = args.out / "answer.mid"
    write_midi(midi_path, [("call", call), ("answer", answer)], bpm=song.bpm)
    written.append(midi_path)
    png_path = args.out / "pianoroll.png"
    write_pianoroll(
        png_path,
        call,
        answer,
        f"{args.phrase.stem} (call) and Antiphon's answer — model {answered_by}, "
        f"--seed {args.seed}, temperature {args.temperature:g}",
    )
    written.append(png_path)
    wav_path = args.out / "answer.wav"
    skipped = render_wav(midi_path, wav_path, find_soundfont(args.soundfont))
    if skipped is None:
        written.append(wav_path)
    else:
        say(f"no answer.wav: {skipped}")
    for path in written:
        say(f"wrote {path}")
    say(f"done in {time.monotonic() - started:.1f} s")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except DemoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
