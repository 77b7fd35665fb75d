"""MIDI backends and ports: which system MIDI API to use, and opening Antiphon's two ports.

Backend choice (:func:`choose_backend`), first match wins:

1. ``--backend NAME`` (``jack``, ``rtmidi-jack``, ``alsa``, ``coremidi``, ``winmm``; ``auto``
   means "not given");
2. mido's ``MIDO_BACKEND`` environment variable, e.g. ``mido.backends.rtmidi/UNIX_JACK`` (RtMidi
   on JACK: ``rtmidi-jack``);
3. automatic: CoreMIDI on macOS, Windows MM on Windows; on Linux the native JACK backend when a
   jackd2 server answers (``JACK_DEFAULT_SERVER`` names it), else ALSA when its sequencer works,
   else JACK when any JACK server is reachable (jackd1, PipeWire's JACK under ``pw-jack``).

``jack`` is the native JACK backend (:mod:`bridge.jack_native`, JACK-Client: one client with
both ports, sample-accurate); ``rtmidi-jack`` is python-rtmidi on JACK, as before it.

Ports are python-rtmidi objects (mido only encodes and decodes the messages).  By default the
bridge creates virtual ports "Antiphon In" / "Antiphon Out" that a DAW connects to; ``--in`` /
``--out`` open existing ports instead (on Windows, which has no virtual ports, two loopMIDI
ports).  Every RtMidi port is its own client on ALSA and JACK; each gets a distinct client name
("<client> In" / "<client> Out") so JACK does not rename them.

Everything that fails raises :class:`PortError` with one line saying why and what to do.  The C
libraries underneath (ALSA, libjack) print their own diagnostics to file descriptor 2 while a port
is probed or opened; those are silenced for that moment, so the user sees only that one line.
Called from the main thread at start-up only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import rtmidi

from bridge.errors import PortError

__all__ = [
    "BACKENDS",
    "BACKEND_NAMES",
    "Backend",
    "OpenedPort",
    "PortList",
    "check_jack_client_name",
    "choose_backend",
    "find_port",
    "input_hears_itself",
    "jack_server_identity",
    "list_ports",
    "open_input",
    "open_output",
]

log = logging.getLogger(__name__)

DEFAULT_IN = "Antiphon In"
DEFAULT_OUT = "Antiphon Out"
DEFAULT_CLIENT = "Antiphon"
INPUT_QUEUE_LIMIT = 8192
"""Messages RtMidi's own input queue holds (drained by :mod:`bridge.midi_poll` on JACK)."""


@dataclass(frozen=True)
class Backend:
    """One system MIDI API as python-rtmidi knows it."""

    name: str  # "jack" | "rtmidi-jack" | "alsa" | "coremidi" | "winmm"
    api: int  # rtmidi.API_* constant
    mido_name: str  # mido's spelling, for MIDO_BACKEND
    virtual_ports: bool  # can this API create virtual ports?
    native: bool = False  # bridge.jack_native (JACK-Client) instead of python-rtmidi

    def __str__(self) -> str:
        return self.name

    @property
    def on_jack(self) -> bool:
        """Does it run on a JACK server (native or RtMidi)?"""
        return self.api == rtmidi.API_UNIX_JACK


BACKENDS: Mapping[str, Backend] = {
    "alsa": Backend("alsa", rtmidi.API_LINUX_ALSA, "LINUX_ALSA", True),
    "jack": Backend("jack", rtmidi.API_UNIX_JACK, "UNIX_JACK", True, native=True),
    "rtmidi-jack": Backend("rtmidi-jack", rtmidi.API_UNIX_JACK, "UNIX_JACK", True),
    "coremidi": Backend("coremidi", rtmidi.API_MACOSX_CORE, "MACOSX_CORE", True),
    "winmm": Backend("winmm", rtmidi.API_WINDOWS_MM, "WINDOWS_MM", False),
}
"""Every backend Antiphon knows, by ``--backend`` name (compiled into python-rtmidi or not)."""
_BY_MIDO_NAME = {b.mido_name.lower(): b for b in BACKENDS.values() if not b.native}
BACKEND_NAMES = ("auto", *BACKENDS)
"""The values ``--backend`` accepts."""

_NO_BACKEND = (
    "no MIDI backend: start JACK (e.g. `jackd -d dummy &`, and set JACK_DEFAULT_SERVER if it "
    "has a name) or enable ALSA's sequencer (`sudo modprobe snd-seq`), then try again"
)


