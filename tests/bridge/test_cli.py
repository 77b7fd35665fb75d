"""The ``antiphon`` command line: help, errors as one line, model-info, plug-ins, lazy imports.

Error cases run the real command in a subprocess, so "no traceback" is checked on what a user
sees.  The bridge itself (ports, signals) is exercised in ``test_jack_integration.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge import cli
from bridge.errors import ModelError

Antiphon = Callable[..., subprocess.CompletedProcess[str]]

BRIDGE_FLAGS = [
    "--model",
    "--model-dir",
    "--backend",
    "--in",
    "--out",
    "--in-name",
    "--out-name",
    "--client-name",
    "--in-channel",
    "--out-channel",
    "--passthrough",
    "--bpm",
    "--beats-per-bar",
    "--start",
    "--mode",
    "--silence",
    "--chord-window",
    "--trigger-cc",
    "--trigger-note",
    "--length",
    "--unit",
    "--temperature",
    "--top-k",
    "--top-p",
    "--seed",
    "--cc",
    "--key",
    "--key-lock",
    "--osc-host",
    "--osc-port",
    "--no-osc",
    "--osc-out",
    "--log-level",
]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_bridge_help_documents_every_flag(antiphon: Antiphon) -> None:
    result = antiphon("bridge", "--help")
    assert result.returncode == 0
    for flag in BRIDGE_FLAGS:
        assert flag in result.stdout, flag
    assert "Antiphon In" in result.stdout and "9000" in result.stdout
    for shipped in ("models/default.onnx", "models/classical.onnx", "models/melody.onnx"):
        assert shipped in " ".join(result.stdout.split()), shipped


def test_python_m_bridge_is_antiphon_bridge() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: antiphon bridge")


def test_top_level_help_lists_the_commands(antiphon: Antiphon) -> None:
    result = antiphon("--help")
    assert result.returncode == 0
    for command in ("bridge", "ports", "model-info", "continue"):
        assert command in result.stdout
    assert antiphon().returncode == 2  # no command: help, non-zero


def test_missing_model_is_one_line_and_exit_1(antiphon: Antiphon, tmp_path: Path) -> None:
    result = antiphon("bridge", "--model", str(tmp_path / "nope.onnx"), "--no-osc")
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith("antiphon: error:") and "nope.onnx" in line and "not found" in line


def test_corrupt_model_is_one_line_and_exit_1(antiphon: Antiphon, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not really a model" * 10)
    result = antiphon("model-info", str(bad))
    assert result.returncode == 1
    assert "bad.onnx" in one_error_line(result)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--temperature", "21"], "temperature must be 0.05..5, got 21.0"),
        (["--temperature", "nan"], "temperature must be a finite number"),
        (["--top-p", "inf"], "top_p"),
        (["--length", "0"], "length must be 1..512, got 0"),
        (["--length", "many"], "invalid int value: 'many'"),
        (["--bpm", "1000"], "bpm must be 20..300"),
        (["--out-channel", "17"], "out_channel must be 1..16, got 17"),
        (["--in-channel", "x"], "expected 1..16 or 'all'"),
        (["--cc", "volume=7"], "volume"),
        (["--cc", "temperature=21", "--cc", "top_p=21"], "CC 21 is bound to both"),
        (["--cc", "temperature=64"], "sustain"),
        (["--trigger-cc", "200"], "trigger_cc must be 0..127"),
        (["--osc-out", "localhost"], "HOST:PORT"),
        (["--osc-port", "70000"], "UDP port must be 0..65535"),
        (["--mode", "jam"], "invalid choice: 'jam'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], flags: list[str], needle: str
) -> None:
    status = cli.main(["bridge", *flags])  # in-process: parse and validate only
    captured = capsys.readouterr()
    assert status == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("antiphon") and needle in lines[0]


def test_a_bad_argument_in_a_real_process_has_no_traceback(antiphon: Antiphon) -> None:
    result = antiphon("bridge", "--temperature", "nan")
    assert result.returncode == 2
    assert "finite" in one_error_line(result)


def test_unknown_backend_is_one_line_and_exit_1(antiphon: Antiphon, tiny_model_path: Path) -> None:
    result = antiphon("ports", "--backend", "pipewire")
    assert result.returncode == 1 and "unknown MIDI backend" in one_error_line(result)
    result = antiphon("bridge", "--model", str(tiny_model_path), "--backend", "pipewire")
    assert result.returncode == 1 and "unknown MIDI backend" in one_error_line(result)


def test_no_reachable_backend_is_one_line_and_exit_1(
    antiphon: Antiphon, tiny_model_path: Path
) -> None:
    env = {
        "JACK_DEFAULT_SERVER": "antiphon-nobody-runs-this",
        "JACK_NO_START_SERVER": "1",
        "MIDO_BACKEND": "",
    }
    result = antiphon("bridge", "--model", str(tiny_model_path), env=env)
    assert result.returncode == 1
    line = one_error_line(result)  # libjack's own complaints do not leak through
    assert "no MIDI backend" in line or "cannot reach the JACK server" in line
    result = antiphon("bridge", "--model", str(tiny_model_path), "--backend", "jack", env=env)
    assert result.returncode == 1
    assert "cannot reach the JACK server 'antiphon-nobody-runs-this'" in one_error_line(result)


def test_model_info_prints_the_metadata(antiphon: Antiphon, tiny_model_path: Path) -> None:
    result = antiphon("model-info", str(tiny_model_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "antiphon-lstm v1" in out and "16 x 12 LSTM units" in out
    assert "tokens" in out and '"fixture": "random"' in out
    raw = json.loads(antiphon("model-info", "--json", str(tiny_model_path)).stdout)
    assert raw["antiphon.format"] == "antiphon-lstm"
    assert json.loads(raw["antiphon.layers"]) == [16, 12]


def test_version(antiphon: Antiphon) -> None:
    result = antiphon("--version")
    assert result.returncode == 0 and result.stdout.startswith("antiphon ")


def test_starting_the_bridge_imports_nothing_heavy_and_scans_no_plugins() -> None:
    code = (
        "import sys\n"
        "from bridge.cli import build_parser\n"
        "build_parser('bridge').parse_args(['bridge'])\n"
        "heavy = ['onnxruntime', 'rtmidi', 'pythonosc', 'tensorflow', 'music21',\n"
        "         'bridge.continuation', 'training', 'importlib.metadata']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_plugins_register_and_a_broken_one_does_not_break_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[argparse.Namespace] = []

    def register(subparsers: Any) -> None:
        p = subparsers.add_parser("hello", help="a test plug-in")
        p.add_argument("--name", default="world")

        def run(args: argparse.Namespace) -> int:
            ran.append(args)
            return 0

        p.set_defaults(func=run)

    def clashing(subparsers: Any) -> None:
        subparsers.add_parser("hello")  # argparse refuses a duplicate

    monkeypatch.setattr(
        cli,
        "_plugins",
        lambda wanted: [
            ("hello", register),
            ("broken", ImportError("no module named 'tensorflow'")),
            ("clash", clashing),
        ],
    )
    assert cli.main(["hello", "--name", "you"]) == 0
    assert ran[0].name == "you"
    assert cli.main(["broken"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "antiphon: error: broken is not available: ImportError: no module named 'tensorflow'"
    )
    assert cli.main(["--help"]) == 0
    assert "hello" in capsys.readouterr().out


def test_a_plugin_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def register(subparsers: Any) -> None:
        def run(args: argparse.Namespace) -> int:
            raise RuntimeError("kaput")

        subparsers.add_parser("crash").set_defaults(func=run)

    monkeypatch.setattr(cli, "_plugins", lambda wanted: [("crash", register)])
    assert cli.main(["crash"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected RuntimeError: kaput" in err
    assert "Traceback" not in err


def test_settings_from_flags() -> None:
    args = cli.build_parser("bridge").parse_args(
        [
            "bridge",
            "--length",
            "4",
            "--unit",
            "bars",
            "--temperature",
            "0.7",
            "--top-k",
            "20",
            "--in-channel",
            "all",
            "--out-channel",
            "3",
            "--trigger-cc",
            "off",
            "--trigger-note",
            "36",
            "--cc",
            "temperature=21",
            "--cc",
            "top-p=22",
            "--passthrough",
            "--silence",
            "2",
            "--chord-window",
            "40",
            "--seed",
            "9",
            "--mode",
            "trigger",
            "--start",
            "bar",
        ]
    )
    s = cli._settings(args)
    assert (s.length, s.length_unit, s.temperature, s.top_k) == (4, "bars", 0.7, 20)
    assert (s.in_channel, s.out_channel, s.trigger_cc, s.trigger_note) == (None, 3, None, 36)
    assert dict(s.cc_bindings) == {"temperature": 21, "top_p": 22}
    assert (s.passthrough, s.silence_beats, s.chord_window_ms) == (True, 2.0, 40.0)
    assert (s.seed, s.mode, s.start) == (9, "trigger", "bar")


def test_model_may_be_a_name_in_a_model_dir(tiny_model_path: Path) -> None:
    dirs = [tiny_model_path.parent]
    model, searched = cli._load_model(tiny_model_path.stem, dirs)  # bridge.model.find_model
    assert model.path == tiny_model_path and searched[0] == tiny_model_path.parent
    assert cli._load_model(str(tiny_model_path))[0].path == tiny_model_path
    with pytest.raises(ModelError, match="'absent' not found"):
        cli._load_model("absent", dirs)


def test_a_missing_shipped_model_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import bridge.model

    monkeypatch.setattr(bridge.model, "default_model_path", lambda: tmp_path / "default.onnx")
    assert cli.main(["bridge", "--no-osc"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "shipped model" in err and "--model FILE" in err


def test_output_cut_short_by_a_pipe_is_not_an_error(tiny_model_path: Path) -> None:
    """`antiphon model-info FILE | head`: a reader that went away ends the command quietly."""
    command = (
        f"{sys.executable} -c 'import sys; from bridge.cli import main; "
        f"sys.exit(main(sys.argv[1:]))' model-info {tiny_model_path}"
    )
    # The reader closes its end at once, so every write meets a broken pipe.
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{command} | exec 0<&-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "rror" not in result.stderr


def test_bridge_and_continue_share_the_answer_flags() -> None:
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]

    def flags(command: str) -> dict[str, tuple[object, ...]]:
        return {
            a.option_strings[0]: (a.help, a.default, a.type, a.metavar, a.choices)
            for a in commands.choices[command]._actions
            if a.option_strings
        }

    bridge, cont = flags("bridge"), flags("continue")
    shared = [
        "--length",
        "--unit",
        "--temperature",
        "--top-k",
        "--top-p",
        "--key",
        "--key-lock",
        "--seed",
    ]
    assert {flag: bridge[flag] for flag in shared} == {flag: cont[flag] for flag in shared}
