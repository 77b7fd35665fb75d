"""bridge.dummy_jack, the one helper that starts a dummy jackd: its refusals, its reuse of a
running server, the shell entry point, and stopping a server by pid."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge import dummy_jack
from bridge.dummy_jack import DummyJack, DummyJackError, jack_env, stop_pid


def test_the_command_line_holds_every_option() -> None:
    server = DummyJack("antiphon-x", period=128, rate=44100, sync=True)
    assert server.command == [
        "jackd",
        "-S",
        "-n",
        "antiphon-x",
        "-d",
        "dummy",
        "-r",
        "44100",
        "-p",
        "128",
    ]
    assert "-S" not in DummyJack("antiphon-x").command
    assert (
        jack_env("antiphon-x")
        == server.env
        == {
            "JACK_DEFAULT_SERVER": "antiphon-x",
            "JACK_NO_START_SERVER": "1",
            "JACK_NO_AUDIO_RESERVATION": "1",
        }
    )


def test_a_missing_tool_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(
        dummy_jack.shutil, "which", lambda tool: None if tool == "jack_wait" else f"/usr/bin/{tool}"
    )
    with pytest.raises(DummyJackError, match=r"jack_wait not installed.*jackd2"):
        DummyJack("antiphon-x", tmp_path / "log").start()


def test_killing_a_server_that_is_not_running_is_an_error() -> None:
    with pytest.raises(DummyJackError, match="not running"):
        DummyJack("antiphon-x").kill()
    DummyJack("antiphon-x").stop()  # nothing started: nothing to stop, no error


@pytest.mark.jack
def test_a_running_server_is_refused_or_reused(jack_server: str, tmp_path: Path) -> None:
    other = DummyJack(jack_server, tmp_path / "log")
    with pytest.raises(DummyJackError, match="already runs"):
        other.start()
    assert other.start(reuse=True) is False and other.process is None
    other.stop()  # not ours: left running
    assert dummy_jack.running(jack_server)
    assert dummy_jack.main(["start", jack_server, "--reuse", "--log", str(tmp_path / "l")]) == 0


def test_stop_pid_ends_a_process_that_is_not_our_child() -> None:
    # A child here, but stop_pid only uses the pid, as `.ci/run` does with the server it started.
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.1)
        assert stop_pid(process.pid) is True
        assert process.wait(timeout=10) != 0
        assert stop_pid(process.pid) is False  # gone (reaped): nothing to stop
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_stop_pid_escalates_to_sigkill() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        assert stop_pid(process.pid, timeout=0.2) is True
        assert process.wait(timeout=10) == -9
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
