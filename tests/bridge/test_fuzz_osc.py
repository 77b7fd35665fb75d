"""OSC fuzzing over a real UDP socket against the real engine.

Datagrams are built by hand (not by python-osc, which refuses to encode most of the nonsense):
every OSC type tag including doubles, 64-bit ints, blobs, arrays, nil/true/false, NaN, ±inf and
huge values; right and wrong arity on every ``/antiphon/`` address; random addresses; bundles
(nested, empty, future time tags); truncated packets and raw garbage.  After each datagram a
barrier message proves the server handled it, and:

* every reply is a well-formed OSC message; every ``/antiphon/error`` names the address (or ``?``
  for a datagram that is not OSC) and a reason, and the server counted it;
* the server thread lives, answers ``/antiphon/status``, and the settings it reports still build a
  valid :class:`~bridge.config.Settings` — NaN, inf or out-of-range never gets in;
* nothing but a plain model name in the model directories is ever loaded.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.osc import OscClient

from bridge.config import Settings, SettingsBox
from bridge.engine import Engine
from bridge.osc import ERROR_ADDRESS, NullEvents, OscControl

ADDRESSES = [
    "length",
    "temperature",
    "top_k",
    "top_p",
    "tempo",
    "silence",
    "start",
    "mode",
    "channel",
    "in_channel",
    "seed",
    "passthrough",
    "trigger",
    "stop",
    "panic",
    "model",
    "status",
]
BARRIER = "/antiphon/__barrier__"

# ---- a hand-made OSC encoder ---------------------------------------------------------------------


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (4 - len(data) % 4)


def _osc_string(text: str | bytes) -> bytes:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return _pad(raw)


def _blob(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data + b"\0" * (-len(data) % 4)


Arg = tuple[str, bytes]  # (type tags, encoded payload)

floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
doubles = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e308, -1e308, 5e-324, -0.0, 16.0, 0.5, 120.0, 2.0**63]
)
scalar_args: st.SearchStrategy[Arg] = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(lambda v: ("i", struct.pack(">i", v))),
    st.sampled_from([0, 1, 2, 4, 16, 64, 100, 120, 127, 512, 513, -1]).map(
        lambda v: ("i", struct.pack(">i", v))
    ),
    floats32.map(lambda v: ("f", struct.pack(">f", v))),
    doubles.map(lambda v: ("d", struct.pack(">d", v))),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: ("h", struct.pack(">q", v))),
    st.text(max_size=40).map(lambda s: ("s", _osc_string(s))),
    st.sampled_from(
        [
            "call",
            "trigger",
            "listen",
            "now",
            "beat",
            "bar",
            "auto",
            "events",
            "beats",
            "bars",
            "tiny",
            "../tiny",
            "/etc/passwd",
            "a/b",
            "",
            "x" * 300,
        ]
    ).map(lambda s: ("s", _osc_string(s))),
    st.binary(max_size=64).map(lambda b: ("b", _blob(b))),
    st.sampled_from([("T", b""), ("F", b""), ("N", b""), ("I", b"")]),
    st.integers(0, 2**32 - 1).map(lambda v: ("c", struct.pack(">I", v))),
    st.binary(min_size=4, max_size=4).map(lambda b: ("m", b)),
    st.binary(min_size=4, max_size=4).map(lambda b: ("r", b)),
    st.binary(min_size=8, max_size=8).map(lambda b: ("t", b)),
)
args_strategy = st.lists(
    scalar_args
    | st.lists(scalar_args, max_size=3).map(
        lambda items: ("[" + "".join(t for t, _ in items) + "]", b"".join(p for _, p in items))
    ),
    max_size=4,
)
addresses = st.one_of(
    st.sampled_from(ADDRESSES).map(lambda a: f"/antiphon/{a}"),
    st.sampled_from(ADDRESSES).map(lambda a: f"/antiphon/{a}"),
    st.sampled_from(
        [
            "/antiphon",
            "/antiphon/",
            "/antiphon/*",
            "/antiphon/length/x",
            "/",
            "/ANTIPHON/length",
            "/antiphon/status/",
            "//antiphon/mode",
        ]
    ),
    st.text(max_size=30).map(lambda s: "/" + s),
)


def message(address: str, args: list[Arg]) -> bytes:
    tags = "," + "".join(t for t, _ in args)
    return _osc_string(address) + _osc_string(tags) + b"".join(p for _, p in args)


def bundle(elements: list[bytes], timetag: bytes = b"\0\0\0\0\0\0\0\1") -> bytes:
    return (
        _osc_string("#bundle") + timetag + b"".join(struct.pack(">i", len(e)) + e for e in elements)
    )


messages = st.builds(message, addresses, args_strategy)
timetags = st.sampled_from(
    [
        b"\0\0\0\0\0\0\0\1",
        b"\xff\xff\xff\xff\0\0\0\0",
        b"\0" * 8,
        struct.pack(">Q", int((time.time() + 2208988800 + 3600) * 2**32)),
    ]
)
bundles = st.builds(bundle, st.lists(messages, max_size=4), timetags)
nested = st.builds(
    lambda inner, outer, tag: bundle([inner, *outer], tag),
    bundles,
    st.lists(messages, max_size=2),
    timetags,
)
truncated = st.builds(
    lambda data, cut: data[: max(0, len(data) - cut)], messages | bundles, st.integers(1, 12)
)
garbage = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda tail: b"#bundle\0" + tail, st.binary(max_size=40)),
    st.builds(lambda tail: b"/antiphon/length\0\0\0\0" + tail, st.binary(max_size=20)),
    st.builds(
        lambda n: bundle([b"\0" * 4], b"\0" * 8)[:-4] + struct.pack(">i", n),
        st.integers(-(2**31), 2**31 - 1),
    ),  # a bundle element of absurd size
)
datagrams = st.one_of(messages, messages, messages, bundles, nested, truncated, garbage)


# ---- the server under test -----------------------------------------------------------------------


class Rig:
    """OscControl + a real Engine (real clock, a recording sink) + its settings + one OSC client."""

    def __init__(self, engine: Engine, server: OscControl, box: SettingsBox) -> None:
        self.engine, self.server, self.box = engine, server, box
        self.client = OscClient(server.address)
        self.error_replies = 0
        self.sent = 0

    def exchange(self, data: bytes) -> list[tuple[str, list[Any]]]:
        """Send ``data`` and then the barrier; the replies that came before the barrier's."""
        self.client.send_raw(data)
        self.client.send_raw(message(BARRIER, []))
        self.sent += 1
        replies: list[tuple[str, list[Any]]] = []
        while True:
            try:
                address, params = self.client.receive(5.0)  # every reply parses
            except AssertionError:
                raise AssertionError(f"no reply to the barrier after {data!r}") from None
            if address == ERROR_ADDRESS:
                self.error_replies += 1
                assert len(params) == 2 and all(isinstance(p, str) for p in params), params
                if params[0] == BARRIER:
                    assert params[1] == "unknown address"
                    return replies
                assert params[1], "an error without a reason"
            replies.append((address, params))

    def status(self) -> dict[str, Any]:
        replies = self.exchange(message("/antiphon/status", []))
        assert replies and replies[-1][0] == "/antiphon/status", replies
        params = replies[-1][1]
        return dict(zip(params[::2], params[1::2], strict=True))

    def close(self) -> None:
        self.client.close()


