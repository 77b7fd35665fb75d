"""Trained Keras weights → one self-describing ONNX file (see ``models/FORMAT.md``).

The training model is stateless over windows; the exported *step* model is the same layers
rewired with explicit state: ``tokens`` (+ ``h_i``/``c_i``) in, ``logits`` (+ ``h_i_out``/
``c_i_out``) out, so the bridge primes on a seed once and then pays one step per token.  Keras 3's
``model.export(format="onnx")`` (tf2onnx underneath) writes the graph; the ``onnx`` package then
renames inputs/outputs to the contract names, names the dynamic axes, stores the token scheme
and provenance in ``metadata_props``, checks that every LSTM became a native ``LSTM`` op, and the
file is written atomically.  Runs in the main thread of ``antiphon train``.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.errors import ModelError
from bridge.model import FORMAT, FORMAT_VERSION, REFERENCE_FORMAT
from bridge.tokens import TokenScheme
from training.model import LstmConfig
from training.reference import STEP_BEATS, ReferenceConfig, ReferenceVocabulary

if TYPE_CHECKING:
    import keras
    import onnx

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "REFERENCE_FORMAT",
    "build_step_model",
    "export_lstm",
    "export_reference",
    "read_metadata",
    "update_metadata",
]


def build_step_model(trained: keras.Model, config: LstmConfig) -> keras.Model:
    """The stateful inference graph with ``trained``'s weights (dropout is inference-inert)."""
    import keras
    import numpy as np
    from keras import layers

    tokens = keras.Input(shape=(None,), dtype="int64", name="tokens")
    embedding = layers.Embedding(config.vocab_size, config.embedding, name="embedding")
    x = embedding(tokens)
    inputs, outputs, lstms = [tokens], [], []
    for i, units in enumerate(config.units):
        h = keras.Input(shape=(units,), name=f"h_{i}")
        c = keras.Input(shape=(units,), name=f"c_{i}")
        lstm = layers.LSTM(units, return_sequences=True, return_state=True, name=f"lstm_{i}")
        x, h_out, c_out = lstm(x, initial_state=[h, c])
        inputs += [h, c]
        outputs += [h_out, c_out]
        lstms.append(lstm)
    dense = layers.Dense(config.vocab_size, name="logits")
    model = keras.Model(inputs, [dense(x), *outputs], name="antiphon_step")
    for layer in (embedding, *lstms, dense):
        layer.set_weights(trained.get_layer(layer.name).get_weights())
    model(
        [np.zeros((1, 2), np.int64)]  # export needs a model that has been called once
        + [np.zeros((1, u), np.float32) for u in config.units for _ in (0, 1)]
    )
    return model


