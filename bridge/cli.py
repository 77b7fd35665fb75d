"""The ``antiphon`` command: ``bridge`` (the realtime partner), ``ports``, ``model-info``, plug-ins.

Plug-in subcommands register themselves with ``register(subparsers)`` (which adds a parser and
``set_defaults(func=run)`` with ``run(args) -> int``): ``bridge.continuation`` (``continue``) is
imported guarded, and every entry point in the ``antiphon.commands`` group (``training`` adds
``train`` and ``evaluate``).  They are only looked up when the command line asks for something
that is not built in, so ``antiphon bridge`` starts without scanning installed packages.

Start-up imports only argparse and :mod:`bridge.config` here; onnxruntime, python-rtmidi and
python-osc load inside the command that needs them.  Errors are one line on stderr and an exit
status — 2 for bad arguments or settings, 1 for models, ports and files — never a traceback
(``--log-level debug`` logs one for unexpected errors).

``antiphon bridge`` runs in the main thread: it opens the ports, starts the engine's threads and
the OSC server, registers the MIDI callback last, prints the ready line and waits for SIGINT or
SIGTERM; then it unregisters the callback, stops the OSC server and the engine (note-offs for
everything sounding), closes the ports and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from bridge.config import CC_SCALES, Settings, parse_cc_binding
from bridge.errors import PROG, AntiphonError, ConfigError, fail
from bridge.settings_spec import ANSWER_SETTINGS, add_setting_flags, settings_from_args

if TYPE_CHECKING:
    from bridge.follow import Follower
    from bridge.model import LstmModel

__all__ = ["BUILTIN_COMMANDS", "build_parser", "main"]

BUILTIN_COMMANDS = ("bridge", "ports", "model-info")
ENTRY_POINT_GROUP = "antiphon.commands"
LOG_LEVELS = ("debug", "info", "warning", "error")

log = logging.getLogger("antiphon")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit 2), not the whole usage."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


# ---- argument types ------------------------------------------------------------------------------


def _int_in(low: int, high: int, what: str, name: str = "") -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``low..high`` (``what`` names it in errors)."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{name}must be {low}..{high}, got {number}")
        return number

    return parse


_queue_size = _int_in(16, 1_000_000, "a whole number")
_port_number = _int_in(0, 65535, "a UDP port number", "UDP port ")


# ---- parsers -------------------------------------------------------------------------------------

PORT_SETTINGS = ("in_channel", "out_channel", "passthrough")
TEMPO_SETTINGS = ("bpm", "beats_per_bar", "start")
WHEN_SETTINGS = ("mode", "silence_beats", "chord_window_ms", "trigger_cc", "trigger_note")
BRIDGE_SETTINGS = (*PORT_SETTINGS, *TEMPO_SETTINGS, *WHEN_SETTINGS, *ANSWER_SETTINGS)
"""The settings ``antiphon bridge`` takes as flags (all but ``cc_bindings``: ``--cc``), by group
in ``--help``; :mod:`bridge.settings_spec` defines each flag."""


def _add_bridge(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bridge",
        help="run the call-and-response partner on virtual MIDI ports (Ctrl-C stops it)",
        description=(
            "Open the MIDI ports, listen for a phrase, answer it with the model in tempo, and "
            "take OSC control messages. Connect your DAW's MIDI out to the input port and the "
            "output port to an instrument track. Ctrl-C (SIGINT) or SIGTERM ends every "
            "sounding note, closes the ports and exits 0. `python -m bridge` is the same."
        ),
    )
    p.set_defaults(func=_run_bridge)

    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        metavar="FILE|NAME|auto",
        help="model file, the name of a model in the model directories, or auto: "
        "per answer, a single-line call gets models/melody.onnx and a chordal one "
        "models/default.onnx (chorales) or models/classical.onnx, whichever finds it "
        "likelier (default: auto)",
    )
    g.add_argument(
        "--model-dir",
        metavar="DIR",
        action="append",
        default=[],
        type=Path,
        help="a directory OSC /antiphon/model may load models from; repeatable "
        "(always searched too: the --model file's directory and the shipped "
        "models/)",
    )

    g = p.add_argument_group("MIDI ports")
    g.add_argument(
        "--backend",
        default=None,
        metavar="NAME",
        help="MIDI system: auto, jack (native JACK: one client, sample-accurate), "
        "rtmidi-jack (RtMidi on JACK), alsa, coremidi or winmm (default: "
        "$MIDO_BACKEND if set, else auto — native JACK when a JACK server "
        "runs, else ALSA on Linux, CoreMIDI on macOS)",
    )
    g.add_argument(
        "--in",
        dest="in_port",
        metavar="NAME",
        help="listen to this existing MIDI port instead of creating a virtual one "
        "(a unique part of its name is enough; see `antiphon ports`; on "
        "Windows use a loopMIDI port)",
    )
    g.add_argument(
        "--out",
        dest="out_port",
        metavar="NAME",
        help="play into this existing MIDI port instead of creating a virtual one",
    )
    g.add_argument(
        "--in-name",
        default="Antiphon In",
        metavar="NAME",
        help="name of the virtual input port (default %(default)r)",
    )
    g.add_argument(
        "--out-name",
        default="Antiphon Out",
        metavar="NAME",
        help="name of the virtual output port (default %(default)r)",
    )
    g.add_argument(
        "--client-name",
        default="Antiphon",
        metavar="NAME",
        help="MIDI client name: the native JACK backend's one client, with both "
        "ports (NAME:Antiphon In); on RtMidi the ports' clients are 'NAME In' "
        "and 'NAME Out' (default %(default)r)",
    )
    add_setting_flags(g, PORT_SETTINGS)
    g.add_argument(
        "--input-queue",
        type=_queue_size,
        default=4096,
        metavar="N",
        help="MIDI messages that may wait for the engine; more are dropped, counted "
        "and logged (default %(default)s)",
    )

    g = p.add_argument_group("tempo and timing")
    add_setting_flags(g, TEMPO_SETTINGS)

    g = p.add_argument_group("when to answer")
    add_setting_flags(g, WHEN_SETTINGS)

    g = p.add_argument_group("the answer")
    add_setting_flags(g, ANSWER_SETTINGS)  # the same flags as `antiphon continue`
    g.add_argument(
        "--cc",
        action="append",
        default=[],
        metavar="SETTING=CC",
        help="let a MIDI CC drive a setting, e.g. --cc temperature=21; repeatable; "
        f"settings: {', '.join(CC_SCALES)} (CC 0..127 spans the setting's range)",
    )

    g = p.add_argument_group("audio in (hum, sing or play the call; needs the audio extra)")
    g.add_argument(
        "--audio-in",
        action="store_true",
        help="also listen on the JACK audio port 'Antiphon Audio In': a monophonic "
        "call (voice, flute, guitar... one note at a time) becomes notes, "
        "answered like a MIDI one",
    )
    g.add_argument(
        "--audio-connect",
        action="append",
        default=[],
        metavar="PORT",
        help="connect this JACK audio output (e.g. system:capture_1) to the audio "
        "input; repeatable",
    )
    g.add_argument(
        "--audio-gate",
        type=float,
        default=None,
        metavar="DB",
        help="level (dB re full scale) below which audio is silence (default -50)",
    )

    g = p.add_argument_group("OSC")
    g.add_argument(
        "--osc-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the OSC control server listens on (default %(default)s; "
        "0.0.0.0 opens it to the network)",
    )
    g.add_argument(
        "--osc-port",
        type=_port_number,
        default=9000,
        metavar="PORT",
        help="UDP port for OSC control (/antiphon/...), 0 = any free port, shown "
        "in the ready line (default %(default)s)",
    )
    g.add_argument("--no-osc", action="store_true", help="do not listen for OSC at all")
    g.add_argument(
        "--osc-out",
        metavar="HOST:PORT",
        help="send the answer as OSC events (/antiphon/note, /antiphon/answer/...) "
        "to HOST:PORT (default: none)",
    )
    _add_log_level(p)


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        help="how much to log on stderr (default %(default)s)",
    )


def _add_ports(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ports",
        help="list the MIDI ports Antiphon can see",
        description="List the MIDI ports on the chosen backend: inputs "
        "for --in, outputs for --out.",
    )
    p.add_argument(
        "--backend",
        default=None,
        metavar="NAME",
        help="auto, jack, rtmidi-jack, alsa, coremidi or winmm (default: as `antiphon bridge`)",
    )
    p.set_defaults(func=_run_ports)


def _add_model_info(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "model-info",
        help="print a model file's metadata",
        description="Validate a model file and print its metadata: "
        "format, token scheme, layers, training provenance.",
    )
    p.add_argument("model", metavar="FILE|NAME", help="a model file, or a name in models/")
    p.add_argument("--json", action="store_true", help="print the raw metadata as JSON")
    p.set_defaults(func=_run_model_info)


def _plugins(wanted: str | None) -> list[tuple[str, Callable[[Any], None] | Exception]]:
    """``register`` functions of the plug-in commands (or the error loading each)."""
    found: list[tuple[str, Callable[[Any], None] | Exception]] = []
    try:
        from bridge import continuation
    except ImportError as err:
        found.append(("continue", err))
    else:
        found.append(("continue", continuation.register))
    if wanted == "continue":
        return found
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append((ep.name, ep.load()))
        except Exception as err:  # a broken or half-installed plug-in must not break the CLI
            found.append((ep.name, err))
    return found


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``antiphon`` parser; plug-ins are loaded unless ``command`` is a built-in one."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Antiphon: a call-and-response jamming partner. Play a phrase into its MIDI input; it "
            "answers on its MIDI output, in tempo, steerable over OSC."
        ),
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_bridge(subparsers)
    _add_ports(subparsers)
    _add_model_info(subparsers)
    if command in BUILTIN_COMMANDS:
        return parser
    unavailable: dict[str, str] = {}
    for name, register in _plugins(command):
        if isinstance(register, Exception):
            unavailable[name] = f"{type(register).__name__}: {register}"
            continue
        try:
            register(subparsers)
        except Exception as err:  # argparse conflict or a bug in the plug-in
            unavailable[name] = f"{type(err).__name__}: {err}"
    parser.set_defaults(unavailable=unavailable)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


# ---- commands ------------------------------------------------------------------------------------


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def _settings(args: argparse.Namespace) -> Settings:
    bindings: dict[str, int] = {}
    for text in args.cc:
        name, cc = parse_cc_binding(text)
        if name in bindings:
            raise ConfigError(f"--cc binds {name} twice ({bindings[name]} and {cc})")
        bindings[name] = cc
    return Settings(**settings_from_args(args, BRIDGE_SETTINGS), cc_bindings=bindings)


def _load_model(value: str | None, extra_dirs: Sequence[Path] = ()) -> tuple[LstmModel, list[Path]]:
    """``--model`` (auto: the shipped default) and the model directories it implies."""
    from bridge.errors import ModelError
    from bridge.model import find_model, load_model, model_dirs

    path = find_model(None if value == "auto" else value, model_dirs(extra_dirs))
    if value in (None, "auto") and not path.is_file():
        raise ModelError(
            f"the shipped model {path} is missing; pass --model FILE (or train one: antiphon train)"
        )
    model = load_model(path)
    return model, model_dirs(extra_dirs, model.path)


def _follower(
    value: str | None, model: LstmModel, dirs: Sequence[Path]
) -> tuple[Follower | None, bool]:
    """The call follower (key, register, model auto) and whether ``--model`` asked for auto.

    Built from the shipped ``default`` (chordal), ``classical`` and ``melody`` models; without a
    ``default`` in the model directories, or with a broken one among them (said in one line), only
    ``model`` answers (key and register still follow the call)."""
    from bridge.errors import ModelError
    from bridge.follow import AUTO, Follower

    auto = value is None or value == AUTO
    try:
        return Follower.from_dirs(dirs), auto
    except ModelError as exc:
        if any((Path(d) / "default.onnx").is_file() for d in dirs):
            log.warning("model auto can only use %s: %s", model.name, exc)
        return Follower(model), auto


class _StopSignals:
    """SIGINT/SIGTERM set an Event instead of raising; a second one exits at once (main thread)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: str | None = None
        self._saved: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            sys.stderr.write("antiphon: second signal, exiting without cleanup\n")
            os._exit(130)
        self.received = signal.Signals(signum).name
        self.event.set()

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may install handlers (main() called from a thread)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def _run_bridge(args: argparse.Namespace) -> int:
    started = time.monotonic()
    settings = _settings(args)
    osc_out = None
    if args.osc_out:
        from bridge.osc import parse_host_port

        osc_out = parse_host_port(args.osc_out)
    _setup_logging(args.log_level)

    with _StopSignals() as stop:
        from bridge.config import SettingsBox
        from bridge.engine import Engine
        from bridge.osc import NullEvents, OscControl, OscEvents
        from bridge.ports import choose_backend
        from bridge.supervisor import PortSpec, PortSupervisor

        model, dirs = _load_model(args.model, args.model_dir)
        follower, auto = _follower(args.model, model, dirs)
        if auto and follower is not None:
            model = follower.chordal
        backend = choose_backend(args.backend)
        if stop.event.is_set():  # interrupted while loading: nothing opened yet
            return 0
        with contextlib.ExitStack() as stack:
            # The supervisor reopens the ports if the JACK server goes away and comes back.
            ports = PortSupervisor(
                backend,
                PortSpec(
                    args.in_name, args.out_name, args.client_name, args.in_port, args.out_port
                ),
            )
            ports.open()
            stack.callback(ports.close)
            events = OscEvents(*osc_out) if osc_out else NullEvents()
            stack.callback(events.close)
            engine = Engine(
                model,
                SettingsBox(settings),
                ports.sink,
                events,
                model_dirs=dirs,
                follower=follower,
                auto=auto,
                heard_until=ports.heard_until,
                input_queue_size=args.input_queue,
                clock=ports.clock,
                output_lookahead_s=ports.lookahead_s,
                output_earliest=ports.earliest_exact,
            )
            engine.add_status(ports.stats)
            audio = None
            if args.audio_in:  # numpy + JACK-Client only; never loaded without --audio-in
                from bridge.audio_live import AudioInput

                audio = AudioInput(
                    engine.input_queue,
                    gate_db=args.audio_gate,
                    connect=args.audio_connect,
                    channel=max(0, (settings.in_channel or 1) - 1),
                    clock=ports.clock,
                )  # stamps on the engine's clock
                engine.add_status(audio.stats)
            # RtMidi on JACK stamps MIDI clock in wall-clock time: a step there may be a stalled
            # server rather than lost ticks (see TempoTracker.gaps_are_losses).
            engine.tempo.gaps_are_losses = not (backend.on_jack and not backend.native)
            engine.start()
            stack.callback(engine.stop)
            osc_text = "OSC off"
            if not args.no_osc:
                osc = OscControl(args.osc_host, args.osc_port, engine)
                osc.start()
                stack.callback(osc.stop)
                host, port = osc.address
                osc_text = f"OSC {host}:{port}"
            ports.start(engine.input_queue, on_lost=engine.ports_lost)  # the callback: last
            stack.callback(ports.stop)
            if audio is not None:
                audio.start()  # its JACK process callback: last too
                stack.callback(audio.stop)

            extra = f", OSC events to {osc_out[0]}:{osc_out[1]}" if osc_out else ""
            shown = model.name
            if auto and follower is not None:
                chords = " or ".join(m.name for m in follower.chordals)
                lines = follower.melody.name if follower.melody is not None else chords
                shown = f"auto ({lines} for lines, {chords} for chords)"
            print(
                f'antiphon: ready — in "{ports.in_name}", out "{ports.out_name}", {osc_text}, '
                f"model {shown}, backend {backend}{extra}",
                flush=True,
            )
            log.info(
                "ready in %.0f ms; model %s (%s); model directories: %s",
                (time.monotonic() - started) * 1e3,
                model.name,
                model.path,
                ", ".join(str(d) for d in dirs),
            )
            while not stop.event.wait(0.25):
                pass
            log.info("%s: stopping", stop.received)
        stats, counts = engine.stats(), ports.counts()
        log.info(
            "stopped: %s answers, MIDI in %s received, %s dropped, %s malformed; MIDI out %s "
            "sent, %s failed; ports lost %d and reopened %d times",
            stats.get("answers"),
            counts["received"],
            counts["dropped"],
            counts["malformed"],
            counts["sent"],
            counts["failed"],
            ports.losses,
            ports.reopens,
        )
    return 0


