"""Backend choice, port lookup, and real virtual/existing ports on the dummy JACK server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import rtmidi

from bridge import ports
from bridge.errors import PortError
from bridge.ports import (
    BACKENDS,
    choose_backend,
    find_port,
    list_ports,
    open_input,
    open_output,
)

LINUX = {"MIDO_BACKEND": ""}


def test_explicit_backend_names() -> None:
    assert choose_backend("jack").name == "jack"
    assert choose_backend(" JACK ").name == "jack"
    assert choose_backend("UNIX_JACK").name == "rtmidi-jack"  # RtMidi's name for its JACK API
    assert choose_backend("rtmidi-jack").native is False and choose_backend("jack").native
    assert choose_backend("alsa").api == rtmidi.API_LINUX_ALSA


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(PortError, match=r"unknown MIDI backend 'pipewire'.*auto, alsa, jack"):
        choose_backend("pipewire")


def test_backend_not_compiled_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtmidi, "get_compiled_api", lambda: [rtmidi.API_UNIX_JACK])
    with pytest.raises(PortError, match="built without coremidi"):
        choose_backend("coremidi")


def test_mido_backend_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"MIDO_BACKEND": "mido.backends.rtmidi/UNIX_JACK"}
    assert choose_backend(environ=env, platform="linux").name == "rtmidi-jack"
    assert choose_backend("alsa", environ=env).name == "alsa"  # --backend wins
    with pytest.raises(PortError, match=r"MIDO_BACKEND='mido.backends.portmidi'"):
        choose_backend(environ={"MIDO_BACKEND": "mido.backends.portmidi"}, platform="linux")
    with pytest.raises(PortError, match="unknown MIDI backend 'NOPE'"):
        choose_backend(environ={"MIDO_BACKEND": "mido.backends.rtmidi/NOPE"}, platform="linux")
    monkeypatch.setattr(ports, "_works", lambda b: b.name == "jack")
    assert (
        choose_backend(environ={"MIDO_BACKEND": "mido.backends.rtmidi"}, platform="linux").name
        == "jack"
    )


def test_platform_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        rtmidi, "get_compiled_api", lambda: [rtmidi.API_MACOSX_CORE, rtmidi.API_WINDOWS_MM]
    )
    assert choose_backend(environ={}, platform="darwin").name == "coremidi"
    assert choose_backend(environ={}, platform="win32").name == "winmm"


@pytest.mark.parametrize(
    ("working", "expected"),
    [({"alsa", "jack"}, "alsa"), ({"jack"}, "jack"), ({"alsa"}, "alsa")],
)
def test_linux_prefers_alsa_then_jack(
    monkeypatch: pytest.MonkeyPatch, working: set[str], expected: str
) -> None:
    monkeypatch.setattr(ports, "_jack_socket_answers", lambda: False)  # no jackd2 server
    monkeypatch.setattr(ports, "_works", lambda b: b.name in working)
    assert choose_backend(environ=LINUX, platform="linux").name == expected


def test_a_running_jack_server_gets_the_native_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_jack_socket_answers", lambda: True)
    monkeypatch.setattr(ports, "_works", lambda b: True)
    assert choose_backend(environ=LINUX, platform="linux").name == "jack"
    monkeypatch.setattr(ports, "_works", lambda b: b.name == "rtmidi-jack")
    monkeypatch.setattr(
        ports,
        "_native_missing",
        lambda: (
            "the native JACK backend needs JACK-Client and libjack (No module named "
            "'jack'); install them"
        ),
    )
    assert choose_backend(environ=LINUX, platform="linux").name == "rtmidi-jack"
    with pytest.raises(PortError, match=r"needs JACK-Client.*; or use --backend rtmidi-jack"):
        choose_backend("jack")


def test_an_unbuilt_c_callback_falls_back_to_rtmidi_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bridge import jack_native_process

    monkeypatch.setattr(ports, "_jack_socket_answers", lambda: True)
    monkeypatch.setattr(jack_native_process, "_lib", None)
    monkeypatch.setattr(jack_native_process, "_load_error", "its C process callback is not built")
    caplog.set_level("WARNING", logger="bridge.ports")
    assert choose_backend(environ=LINUX, platform="linux").name == "rtmidi-jack"
    assert "C process callback is not built: using RtMidi on JACK" in caplog.text
    with pytest.raises(PortError, match=r"unavailable: its C process callback is not built; or"):
        choose_backend("jack")


def test_no_backend_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_works", lambda b: False)
    with pytest.raises(PortError) as err:
        choose_backend(environ=LINUX, platform="linux")
    message = str(err.value)
    assert "no MIDI backend" in message and "jackd -d dummy" in message and "ALSA" in message
    assert "\n" not in message


def _without_alsa(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this machine look like CI's: no ALSA sequencer (/dev/snd/seq), whatever it has."""
    exists = os.path.exists
    monkeypatch.setattr(ports.os.path, "exists", lambda p: p != "/dev/snd/seq" and exists(p))


def test_real_probe_without_any_server_is_quiet(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "antiphon-nobody-runs-this")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    _without_alsa(monkeypatch)
    with pytest.raises(PortError, match="no MIDI backend"):
        choose_backend(environ=LINUX, platform="linux")
    assert capfd.readouterr().err == ""  # libjack's and ALSA's own complaints are silenced


