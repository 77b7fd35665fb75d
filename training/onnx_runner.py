"""Run exported model files in onnxruntime only (no TensorFlow), for evaluation and benchmarks.

An ``antiphon-lstm`` file opens through the bridge's own loader (:func:`bridge.model.load_model`,
with all its checks), so evaluation runs exactly what the bridge runs.  :class:`WindowRunner`
drives the ``antiphon-reference-window`` net, which the bridge refuses.  :func:`open_model` reads
the format and returns the right one.  Called from the main thread of offline commands.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bridge.errors import ModelError
from bridge.model import FORMAT, REFERENCE_FORMAT, LstmModel, load_model

__all__ = ["WindowRunner", "open_model"]


def _session(path: str | os.PathLike[str], threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from exc


def _metadata(session: Any) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map)


class WindowRunner:
    """The reference window net: ``predict(windows [n, window]) -> probs [n, vocab]``."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        self.path = str(path)
        self.session = _session(path, threads)
        self.metadata = _metadata(self.session)
        if self.metadata.get("antiphon.format") != REFERENCE_FORMAT:
            raise ModelError(f"{path} is not an {REFERENCE_FORMAT} model")
        try:
            self.vocabulary: list[str] = list(json.loads(self.metadata["antiphon.vocabulary"]))
            self.window = int(self.metadata["antiphon.window"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"{path} has broken reference metadata: {exc}") from exc
        self.training: dict[str, Any] = json.loads(self.metadata.get("antiphon.training", "{}"))

    def predict(self, windows: np.ndarray, batch: int = 256) -> np.ndarray:
        windows = np.asarray(windows, np.int64)
        parts = [
            self.session.run(["probs"], {"window": windows[i : i + batch]})[0]
            for i in range(0, len(windows), batch)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.vocabulary)), np.float32)


def open_model(
    path: str | os.PathLike[str], *, threads: int | None = None
) -> LstmModel | WindowRunner:
    """Open either kind of model file by its ``antiphon.format``."""
    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path}")
    session = _session(path, threads)
    kind = _metadata(session).get("antiphon.format")
    if kind == FORMAT:
        return load_model(Path(path))
    if kind == REFERENCE_FORMAT:
        return WindowRunner(path, threads=threads)
    raise ModelError(f"{path} is not an Antiphon model (format {kind!r})")