def _lookup(name: str, source: str) -> Backend:
    key = name.strip().lower()
    backend = BACKENDS.get(key) or _BY_MIDO_NAME.get(key)
    if backend is None:
        raise PortError(
            f"unknown MIDI backend {name!r} from {source}; choose one of {', '.join(BACKEND_NAMES)}"
        )
    if backend.native:
        problem = _native_missing()
        if problem:
            raise PortError(f"{problem}; or use --backend rtmidi-jack")
        return backend
    if backend.api not in rtmidi.get_compiled_api():
        raise PortError(
            f"this python-rtmidi was built without {backend.name} support ({source}); "
            f"install one that has it or choose another --backend"
        )
    return backend


def _native_missing() -> str:
    """Why the native JACK backend cannot load, in one clause ("" when it can)."""
    try:
        import jack  # noqa: F401  (JACK-Client loads libjack when imported)
    except (ImportError, OSError) as err:
        return (
            f"the native JACK backend needs JACK-Client and libjack "
            f"({str(err) or type(err).__name__}); install them"
        )
    from bridge.jack_native_process import load_error

    problem = load_error()
    return f"the native JACK backend is unavailable: {problem}" if problem else ""


def _from_mido_env(value: str) -> Backend | None:
    module, _, api = value.partition("/")
    if module.strip() != "mido.backends.rtmidi":
        raise PortError(
            f"MIDO_BACKEND={value!r} is not python-rtmidi; Antiphon needs it "
            "(unset MIDO_BACKEND or use e.g. mido.backends.rtmidi/UNIX_JACK)"
        )
    return _lookup(api, f"MIDO_BACKEND={value}") if api.strip() else None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment (C libraries' diagnostics)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreter): nothing to silence
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_jack_client_name(client_name: str, server: str | None = None) -> None:
    """PortError if a JACK client would be named like its server (``$JACK_DEFAULT_SERVER``).

    jackd2 names each client's socket like the server's (``jack_<name>_<uid>_0``): such a client
    replaces the server's socket and deletes it when it closes, so the server runs on but no
    new client can reach it (found with ``--client-name antiphon-test`` on that server).
    """
    server = server or os.environ.get("JACK_DEFAULT_SERVER") or "default"
    if client_name == server:
        raise PortError(
            f"the JACK client name {client_name!r} is the JACK server's own name: it would cut "
            "the server off from every other client; choose another --client-name"
        )


def jack_server_identity(server: str | None = None) -> tuple[int, int] | None:
    """Which jackd2 server answers on ``server``'s socket (``$JACK_DEFAULT_SERVER``), or None.

    The identity is the socket file's inode and change time: a restarted server makes a new
    socket, so a quick restart between two polls is still noticed.  Connecting costs about a
    millisecond and the server logs nothing for it.
    """
    if not hasattr(socket, "AF_UNIX") or not hasattr(os, "getuid"):
        return None
    name = server or os.environ.get("JACK_DEFAULT_SERVER") or "default"
    for directory in ("/dev/shm", "/tmp"):
        path = os.path.join(directory, f"jack_{name}_{os.getuid()}_0")
        try:
            info = os.stat(path)
        except OSError:
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            try:
                probe.connect(path)
            except OSError:  # the socket file of a server that is gone
                continue
        return info.st_ino, info.st_ctime_ns
    return None


def _jack_socket_answers() -> bool:
    """Fast path: does jackd2's server socket for ``$JACK_DEFAULT_SERVER`` accept a connection?
    (well under a millisecond; a probe client costs tens of milliseconds)."""
    return jack_server_identity() is not None


def _works(backend: Backend) -> bool:
    """Can an RtMidi client be created on ``backend`` right now (server/sequencer reachable)?"""
    if backend.api not in rtmidi.get_compiled_api():
        return False
    if backend.name == "alsa" and not os.path.exists("/dev/snd/seq"):
        return False
    if backend.native and _native_missing():
        return False
    if backend.on_jack and _jack_socket_answers():
        return True
    with _quiet_stderr():
        try:
            probe = rtmidi.MidiOut(rtapi=backend.api, name="antiphon-probe")
        except rtmidi.RtMidiError:
            return False
        probe.delete()
    return True


def choose_backend(
    requested: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
) -> Backend:
    """The backend to use: ``requested`` (``--backend``), else MIDO_BACKEND, else automatic.

    PortError with what to do when nothing works.  ``environ``/``platform`` default to the
    process's own (tests pass others).
    """
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if requested and requested.strip().lower() != "auto":
        return _lookup(requested, "--backend")
    mido_backend = env.get("MIDO_BACKEND", "").strip()
    if mido_backend:
        chosen = _from_mido_env(mido_backend)
        if chosen is not None:
            return chosen
    if plat == "darwin":
        return _lookup("coremidi", "macOS")
    if plat.startswith("win"):
        return _lookup("winmm", "Windows")
    if _jack_socket_answers():  # a JACK server runs: its own API
        if _works(BACKENDS["jack"]):
            return BACKENDS["jack"]
        problem = _native_missing()
        if problem:
            log.warning("%s: using RtMidi on JACK (--backend rtmidi-jack)", problem)
    for name in ("alsa", "jack", "rtmidi-jack"):
        if _works(BACKENDS[name]):
            return BACKENDS[name]
    raise PortError(_NO_BACKEND)


@dataclass(frozen=True)
class PortList:
    """Ports on a backend: ``inputs`` can be read (``--in``), ``outputs`` written (``--out``)."""

    backend: Backend
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _client(kind: Literal["in", "out"], backend: Backend, client_name: str) -> rtmidi.MidiIn:
    if backend.on_jack:
        check_jack_client_name(client_name)
    try:
        with _quiet_stderr():
            if kind == "in":
                return rtmidi.MidiIn(
                    rtapi=backend.api, name=client_name, queue_size_limit=INPUT_QUEUE_LIMIT
                )
            return rtmidi.MidiOut(rtapi=backend.api, name=client_name)
    except rtmidi.RtMidiError as err:
        raise PortError(_unreachable(backend, err)) from None


def _unreachable(backend: Backend, err: Exception) -> str:
    if backend.on_jack:
        server = os.environ.get("JACK_DEFAULT_SERVER", "default")
        return (
            f"cannot reach the JACK server {server!r} ({err}); start it "
            f"(`jackd -n {server} -d dummy &`) or choose another --backend"
        )
    if backend.name == "alsa":
        return (
            f"ALSA's MIDI sequencer is not available ({err}); `sudo modprobe snd-seq`, "
            "or start JACK and use --backend jack"
        )
    return f"the {backend.name} MIDI backend failed ({err}); choose another --backend"


def list_ports(backend: Backend) -> PortList:
    """Names of the ports other programs offer on ``backend``. PortError if it is unreachable."""
    lists = []
    for kind in ("in", "out"):
        rt = _client(kind, backend, f"{DEFAULT_CLIENT} list")
        try:
            lists.append(tuple(rt.get_ports()))
        finally:
            rt.delete()
    return PortList(backend, lists[0], lists[1])


def find_port(names: tuple[str, ...] | list[str], wanted: str, kind: str) -> int:
    """Index of the port ``wanted`` among ``names``: exact, then case-blind, then prefix, then part.

    ALSA appends client:port numbers ("loopMIDI Port 20:0"), so a unique prefix or substring is
    enough.  PortError if nothing or more than one port matches at the first level that matches.
    """
    folded = wanted.casefold()
    tests = (
        lambda n: n == wanted,
        lambda n: n.casefold() == folded,
        lambda n: n.casefold().startswith(folded),
        lambda n: folded in n.casefold(),
    )
    for test in tests:
        hits = [i for i, n in enumerate(names) if test(n)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            options = ", ".join(repr(names[i]) for i in hits)
            raise PortError(f"MIDI {kind} port {wanted!r} is ambiguous: {options}; be more exact")
    visible = ", ".join(repr(n) for n in names) or "none"
    raise PortError(
        f"no MIDI {kind} port named {wanted!r} (visible: {visible}); see `antiphon ports`"
    )


@dataclass
class OpenedPort:
    """An open RtMidi port and the name users see for it. ``close()`` is idempotent."""

    rt: rtmidi.MidiIn | rtmidi.MidiOut
    name: str
    virtual: bool
    backend: Backend
    rt_port_name: str
    """The name of the port RtMidi made on its own client (JACK: ``<client> In:<this>``)."""

    def close(self) -> None:
        """Close the port and free the RtMidi client (main thread, after its users stopped)."""
        if self.rt.is_deleted:
            return
        with contextlib.suppress(rtmidi.RtMidiError):
            self.rt.close_port()
        self.rt.delete()


def _open(
    kind: Literal["in", "out"],
    backend: Backend,
    name: str,
    client_name: str,
    existing: str | None,
) -> OpenedPort:
    if existing is None and not backend.virtual_ports:
        raise PortError(
            f"{backend.name} cannot create virtual MIDI ports: create two loopMIDI ports "
            f"(e.g. '{DEFAULT_IN}' and '{DEFAULT_OUT}') and pass --in NAME --out NAME"
        )
    if existing is None and not name.strip():
        raise PortError(f"the virtual MIDI {kind}put port needs a name")
    suffix = "In" if kind == "in" else "Out"
    rt = _client(kind, backend, f"{client_name} {suffix}")
    try:
        with _quiet_stderr():
            if existing is None:
                rt.open_virtual_port(name)
                shown = name
            else:
                names = rt.get_ports()
                index = find_port(names, existing, f"{kind}put")
                rt.open_port(index, name)
                shown = names[index]
    except PortError:
        rt.delete()
        raise
    except rtmidi.RtMidiError as err:
        rt.delete()
        target = f"virtual port {name!r}" if existing is None else f"port {existing!r}"
        raise PortError(
            f"cannot open MIDI {kind}put {target} on {backend.name} ({err}); "
            "check the name or choose another --backend"
        ) from None
    return OpenedPort(rt, shown, existing is None, backend, name)


def open_input(
    backend: Backend,
    *,
    name: str = DEFAULT_IN,
    client_name: str = DEFAULT_CLIENT,
    existing: str | None = None,
) -> OpenedPort:
    """Open the MIDI input: a virtual port ``name``, or the existing source port ``existing``.

    System-exclusive and active-sensing messages are filtered by RtMidi; MIDI clock is kept (it
    drives the tempo).  No callback is set here: :class:`bridge.midi_in.MidiInput` registers it.
    """
    port = _open("in", backend, name, client_name, existing)
    _filter_input(port)
    return port


def _filter_input(port: OpenedPort, *, sysex: bool = True) -> None:
    port.rt.ignore_types(sysex=sysex, timing=False, active_sense=True)


SELF_TEST_SYSEX = (0xF0, 0x7D, 0x41, 0x6E, 0x74, 0x69, 0xF7)
"""What the input self-test sends itself: a System Exclusive message with the non-commercial
manufacturer ID 0x7D ("Anti"), which no instrument acts on and the engine never sees."""


def input_hears_itself(
    port: OpenedPort,
    client_name: str = DEFAULT_CLIENT,
    *,
    timeout_s: float = 1.0,
    poll_s: float = 0.002,
) -> bool:
    """Is the JACK input ``port`` being scheduled?  A loopback self-test (main or watcher thread,
    before the input is drained by anybody else).

    A short-lived RtMidi output client connects to ``port`` and sends :data:`SELF_TEST_SYSEX`;
    True as soon as the input queue holds it, False after ``timeout_s``.  An input client that
    jackd never runs ("client = … was not finished, state = Triggered" in jackd's log) hears
    nothing.  Other messages that arrive meanwhile (an ``--in`` source already playing) are
    dropped: the bridge is not listening yet.  PortError if the probe cannot connect.
    """
    target = f"{client_name} In:{port.rt_port_name}"
    probe = _client("out", port.backend, f"{client_name} self-test")
    _filter_input(port, sysex=False)
    try:
        with _quiet_stderr():
            names = probe.get_ports()
            if target not in names:
                raise PortError(
                    f"the input self-test cannot find the port {target!r} "
                    f"(visible: {', '.join(map(repr, names)) or 'none'})"
                )
            probe.open_port(names.index(target), "probe")
        while port.rt.get_message() is not None:  # anything queued before the probe
            pass
        probe.send_message(SELF_TEST_SYSEX)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            while (event := port.rt.get_message()) is not None:
                if tuple(event[0]) == SELF_TEST_SYSEX:
                    return True
            time.sleep(poll_s)
        return False
    except rtmidi.RtMidiError as err:
        raise PortError(f"the MIDI input self-test failed ({err})") from None
    finally:
        with contextlib.suppress(rtmidi.RtMidiError):
            probe.close_port()
        probe.delete()
        _filter_input(port)


def open_output(
    backend: Backend,
    *,
    name: str = DEFAULT_OUT,
    client_name: str = DEFAULT_CLIENT,
    existing: str | None = None,
) -> OpenedPort:
    """Open the MIDI output: a virtual port ``name``, or the existing destination ``existing``."""
    return _open("out", backend, name, client_name, existing)