@pytest.mark.parametrize(
    ("wanted", "index"),
    [
        ("loopMIDI Port", 0),  # exact beats prefix
        ("LOOPMIDI PORT 2", 1),  # case-blind
        ("Antiphon In", 2),  # prefix of "Antiphon In:Antiphon In"
        ("Keys 20", 3),  # substring
    ],
)
def test_find_port(wanted: str, index: int) -> None:
    names = ["loopMIDI Port", "loopMIDI Port 2", "Antiphon In:Antiphon In", "Midi Keys 20:0"]
    assert find_port(names, wanted, "input") == index


def test_find_port_errors() -> None:
    names = ["loopMIDI Port 1", "loopMIDI Port 2"]
    with pytest.raises(PortError, match="ambiguous: 'loopMIDI Port 1', 'loopMIDI Port 2'"):
        find_port(names, "loopMIDI", "output")
    with pytest.raises(PortError, match=r"no MIDI output port named 'Synth'.*antiphon ports"):
        find_port(names, "Synth", "output")
    with pytest.raises(PortError, match="visible: none"):
        find_port([], "Synth", "output")


def test_windows_needs_existing_ports() -> None:
    with pytest.raises(PortError, match=r"loopMIDI.*--in NAME --out NAME"):
        open_input(BACKENDS["winmm"])


# ---- on the dummy JACK server ---------------------------------------------------------------


def _lsp(*flags: str) -> str:
    return subprocess.run(
        ["jack_lsp", *flags], capture_output=True, text=True, check=True, timeout=10
    ).stdout


@pytest.fixture
def jack(jack_server: str) -> Iterator[ports.Backend]:
    yield choose_backend("jack")


@pytest.mark.jack
def test_auto_picks_jack_when_only_a_jack_server_runs(
    jack_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_alsa(monkeypatch)
    monkeypatch.delenv("MIDO_BACKEND", raising=False)
    assert choose_backend().name == "jack"


@pytest.mark.jack
def test_virtual_ports_have_distinct_clients_and_go_away(jack: ports.Backend) -> None:
    inp = open_input(jack, name="pt in", client_name="PortsTest")
    out = open_output(jack, name="pt out", client_name="PortsTest")
    try:
        assert (inp.name, out.name, inp.virtual) == ("pt in", "pt out", True)
        names = _lsp().splitlines()
        assert "PortsTest In:pt in" in names and "PortsTest Out:pt out" in names
        visible = list_ports(jack)
        assert "PortsTest Out:pt out" in visible.inputs  # we can read from it (--in)
        assert "PortsTest In:pt in" in visible.outputs  # we can write to it (--out)
    finally:
        inp.close()
        out.close()
        inp.close()  # idempotent
    assert "PortsTest" not in _lsp()


@pytest.mark.jack
def test_existing_ports_are_opened_and_connected(jack: ports.Backend) -> None:
    target = open_input(jack, name="pt target", client_name="PortsTarget")
    try:
        peer = open_output(jack, existing="pt target", client_name="PortsPeer")
        try:
            assert peer.name == "PortsTarget In:pt target" and not peer.virtual
            connections = _lsp("-c")
            assert "PortsTarget In:pt target\n   PortsPeer Out:" in connections
        finally:
            peer.close()
    finally:
        target.close()


@pytest.mark.jack
def test_missing_existing_port_is_a_port_error(jack: ports.Backend) -> None:
    with pytest.raises(PortError, match="no MIDI input port named 'No Such Synth'"):
        open_input(jack, existing="No Such Synth", client_name="PortsMissing")
    assert "PortsMissing" not in _lsp()  # the half-made client was freed


@pytest.mark.jack
def test_unreachable_jack_server_is_one_quiet_line(
    jack: ports.Backend, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "antiphon-nobody-runs-this")
    with pytest.raises(PortError, match="cannot reach the JACK server 'antiphon-nobody-runs-this'"):
        open_output(jack)
    assert capfd.readouterr().err == ""


def test_stale_jack_socket_is_not_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    server = f"antiphon-stale-{os.getpid()}"
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"  # where jackd2 puts it
    path = f"{directory}/jack_{server}_{os.getuid()}_0"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.close()  # the file stays, nobody listens: what a crashed jackd leaves behind
    try:
        monkeypatch.setenv("JACK_DEFAULT_SERVER", server)
        assert ports._jack_socket_answers() is False
    finally:
        os.unlink(path)


@pytest.mark.jack
def test_jack_socket_fast_path_sees_the_running_server(
    jack_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ports._jack_socket_answers() is True
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "antiphon-nobody-runs-this")
    assert ports._jack_socket_answers() is False


@pytest.mark.jack
def test_a_client_named_like_its_server_is_refused(jack_server: str) -> None:
    """A JACK client named like the server replaced the server's socket and, closing, deleted
    it: the server ran on, unreachable, and every later test failed (found in CI with
    ``--client-name antiphon-test``).  The bridge refuses that name with one line."""
    from bridge.supervisor import PortSpec, PortSupervisor

    sup = PortSupervisor(ports.BACKENDS["jack"], PortSpec(client=jack_server))  # one client
    with pytest.raises(PortError, match="server's own name"):
        ports.check_jack_client_name(jack_server)  # RtMidi's clients, "<name> In/Out", too
    with pytest.raises(PortError, match="server's own name"):
        sup.open()
    sup.close()
    assert ports.jack_server_identity(jack_server) is not None  # still reachable
