"""OSC control and events over real UDP sockets on 127.0.0.1, with a fake controller.

python-osc's client sends; its replies arrive on the same client socket (the bridge answers the
sender).  A message without a reply is followed by ``/antiphon/status``: the server handles
datagrams in order on one thread, so the status reply proves the earlier message was handled.
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_server import BlockingOSCUDPServer
from support.osc import OscClient

from bridge.config import Settings, SettingsBox
from bridge.errors import ConfigError, ModelError, PortError
from bridge.osc import NullEvents, OscControl, OscEvents, parse_host_port


class FakeController:
    """Records what OSC asked for; settings live in a real SettingsBox."""

    def __init__(self) -> None:
        self.box = SettingsBox()
        self.model = "tiny"
        self.calls: list[str] = []
        self.fail_next: Exception | None = None

    def update_settings(self, **changes: Any) -> Settings:
        self.calls.append("update")
        return self.box.update(**changes)

    def trigger(self) -> None:
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        self.calls.append("trigger")

    def stop_answer(self) -> None:
        self.calls.append("stop")

    def panic(self) -> None:
        self.calls.append("panic")

    def swap_model(self, name: str) -> str:
        if name not in ("tiny", "other"):
            raise ModelError(f"no model named {name!r} in the model directories")
        self.model = name
        return name

    def status(self) -> dict[str, object]:
        return {"model": self.model, **self.box.get().to_dict()}


@pytest.fixture
def controller() -> FakeController:
    return FakeController()


@pytest.fixture
def server(controller: FakeController) -> Iterator[OscControl]:
    control = OscControl("127.0.0.1", 0, controller, poll_interval=0.02)
    control.start()
    yield control
    control.stop()


@pytest.fixture
def peer(server: OscControl) -> Iterator[OscClient]:
    with OscClient(server.address[1]) as client:
        yield client


def test_binds_loopback_and_reports_the_chosen_port(server: OscControl) -> None:
    host, port = server.address
    assert host == "127.0.0.1" and port > 0


@pytest.mark.parametrize(
    ("address", "args", "field", "value"),
    [
        ("/antiphon/temperature", [0.5], "temperature", 0.5),
        ("/antiphon/temperature", [2], "temperature", 2.0),
        ("/antiphon/top_k", [12], "top_k", 12),
        ("/antiphon/top_k", [12.0], "top_k", 12),
        ("/antiphon/top_p", [0.5], "top_p", 0.5),
        ("/antiphon/tempo", [96.5], "bpm", 96.5),
        ("/antiphon/silence", [2], "silence_beats", 2.0),
        ("/antiphon/start", ["bar"], "start", "bar"),
        ("/antiphon/mode", ["trigger"], "mode", "trigger"),
        ("/antiphon/channel", [10], "out_channel", 10),
        ("/antiphon/in_channel", [3], "in_channel", 3),
        ("/antiphon/in_channel", [0], "in_channel", "none"),
        ("/antiphon/seed", [42], "seed", 42),
        ("/antiphon/seed", [-1], "seed", "none"),
        ("/antiphon/passthrough", [1], "passthrough", 1),
        ("/antiphon/passthrough", [True], "passthrough", 1),
        ("/antiphon/length", [16.0], "length", 16),
    ],
)
def test_valid_settings_are_applied(
    peer: OscClient, address: str, args: list[Any], field: str, value: Any
) -> None:
    peer.send(address, *args)
    status = peer.status()
    assert status[field] == pytest.approx(value) if isinstance(value, float) else value


def test_length_with_a_unit(peer: OscClient, controller: FakeController) -> None:
    peer.send("/antiphon/length", 4, "bars")
    peer.status()
    assert (controller.box.get().length, controller.box.get().length_unit) == (4, "bars")


@pytest.mark.parametrize(
    ("address", "args", "needle"),
    [
        ("/antiphon/temperature", ["hot"], "expects a number, got str 'hot'"),
        ("/antiphon/temperature", [math.nan], "finite"),
        ("/antiphon/temperature", [math.inf], "finite"),
        ("/antiphon/temperature", [-math.inf], "finite"),
        ("/antiphon/temperature", [21.0], "temperature must be 0.05..5, got 21.0"),
        ("/antiphon/temperature", [], "expects 1 argument, got 0"),
        ("/antiphon/temperature", [0.5, 0.7], "expects 1 argument, got 2"),
        ("/antiphon/temperature", [True], "expects a number"),
        ("/antiphon/temperature", [b"\x00\x01"], "blob"),
        ("/antiphon/length", [16.5], "whole number"),
        ("/antiphon/length", [0], "length must be 1..512, got 0"),
        ("/antiphon/length", [8, "notes"], "length_unit"),
        ("/antiphon/length", [8, "bars", 1], "expects 1..2 arguments, got 3"),
        ("/antiphon/tempo", [500], "bpm must be 20..300"),
        ("/antiphon/mode", [1], "expects a string"),
        ("/antiphon/mode", ["jam"], "mode must be one of"),
        ("/antiphon/channel", [17], "out_channel must be 1..16, got 17"),
        ("/antiphon/top_p", [0.0], "top_p must be 0.05..1"),
        ("/antiphon/passthrough", [2], "passthrough"),
        ("/antiphon/trigger", ["now"], "expects a number"),
        ("/antiphon/trigger", [1, 2], "expects 0..1 arguments, got 2"),
        ("/antiphon/status", [1], "expects 0 arguments, got 1"),
        ("/antiphon/model", ["../../etc/passwd"], "no model named"),
        ("/antiphon/model", [3], "expects a string"),
        ("/antiphon/volume", [3], "unknown address"),
        ("/somewhere/else", [], "unknown address"),
    ],
)
def test_bad_messages_get_an_error_reply_and_change_nothing(
    peer: OscClient,
    server: OscControl,
    controller: FakeController,
    address: str,
    args: list[Any],
    needle: str,
) -> None:
    before = controller.box.get()
    reply_address, reply = peer.ask(address, *args)
    assert reply_address == "/antiphon/error"
    assert reply[0] == address
    assert needle in reply[1]
    assert controller.box.get() is before and controller.model == "tiny"
    assert server.errors == 1
    assert peer.status()["osc_errors"] == 1


def test_status_replies_every_setting(peer: OscClient, controller: FakeController) -> None:
    controller.box.update(cc_bindings={"temperature": 21}, seed=7)
    status = peer.status()
    assert set(Settings().to_dict()) <= set(status)
    assert status["model"] == "tiny"
    assert status["seed"] == 7
    assert status["in_channel"] == "none"
    assert status["passthrough"] == 0
    assert status["cc_bindings"] == "temperature=21"
    assert status["temperature"] == pytest.approx(1.0)


def test_actions_and_button_release(peer: OscClient, controller: FakeController) -> None:
    peer.send("/antiphon/trigger")
    peer.send("/antiphon/trigger", 1.0)
    peer.send("/antiphon/trigger", 0.0)  # a button's release: ignored
    peer.send("/antiphon/stop")
    peer.send("/antiphon/panic", 1)
    peer.status()
    assert controller.calls == ["trigger", "trigger", "stop", "panic"]


def test_model_swap_replies_the_name_and_failure_keeps_the_old(
    peer: OscClient, controller: FakeController
) -> None:
    assert peer.ask("/antiphon/model", "other") == ("/antiphon/model", ["other"])
    address, args = peer.ask("/antiphon/model", "missing")
    assert address == "/antiphon/error" and "missing" in args[1]
    assert controller.model == "other"


def test_a_failing_controller_is_answered_not_fatal(
    peer: OscClient, controller: FakeController, server: OscControl
) -> None:
    controller.fail_next = RuntimeError("boom")
    address, args = peer.ask("/antiphon/trigger")
    assert address == "/antiphon/error" and args == ["/antiphon/trigger", "internal error: boom"]
    peer.send("/antiphon/trigger")
    peer.status()
    assert controller.calls[-1] == "trigger"


@pytest.mark.parametrize(
    "junk",
    [
        b"hello",
        b"\x00\x00\x00\x00",
        b"/antiphon/temperature\x00\x00\x00,s\x00\x00ab",  # an unterminated string
        b"#bundle\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x40xx",
    ],
)
def test_non_osc_datagrams_are_counted_and_answered(
    peer: OscClient, server: OscControl, junk: bytes
) -> None:
    peer.send_raw(junk)
    address, args = peer.receive()
    assert address == "/antiphon/error" and args[0] == "?"
    assert server.malformed == 1
    assert peer.status()["model"] == "tiny"  # still serving


def test_bundles_are_handled_message_by_message(
    peer: OscClient, controller: FakeController
) -> None:
    bundle = OscBundleBuilder(IMMEDIATELY)
    bundle.add_content(build_msg("/antiphon/temperature", [0.25]))
    bundle.add_content(build_msg("/antiphon/length", [5]))
    peer.send_raw(bundle.build().dgram)
    peer.status()
    assert (controller.box.get().temperature, controller.box.get().length) == (0.25, 5)


def test_many_bad_messages_never_stop_the_server(peer: OscClient, server: OscControl) -> None:
    for i in range(200):
        peer.send("/antiphon/temperature", float("nan") if i % 2 else "x")
    for _ in range(200):
        assert peer.receive()[0] == "/antiphon/error"
    assert peer.status()["osc_errors"] == 200


def test_stop_joins_the_thread_and_frees_the_port(controller: FakeController) -> None:
    control = OscControl("127.0.0.1", 0, controller, poll_interval=0.02)
    port = control.address[1]
    control.start()
    control.stop()
    assert not any(t.name == "antiphon-osc" and t.is_alive() for t in threading.enumerate())
    again = OscControl("127.0.0.1", port, controller)  # the port is free again
    again.stop()


def test_a_taken_port_is_a_port_error(server: OscControl, controller: FakeController) -> None:
    with pytest.raises(PortError, match="--osc-port"):
        OscControl("127.0.0.1", server.address[1], controller)


# ---- events out ---------------------------------------------------------------------------


class Listener:
    """A python-osc server collecting what OscEvents sends."""

    def __init__(self) -> None:
        self.got: list[tuple[str, list[Any]]] = []
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: self.got.append((address, [*args])))
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.server.timeout = 5.0
        self.port = self.server.server_address[1]

    def take(self, n: int) -> list[tuple[str, list[Any]]]:
        while len(self.got) < n:
            before = len(self.got)
            self.server.handle_request()
            assert len(self.got) > before, "timed out waiting for OSC events"
        return self.got


def test_events_reach_the_target() -> None:
    listener = Listener()
    events = OscEvents("127.0.0.1", listener.port)
    try:
        events.answer_plan(3, [(0.0, 60, 90, 0.5), (0.5, 64, 80, 1.0)])
        events.answer_begin(3)
        events.note(60, 90, 0.5)
        events.answer_end(3)
        got = listener.take(4)
    finally:
        events.close()
        listener.server.server_close()
    assert got[0] == ("/antiphon/answer/plan", [3, 0.0, 60, 90, 0.5, 0.5, 64, 80, 1.0])
    assert got[1:] == [
        ("/antiphon/answer/begin", [3]),
        ("/antiphon/note", [60, 90, 0.5]),
        ("/antiphon/answer/end", [3]),
    ]
    assert events.stats() == {"sent": 4, "failed": 0}


def test_plan_accepts_note_objects() -> None:
    class Planned:
        def __init__(self) -> None:
            self.onset_beats, self.pitch, self.velocity, self.duration_beats = 1.5, 62, 70, 0.25

    listener = Listener()
    events = OscEvents("127.0.0.1", listener.port)
    events.answer_plan(1, [Planned()])
    events.answer_plan(2, [object()])  # cannot be encoded: counted, not raised
    assert listener.take(1)[0] == ("/antiphon/answer/plan", [1, 1.5, 62, 70, 0.25])
    assert events.failed == 1
    events.close()
    listener.server.server_close()


def test_events_never_raise_when_nobody_listens_or_after_close() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    events = OscEvents("127.0.0.1", port)
    for _ in range(5):
        events.note(60, 100, 1.0)
    events.close()
    events.note(60, 100, 1.0)
    events.answer_begin(1)
    assert events.failed >= 2
    NullEvents().note(60, 100, 1.0)


def test_unresolvable_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot resolve"):
        OscEvents("no-such-host.invalid", 9001)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9001", ("127.0.0.1", 9001)),
        ("localhost:9001", ("localhost", 9001)),
        (":9001", ("127.0.0.1", 9001)),
        ("9001", ("127.0.0.1", 9001)),
        ("[::1]:9001", ("::1", 9001)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["host:", "host:abc", "host:0", "host:70000", "::1:9001", ""])
def test_parse_host_port_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_host_port(text)
