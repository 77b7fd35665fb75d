"""Fixtures for the bridge's unit tests: a tiny random ONNX model, a fake clock, a recording port.

The model is built with ``onnx.helper`` straight from ``models/FORMAT.md`` (embedding → stacked ONNX
``LSTM`` ops → linear logits), so these tests never need TensorFlow.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import mido
import numpy as np
import pytest
from support.waiting import wait_until

from bridge.tokens import TokenScheme

if TYPE_CHECKING:
    from bridge.model import LstmModel

TINY_SCHEME = TokenScheme(
    steps_per_beat=4,
    max_shift=16,
    max_duration=16,
    velocity_buckets=4,
    chords=((60, 64, 67), (57, 60, 64), (55, 59, 62)),
)


def build_tiny_model(
    path: Path,
    *,
    scheme: TokenScheme = TINY_SCHEME,
    layers: Sequence[int] = (16, 12),
    embedding: int = 8,
    seed: int = 0,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a random model following the ONNX contract; ``metadata`` overrides/extends the keys."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    vocab = scheme.vocab_size

    def init(name: str, array: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.ascontiguousarray(array), name)

    inits = [
        init("embedding", rng.normal(0, 1.0, (vocab, embedding)).astype(np.float32)),
        init("axis0", np.array([0], dtype=np.int64)),
        init("axis1", np.array([1], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding", "tokens"], ["embedded"]),
        helper.make_node("Transpose", ["embedded"], ["x_0"], perm=[1, 0, 2]),
    ]
    inputs = [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "time"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "time", vocab])]
    width = embedding
    for i, units in enumerate(layers):
        inits += [
            init(f"W_{i}", rng.normal(0, 0.6, (1, 4 * units, width)).astype(np.float32)),
            init(f"R_{i}", rng.normal(0, 0.6, (1, 4 * units, units)).astype(np.float32)),
            init(f"B_{i}", rng.normal(0, 0.1, (1, 8 * units)).astype(np.float32)),
        ]
        for k in ("h", "c"):
            inputs.append(
                helper.make_tensor_value_info(f"{k}_{i}", TensorProto.FLOAT, ["batch", units])
            )
            outputs.append(
                helper.make_tensor_value_info(f"{k}_{i}_out", TensorProto.FLOAT, ["batch", units])
            )
            nodes.append(helper.make_node("Unsqueeze", [f"{k}_{i}", "axis0"], [f"{k}_{i}_3d"]))
        nodes += [
            helper.make_node(
                "LSTM",
                [f"x_{i}", f"W_{i}", f"R_{i}", f"B_{i}", "", f"h_{i}_3d", f"c_{i}_3d"],
                [f"y_{i}", f"yh_{i}", f"yc_{i}"],
                hidden_size=units,
            ),
            helper.make_node("Squeeze", [f"y_{i}", "axis1"], [f"x_{i + 1}"]),
            helper.make_node("Squeeze", [f"yh_{i}", "axis0"], [f"h_{i}_out"]),
            helper.make_node("Squeeze", [f"yc_{i}", "axis0"], [f"c_{i}_out"]),
        ]
        width = units
    n = len(layers)
    inits += [
        init("W_out", rng.normal(0, 1.5, (width, vocab)).astype(np.float32)),
        init("b_out", rng.normal(0, 0.5, (vocab,)).astype(np.float32)),
    ]
    nodes += [
        helper.make_node("Transpose", [f"x_{n}"], ["x_bt"], perm=[1, 0, 2]),
        helper.make_node("MatMul", ["x_bt", "W_out"], ["scores"]),
        helper.make_node("Add", ["scores", "b_out"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "antiphon_tiny", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = {
        "antiphon.format": "antiphon-lstm",
        "antiphon.format_version": "1",
        "antiphon.token_scheme": scheme.to_json(),
        "antiphon.layers": json.dumps(list(layers)),
        "antiphon.training": json.dumps({"fixture": "random", "seed": seed}),
    }
    props.update(metadata or {})
    helper.set_model_props(model, {k: v for k, v in props.items() if v is not None})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def model_builder() -> Callable[..., Path]:
    """:func:`build_tiny_model`, for tests that need a variant (other metadata, sizes)."""
    return build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer model (``tiny.onnx``) in its own model directory."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path: Path) -> LstmModel:
    from bridge.model import load_model

    return load_model(tiny_model_path)


class FakeClock:
    """A clock that moves only when a test says so; also the ``wait`` function threads use.

    ``wait(cond, timeout)`` blocks (the caller holds ``cond``) until :meth:`advance` notifies or
    a short real-time guard passes, so threads re-check the fake time without real sleeps.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._t = start
        self._lock = threading.Lock()
        self._conditions: set[threading.Condition] = set()
        self._callbacks: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self._t

    def on_advance(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._t += seconds
            conditions = list(self._conditions)
        for cond in conditions:
            with cond:
                cond.notify_all()
        for callback in self._callbacks:
            callback()
        return self._t

    def set(self, t: float) -> None:
        self.advance(t - self._t)

    def wait(self, cond: threading.Condition, timeout: float | None) -> bool:
        with self._lock:
            self._conditions.add(cond)
        try:
            return cond.wait(0.05)
        finally:
            with self._lock:
                self._conditions.discard(cond)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


class RecordingSink:
    """A fake output port: records ``(time, message)`` for every message sent (thread-safe)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.sent: list[tuple[float, mido.Message]] = []
        self._lock = threading.Lock()

    def send(self, msg: mido.Message) -> None:
        with self._lock:
            self.sent.append((self.clock(), msg))

    def messages(self, *types: str) -> list[mido.Message]:
        with self._lock:
            return [m for _, m in self.sent if not types or m.type in types]

    def timed(self, *types: str) -> list[tuple[float, mido.Message]]:
        with self._lock:
            return [(t, m) for t, m in self.sent if not types or m.type in types]

    def note_ons(self) -> list[mido.Message]:
        return [m for m in self.messages("note_on") if m.velocity > 0]

    def sounding(self) -> set[tuple[int, int]]:
        """(channel, pitch) left on after replaying everything sent."""
        on: set[tuple[int, int]] = set()
        for msg in self.messages():
            if msg.type == "note_on" and msg.velocity > 0:
                on.add((msg.channel, msg.note))
            elif msg.type in ("note_on", "note_off"):
                on.discard((msg.channel, msg.note))
            elif msg.type == "control_change" and msg.control == 123:
                on = {(c, p) for c, p in on if c != msg.channel}
        return on


@pytest.fixture
def sink(fake_clock: FakeClock) -> RecordingSink:
    return RecordingSink(fake_clock)


class RecordingEvents:
    """A fake ``AnswerEvents`` (OSC out) that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self._lock = threading.Lock()

    def _record(self, name: str, *args: object) -> None:
        with self._lock:
            self.calls.append((name, args))

    def note(self, pitch: int, velocity: int, duration_beats: float) -> None:
        self._record("note", pitch, velocity, duration_beats)

    def answer_begin(self, answer_id: int) -> None:
        self._record("answer_begin", answer_id)

    def answer_end(self, answer_id: int) -> None:
        self._record("answer_end", answer_id)

    def answer_plan(self, answer_id: int, notes: Iterable[object]) -> None:
        self._record("answer_plan", answer_id, list(notes))

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.calls]


@pytest.fixture
def events() -> RecordingEvents:
    return RecordingEvents()


@pytest.fixture(scope="session")
def until() -> Callable[..., bool]:
    """:func:`wait_until` (tests import nothing from conftest)."""
    return wait_until