def _run_ports(args: argparse.Namespace) -> int:
    from bridge.ports import choose_backend, list_ports

    backend = choose_backend(args.backend)
    found = list_ports(backend)
    print(f"backend: {backend}")
    print("inputs (for --in):")
    for name in found.inputs:
        print(f"  {name}")
    if not found.inputs:
        print("  (none)")
    print("outputs (for --out):")
    for name in found.outputs:
        print(f"  {name}")
    if not found.outputs:
        print("  (none)")
    return 0


def _run_model_info(args: argparse.Namespace) -> int:
    import json

    model, _ = _load_model(args.model)
    if args.json:
        print(json.dumps(model.metadata, indent=2, sort_keys=True))
        return 0
    scheme = model.scheme
    rows = [
        ("file", str(model.path)),
        ("name", model.name),
        (
            "format",
            f"{model.metadata.get('antiphon.format')} "
            f"v{model.metadata.get('antiphon.format_version')}",
        ),
        ("layers", " x ".join(str(u) for u in model.layers) + " LSTM units"),
        ("vocabulary", f"{model.vocab_size} tokens"),
        (
            "grid",
            f"{scheme.steps_per_beat} steps per beat, shifts up to {scheme.max_shift}, "
            f"durations up to {scheme.max_duration} steps",
        ),
        ("velocity", f"{scheme.velocity_buckets} buckets"),
        ("chords", f"{len(scheme.chords)} in the vocabulary"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    training = model.training
    if training:
        print("training:")
        for line in json.dumps(training, indent=2, sort_keys=True).splitlines()[1:-1]:
            print(line)
    known = {
        "antiphon.format",
        "antiphon.format_version",
        "antiphon.token_scheme",
        "antiphon.layers",
        "antiphon.training",
    }
    for key in sorted(set(model.metadata) - known):
        print(f"{key}: {model.metadata[key]}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("antiphon")
    except PackageNotFoundError:
        return "unknown (not installed)"


# ---- main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``antiphon ARGV``; returns the exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    parser = build_parser(command)
    unavailable: dict[str, str] = parser.get_default("unavailable") or {}
    if command in unavailable:  # a plug-in that is installed but cannot load
        return fail(f"{command} is not available: {unavailable[command]}", 1)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed as one line
        return int(exit_.code or 0) if isinstance(exit_.code, (int, type(None))) else 2
    if args.version:
        print(f"{PROG} {_version()}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as err:
        return fail(str(err), 2)
    except AntiphonError as err:
        return fail(str(err), 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `antiphon … | head` closed our stdout: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush stays quiet
        return 0
    except Exception as err:  # a bug: still one line, the traceback only when debugging
        logging.getLogger("antiphon").debug("unexpected error", exc_info=True)
        return fail(f"unexpected {type(err).__name__}: {err} (--log-level debug shows where)", 1)
