"""Security: who can reach the bridge, what a network peer can make it load, what is never parsed.

* OSC control binds 127.0.0.1 unless ``--osc-host`` says otherwise — checked on the real
  process's socket in ``/proc`` — and the bridge listens on nothing else (no TCP at all).
* ``/antiphon/model`` takes a plain model name from the configured model directories only:
  paths, ``..``, absolute paths (even to a valid model), URL-ish and look-alike names are refused
  with ``/antiphon/error`` and nothing is loaded (the loader is watched).
* A source scan: ``bridge/`` and ``training/`` never unpickle, ``eval``/``exec``, ``yaml.load``,
  ``np.load(allow_pickle=True)``, Keras ``safe_mode=False`` or ``shell=True`` — models are ONNX
  plus JSON metadata, corpora caches ``.npy``/``.json``.
"""

from __future__ import annotations

import ast
import os
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg

from bridge.config import SettingsBox
from bridge.engine import Engine
from bridge.osc import NullEvents, OscControl

REPO = Path(__file__).resolve().parents[2]

# ---- sockets of the real process -----------------------------------------------------------------


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _sockets(pid: int, table: str) -> list[tuple[str, int, str]]:
    """(local address, port, state hex) of the process's sockets in /proc/PID/net/TABLE."""
    inodes = _socket_inodes(pid)
    found: list[tuple[str, int, str]] = []
    path = Path(f"/proc/{pid}/net/{table}")
    if not path.exists():
        return found
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] not in inodes:
            continue
        address, port = fields[1].split(":")
        if len(address) == 8:
            host = socket.inet_ntoa(struct.pack("<I", int(address, 16)))
        else:
            host = socket.inet_ntop(
                socket.AF_INET6,
                b"".join(struct.pack("<I", int(address[i : i + 8], 16)) for i in range(0, 32, 8)),
            )
        found.append((host, int(port, 16), fields[3]))
    return found


@pytest.mark.jack
@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), "127.0.0.1"),
        (("--osc-host", "0.0.0.0"), "0.0.0.0"),
    ],
)
def test_osc_binds_loopback_unless_asked(
    flags: tuple[str, ...],
    expected: str,
    bridge_process: Callable[..., Any],
    tiny_model_path: Path,
    jack_server: str,
) -> None:
    bridge = bridge_process(
        "--model", str(tiny_model_path), "--client-name", "AntiphonSec", "--osc-port", "0", *flags
    )
    try:
        pid = bridge.process.pid
        udp = _sockets(pid, "udp") + _sockets(pid, "udp6")
        listening_tcp = [
            s for s in _sockets(pid, "tcp") + _sockets(pid, "tcp6") if s[2] == "0A"
        ]  # TCP_LISTEN
        assert [(host, port) for host, port, _ in udp] == [(expected, bridge.osc_port)], udp
        assert listening_tcp == []
        assert f"OSC {expected}:{bridge.osc_port}" in bridge.ready_line
    finally:
        assert bridge.stop() == 0
    print(f"\nOSC socket: {expected}:{bridge.osc_port}; no other listening socket")


# ---- /antiphon/model refuses paths ---------------------------------------------------------------

REFUSED = [
    "../x",
    "../tiny",
    "/etc/passwd",
    "a/b",
    "..",
    ".",
    "",
    " ",
    "~",
    "~/tiny",
    "tiny/",
    "tiny/../tiny",
    "./tiny",
    "..\\tiny",
    "C:\\models\\tiny",
    "file:///etc/passwd",
    "%2e%2e%2ftiny",
    "tiny\u2215x",
    "tiny\n",
    "-tiny",
    "x" * 200,
    "tiny.onnx/.",
    "/dev/zero",
    "/proc/self/environ",
]


@pytest.fixture
def control(
    tiny_model: Any,
    tiny_model_path: Path,
    tmp_path: Path,
    model_builder: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[OscControl, list[str], Path]]:
    """OscControl on a real engine whose model directory is tiny's; every load is recorded."""
    outside = model_builder(tmp_path / "elsewhere" / "valid.onnx", seed=3)
    loaded: list[str] = []
    import bridge.engine as engine_module

    real = engine_module.load_model

    def spy(path: Any) -> Any:
        loaded.append(str(path))
        return real(path)

    monkeypatch.setattr(engine_module, "load_model", spy)

    class Sink:
        def send(self, msg: Any) -> None:
            pass

    engine = Engine(
        tiny_model, SettingsBox(), Sink(), NullEvents(), model_dirs=[tiny_model_path.parent]
    )
    engine.start()
    server = OscControl("127.0.0.1", 0, engine, poll_interval=0.05)
    server.start()
    yield server, loaded, outside
    server.stop()
    engine.stop()