def _export_raw(model: keras.Model) -> onnx.ModelProto:
    import onnx

    with tempfile.TemporaryDirectory(prefix="antiphon-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():  # tf2onnx's numpy-2 shim warns about np.object
            warnings.simplefilter("ignore", FutureWarning)
            model.export(str(path), format="onnx", verbose=False)
        return onnx.load(str(path))


def _rename(
    proto: onnx.ModelProto,
    inputs: list[str],
    outputs: list[str],
    dims: Mapping[str, list[str | int]],
) -> None:
    """Give graph inputs/outputs (in order) the contract names and their axes readable names."""
    graph = proto.graph
    mapping: dict[str, str] = {}
    for value, name in zip(graph.input, inputs, strict=True):
        mapping[value.name] = name
    for value, name in zip(graph.output, outputs, strict=True):
        mapping[value.name] = name
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for value in (*graph.input, *graph.output):
        value.name = mapping.get(value.name, value.name)
        shape = dims.get(value.name)
        if shape is None:
            continue
        for dim, size in zip(value.type.tensor_type.shape.dim, shape, strict=True):
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size


def _check_native_lstm(proto: onnx.ModelProto, layers: int) -> None:
    ops = [node.op_type for node in proto.graph.node]
    if ops.count("LSTM") != layers or "Loop" in ops or "Scan" in ops:
        raise ModelError(
            f"export produced {ops.count('LSTM')} native LSTM ops for {layers} layers "
            f"(Loop/Scan present: {'Loop' in ops or 'Scan' in ops})"
        )


def _set_metadata(proto: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    current = {p.key: p.value for p in proto.metadata_props}
    current.update(metadata)
    del proto.metadata_props[:]
    for key in sorted(current):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, current[key]


def _save_atomic(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    import onnx

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def export_lstm(
    trained: keras.Model,
    config: LstmConfig,
    scheme: TokenScheme,
    training: Mapping[str, Any],
    path: str | os.PathLike[str],
) -> None:
    """Write the stateful-step ONNX file for ``trained`` to ``path`` (atomically)."""
    import onnx

    if scheme.vocab_size != config.vocab_size:
        raise ModelError(f"model vocabulary {config.vocab_size} != scheme's {scheme.vocab_size}")
    proto = _export_raw(build_step_model(trained, config))
    states = [f"{k}_{i}" for i in range(len(config.units)) for k in ("h", "c")]
    dims: dict[str, list[str | int]] = {
        "tokens": ["batch", "time"],
        "logits": ["batch", "time", config.vocab_size],
    }
    for i, units in enumerate(config.units):
        for k in ("h", "c"):
            dims[f"{k}_{i}"] = dims[f"{k}_{i}_out"] = ["batch", units]
    _rename(proto, ["tokens", *states], ["logits", *(f"{s}_out" for s in states)], dims)
    _check_native_lstm(proto, len(config.units))
    onnx.checker.check_model(proto)
    _set_metadata(
        proto,
        {
            "antiphon.format": FORMAT,
            "antiphon.format_version": FORMAT_VERSION,
            "antiphon.token_scheme": scheme.to_json(),
            "antiphon.layers": json.dumps(list(config.units)),
            "antiphon.training": _dumps(dict(training)),
        },
    )
    proto.producer_name = "antiphon"
    _save_atomic(proto, path)


def export_reference(
    trained: keras.Model,
    config: ReferenceConfig,
    vocabulary: ReferenceVocabulary,
    training: Mapping[str, Any],
    path: str | os.PathLike[str],
) -> None:
    """Write the reference window net: ``window`` int64 ``[batch, 100]`` → ``probs``."""
    import keras
    import onnx

    from training.reference import build_reference

    model = build_reference(config, dtype="int64")
    model.set_weights(trained.get_weights())
    model(keras.ops.zeros((1, config.window), "int64"))
    proto = _export_raw(model)
    _rename(
        proto,
        ["window"],
        ["probs"],
        {"window": ["batch", config.window], "probs": ["batch", config.vocab_size]},
    )
    _check_native_lstm(proto, len(config.units))
    onnx.checker.check_model(proto)
    _set_metadata(
        proto,
        {
            "antiphon.format": REFERENCE_FORMAT,
            "antiphon.format_version": FORMAT_VERSION,
            "antiphon.vocabulary": json.dumps(list(vocabulary.symbols)),
            "antiphon.window": str(config.window),
            "antiphon.step_beats": str(STEP_BEATS),
            "antiphon.layers": json.dumps(list(config.units)),
            "antiphon.training": _dumps(dict(training)),
        },
    )
    proto.producer_name = "antiphon"
    _save_atomic(proto, path)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (onnx package; no graph execution)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"cannot read ONNX model {path}: {exc}") from exc
    return {p.key: p.value for p in proto.metadata_props}


def update_metadata(path: str | os.PathLike[str], updates: Mapping[str, str]) -> None:
    """Merge ``updates`` into a file's metadata and rewrite it atomically."""
    import onnx

    proto = onnx.load(str(path))
    _set_metadata(proto, updates)
    _save_atomic(proto, path)
