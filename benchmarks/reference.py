"""The reference method's window net (the paper's Figure 8: LSTM 512 → LSTM 256 → Dense softmax
over a one-hot 100-event window), for timing when no trained one is at hand.

Timing does not need trained weights, so an untrained net of the same shape stands in.  Uses the
training package's builder when it has one, else builds the same layers here.  Main thread only;
imports TensorFlow lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["WindowNet", "export_window_onnx", "keras_seed_net"]

REFERENCE_VOCAB = 162  # reference tokenization of the Bach chorales (../shared/REFERENCE.md)


def keras_seed_net(vocab: int = REFERENCE_VOCAB, window: int = 100, *,
                   scalar_input: bool = False) -> Any:
    """An untrained Keras net of the reference shape: one-hot ``[batch, window, vocab]`` (or the
    scaled index ``[batch, window, 1]``) in, next-event probabilities ``[batch, vocab]`` out."""
    import keras

    inputs = keras.Input((window, 1 if scalar_input else vocab), name="window")
    x = keras.layers.LSTM(512, return_sequences=True)(inputs)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.LSTM(256)(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(vocab, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="reference_seed")


def export_window_onnx(model: Any, path: Path) -> Path:
    """Export a Keras window net to ONNX with tf2onnx (native ``LSTM`` ops)."""
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="window")]
    function = tf.function(lambda x: model(x, training=False), input_signature=spec)
    tf2onnx.convert.from_function(function, input_signature=spec, opset=17,
                                  output_path=str(path))
    return path


class WindowNet:
    """Runs a window net's ONNX file the way the reference method generates: per new event, the
    whole window again.  Adapts to the three input encodings a window net may use: one-hot
    float ``[b, W, V]``, a scaled index float ``[b, W, 1]``, or token ids int64 ``[b, W]``."""

    def __init__(self, path: Path, *, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        shape = first.shape
        out_shape = self.session.get_outputs()[0].shape
        self.vocab = int(out_shape[-1]) if isinstance(out_shape[-1], int) else REFERENCE_VOCAB
        self.window = int(shape[1]) if isinstance(shape[1], int) else 100
        self.kind = ("ids" if first.type == "tensor(int64)" else
                     "scalar" if len(shape) == 3 and shape[2] == 1 else "onehot")

    @staticmethod
    def onehot(vocab: int) -> Any:
        """A function: window of event ids → one-hot ``[1, W, vocab]`` float32."""

        def encode(ids: np.ndarray) -> np.ndarray:
            ids = np.asarray(ids, dtype=np.int64)
            out = np.zeros((1, ids.size, vocab), dtype=np.float32)
            out[0, np.arange(ids.size), ids] = 1.0
            return out

        return encode

    def encode(self, ids: np.ndarray) -> np.ndarray:
        """The network input for a window of event ids (what the reference rebuilds per event)."""
        ids = np.asarray(ids, dtype=np.int64)[-self.window:]
        if self.kind == "ids":
            return ids.reshape(1, -1)
        if self.kind == "scalar":
            return (ids.astype(np.float32) / self.vocab).reshape(1, -1, 1)
        return WindowNet.onehot(self.vocab)(ids)

    def probabilities(self, ids: np.ndarray) -> np.ndarray:
        """Next-event distribution after the window ending at ``ids[-1]``."""
        out = self.session.run(None, {self.input_name: self.encode(ids)})[0]
        scores = np.asarray(out, dtype=np.float64).reshape(-1)[-self.vocab:]
        if scores.min() < 0 or not np.isclose(scores.sum(), 1.0, atol=1e-3):  # logits
            scores = np.exp(scores - scores.max())
        return scores / scores.sum()


def start_and_report() -> None:
    """The reference method's start-up, for ``benchmarks.startup`` to time in a subprocess:
    import TensorFlow, build the window net, predict once, print ``ready <VmRSS KiB>``."""
    import os

    from benchmarks.machine import rss_kib

    model = keras_seed_net()
    model.predict(np.zeros((1, 100, REFERENCE_VOCAB), dtype=np.float32), verbose=0)
    print(f"ready {rss_kib(os.getpid()) or 0}", flush=True)