START = Settings(length=4, seed=1)
"""The settings every example starts from, so that a failing example replays (and shrinks) alone."""


class CountingSink:
    def __init__(self) -> None:
        self.sent = 0

    def send(self, msg: Any) -> None:
        self.sent += 1


@pytest.fixture(scope="module")
def rig(tiny_model: Any, tiny_model_path: Path) -> Iterator[Rig]:
    box = SettingsBox(START)
    engine = Engine(
        tiny_model,
        box,
        CountingSink(),
        NullEvents(),
        model_dirs=[tiny_model_path.parent],
    )
    loads: list[str] = []
    original = engine.swap_model

    def swap(name: str) -> str:
        loads.append(name)
        return original(name)

    engine.swap_model = swap  # type: ignore[method-assign]
    engine.start()
    server = OscControl("127.0.0.1", 0, engine, poll_interval=0.05)
    server.start()
    rig = Rig(engine, server, box)
    rig.loads = loads  # type: ignore[attr-defined]
    yield rig
    rig.close()
    server.stop()
    engine.stop()
    counted = server.stats()
    print(
        f"\nOSC fuzz: {rig.sent} datagrams sent, {rig.error_replies} /antiphon/error replies "
        f"(the barriers included), server counted {counted}"
    )


def _settings_still_valid(status: dict[str, Any]) -> Settings:
    """Rebuild Settings from the status reply: raises if any value is out of range."""

    def none(value: Any) -> Any:
        return None if value == "none" else value

    bindings = {}
    if status["cc_bindings"] != "none":
        for pair in str(status["cc_bindings"]).split(","):
            name, _, cc = pair.partition("=")
            bindings[name] = int(cc)
    rebuilt = Settings(
        length=status["length"],
        length_unit=status["length_unit"],
        temperature=status["temperature"],
        top_k=status["top_k"],
        top_p=status["top_p"],
        bpm=status["bpm"],
        mode=status["mode"],
        in_channel=none(status["in_channel"]),
        out_channel=status["out_channel"],
        silence_beats=status["silence_beats"],
        start=status["start"],
        beats_per_bar=status["beats_per_bar"],
        seed=none(status["seed"]),
        passthrough=bool(status["passthrough"]),
        chord_window_ms=status["chord_window_ms"],
        trigger_cc=none(status["trigger_cc"]),
        trigger_note=none(status["trigger_note"]),
        cc_bindings=bindings,
    )
    for name in ("temperature", "top_p", "bpm", "silence_beats", "chord_window_ms"):
        assert math.isfinite(getattr(rebuilt, name)), name
    return rebuilt


@settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(datagrams, min_size=1, max_size=12))
def test_any_datagram_is_answered_or_dropped_and_never_breaks_the_settings(
    rig: Rig,
    batch: list[bytes],
) -> None:
    start = {field.name: getattr(START, field.name) for field in dataclasses.fields(START)}
    rig.box.update(**start)
    before = rig.server.stats()
    errors_before = rig.error_replies
    for data in batch:
        rig.exchange(data)
    after = rig.server.stats()
    # every error reply was counted by the server (and nothing else was)
    assert after["errors"] - before["errors"] == rig.error_replies - errors_before
    # every datagram was seen: at least one message handled or one datagram counted malformed
    handled = (after["received"] - before["received"]) + (after["malformed"] - before["malformed"])
    assert handled >= 2 * len(batch) - sum(1 for d in batch if d.startswith(b"#bundle"))
    assert rig.server.worker.alive
    current = rig.engine.status()
    _settings_still_valid(rig.status())
    assert current["model"] == "tiny"
    assert all(name in ("tiny", "tiny.onnx") or "/" not in name for name in rig.loads)  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e308, -1e308, 2.0**70])
@pytest.mark.parametrize(
    "address", ["temperature", "top_p", "tempo", "silence", "length", "top_k", "channel", "seed"]
)
def test_non_finite_and_huge_numbers_are_refused(rig: Rig, address: str, value: float) -> None:
    before = rig.status()
    replies = rig.exchange(message(f"/antiphon/{address}", [("d", struct.pack(">d", value))]))
    after = rig.status()
    if address == "seed" and math.isfinite(value) and value.is_integer():
        return  # any whole number is a seed
    assert replies and replies[0][0] == ERROR_ADDRESS, (address, value, replies)
    assert {k: v for k, v in after.items() if k in Settings.__dataclass_fields__} == {
        k: v for k, v in before.items() if k in Settings.__dataclass_fields__
    }


def test_a_burst_of_garbage_is_counted_and_the_server_keeps_answering(rig: Rig) -> None:
    before = rig.server.stats()
    burst = [b"\xff" * n for n in range(1, 60)] + [b"#bundle\0" + b"\x00" * n for n in range(20)]
    for data in burst:  # small enough for the socket's receive buffer: none lost by the kernel
        rig.client.send_raw(data)
    status = rig.status()  # handled in order: every garbage datagram came before it
    after = rig.server.stats()
    assert after["malformed"] - before["malformed"] == len(burst)
    assert status["osc_errors"] >= len(burst)