def _ask(port: int, address: str, *args: Any) -> tuple[str, list[Any]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5.0)
        sock.sendto(build_msg(address, list(args)).dgram, ("127.0.0.1", port))
        msg = OscMessage(sock.recv(65536))
        return msg.address, list(msg.params)


def test_model_swap_refuses_every_path_and_loads_nothing(
    control: tuple[OscControl, list[str], Path],
) -> None:
    server, loaded, outside = control
    port = server.address[1]
    for name in [
        *REFUSED,
        str(outside),
        str(outside.with_suffix("")),
        os.path.relpath(outside, Path.cwd()),
    ]:
        address, args = _ask(port, "/antiphon/model", name)
        assert address == "/antiphon/error", (name, args)
        assert args[0] == "/antiphon/model" and args[1], (name, args)
    assert loaded == [], f"the loader was called for {loaded}"
    status = dict(zip(*[iter(_ask(port, "/antiphon/status")[1])] * 2, strict=True))
    assert status["model"] == "tiny"
    # The same through the controller itself (CC bindings and other callers use it too).
    assert _ask(port, "/antiphon/model", "tiny") == ("/antiphon/model", ["tiny"])
    assert len(loaded) == 1 and Path(loaded[0]).name == "tiny.onnx"
    assert Path(loaded[0]).parent != outside.parent
    print(f"\n/antiphon/model: {len(REFUSED) + 3} path-like names refused, nothing loaded")


def test_resolve_model_refuses_the_same_names_directly(tiny_model_path: Path) -> None:
    """Also for callers other than OSC, and a NUL byte (OSC strings cannot carry one)."""
    from bridge.errors import ModelError
    from bridge.model import resolve_model

    for name in [*REFUSED, "tiny\x00", "tiny\x00/../../etc/passwd"]:
        with pytest.raises(ModelError):
            resolve_model(name, [tiny_model_path.parent])
    assert resolve_model("tiny", [tiny_model_path.parent]) == tiny_model_path


# ---- nothing unpickles or evaluates --------------------------------------------------------------


def _python_files() -> list[Path]:
    files = [p for d in ("bridge", "training") for p in (REPO / d).rglob("*.py")]
    assert len(files) > 10, files
    return sorted(files)


def _call_name(node: ast.Call) -> str:
    func = node.func
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


UNSAFE_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "joblib",
    "jsonpickle",
}


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in UNSAFE_MODULES:
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            last = name.rsplit(".", 1)[-1]
            if name in ("eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"):
                found.append(f"{where}: {name}()")
            if name.startswith("yaml.") and last in (
                "load",
                "load_all",
                "unsafe_load",
                "full_load",
                "unsafe_load_all",
            ):
                found.append(f"{where}: {name}()")
            if last == "load" and name.split(".")[0] in ("np", "numpy"):
                allow = _keyword(node, "allow_pickle")
                if not (isinstance(allow, ast.Constant) and allow.value is False):
                    found.append(f"{where}: {name}() without allow_pickle=False")
            if last in ("load_model", "load") and "keras" in name:
                safe = _keyword(node, "safe_mode")
                if safe is not None and not (isinstance(safe, ast.Constant) and safe.value):
                    found.append(f"{where}: {name}(safe_mode=...)")
            if last in ("load", "loads") and name.split(".")[0] in ("torch", "pd", "pandas"):
                found.append(f"{where}: {name}()")
            shell = _keyword(node, "shell")
            if shell is not None and not (isinstance(shell, ast.Constant) and not shell.value):
                found.append(f"{where}: {name}(shell=...)")
            if name in ("os.system", "os.popen"):
                found.append(f"{where}: {name}()")
    return found


def test_nothing_unpickles_or_evaluates_untrusted_data() -> None:
    files = _python_files()
    problems = [p for path in files for p in _problems(path)]
    assert problems == []
    print(f"\nsource scan: {len(files)} files in bridge/ and training/, no unsafe loader")


def test_the_scan_catches_what_it_looks_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bridge" / "bad.py"
    bad.parent.mkdir()
    bad.write_text(
        "import pickle\nimport numpy as np\nimport yaml\nimport subprocess\n"
        "eval('1')\nexec('x = 1')\nnp.load('a.npy', allow_pickle=True)\nnp.load('b.npy')\n"
        "yaml.load(open('c'))\nsubprocess.run('ls', shell=True)\n"
        "keras.models.load_model('m.keras', safe_mode=False)\n"
        "np.load('ok.npy', allow_pickle=False)\nsubprocess.run(['ls'], shell=False)\n"
    )
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    found = _problems(bad)
    assert len(found) == 8, found
