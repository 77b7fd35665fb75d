"""Load an Antiphon ONNX model and run it one step (or one whole call) at a time in onnxruntime.

The file contract is ``models/FORMAT.md``: input ``tokens`` int64 ``[batch, time]`` plus every LSTM
layer's ``h_i`` / ``c_i`` state, outputs ``logits`` ``[batch, time, vocab]`` and ``h_i_out`` /
``c_i_out``; metadata carries the format, its version, the token scheme and the layer sizes.
:func:`load_model` checks all of it (and runs one step as a dry run) so a wrong file fails at load
with one clear :class:`~bridge.errors.ModelError` line, never later on the realtime path.

Threads: models are loaded by the CLI (startup) or the OSC thread (hot swap); :meth:`LstmModel.run`
is called by the generation worker.  onnxruntime sessions are safe to share between threads.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bridge.errors import ModelError, TokenError
from bridge.tokens import TokenScheme

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LstmModel",
    "State",
    "default_model_dirs",
    "default_model_path",
    "find_model",
    "load_model",
    "model_dirs",
    "resolve_model",
]

FORMAT = "antiphon-lstm"
FORMAT_VERSION = "1"
REFERENCE_FORMAT = "antiphon-reference-window"

State = dict[str, np.ndarray]
"""LSTM states by input name (``h_0``, ``c_0``, …), each float32 ``[1, units]``."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class LstmModel:
    """A loaded, validated model: token scheme, layer sizes, metadata and the onnxruntime session.

    Build with :func:`load_model`.  :meth:`run` is called by the generation worker.
    """

    def __init__(
        self,
        path: Path,
        session: ort.InferenceSession,
        metadata: Mapping[str, str],
        scheme: TokenScheme,
        layers: Sequence[int],
    ) -> None:
        self.path = path
        self.name = path.stem
        self.scheme = scheme
        self.layers = tuple(layers)
        self.metadata: dict[str, str] = dict(metadata)
        self._session = session
        self._state_names = [f"{k}_{i}" for i in range(len(self.layers)) for k in ("h", "c")]
        self._outputs = ["logits", *(f"{n}_out" for n in self._state_names)]

    def __repr__(self) -> str:
        return f"LstmModel({self.name!r}, layers={list(self.layers)}, vocab={self.vocab_size})"

    @property
    def vocab_size(self) -> int:
        return self.scheme.vocab_size

    @property
    def training(self) -> dict[str, Any]:
        """The ``antiphon.training`` provenance, parsed (empty if absent or not JSON)."""
        try:
            value = json.loads(self.metadata.get("antiphon.training", "{}"))
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    def initial_state(self) -> State:
        """Zero states for every layer (a fresh sequence)."""
        return {
            name: np.zeros((1, self.layers[int(name[2:])]), dtype=np.float32)
            for name in self._state_names
        }

    def run(self, tokens: Sequence[int] | np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """Feed ``tokens`` after ``state``; returns logits ``[time, vocab]`` and the new state.

        A whole call primes in one run; generation passes one token at a time.
        """
        ids = np.asarray(tokens, dtype=np.int64).reshape(1, -1)
        if ids.shape[1] == 0:
            raise ValueError("run() needs at least one token")
        feeds: dict[str, np.ndarray] = {"tokens": ids}
        feeds.update(state)
        outputs = self._session.run(self._outputs, feeds)
        new_state = dict(zip(self._state_names, outputs[1:], strict=True))
        return outputs[0][0], new_state


def load_model(path: str | Path) -> LstmModel:
    """Open and validate an Antiphon model file; :class:`ModelError` (one line) if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} is not a readable ONNX model ({reason[:200]})") from exc
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    scheme, layers = _check_metadata(path, metadata)
    _check_signature(path, session, layers)
    model = LstmModel(path, session, metadata, scheme, layers)
    _dry_run(model)
    return model


def _check_metadata(path: Path, metadata: Mapping[str, str]) -> tuple[TokenScheme, list[int]]:
    fmt = metadata.get("antiphon.format")
    if fmt is None:
        raise ModelError(f"{path} is not an Antiphon model (no 'antiphon.format' metadata)")
    if fmt == REFERENCE_FORMAT:
        raise ModelError(
            f"{path} is a reference window model ({REFERENCE_FORMAT}); "
            f"the bridge needs an {FORMAT} model"
        )
    if fmt != FORMAT:
        raise ModelError(f"{path} has format {fmt!r}; the bridge reads {FORMAT!r} models")
    version = metadata.get("antiphon.format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{path} is {FORMAT} version {version!r}; this Antiphon reads version {FORMAT_VERSION}"
        )
    try:
        scheme = TokenScheme.from_json(metadata.get("antiphon.token_scheme", ""))
    except TokenError as exc:
        raise ModelError(f"{path}: bad token scheme: {exc}") from exc
    try:
        layers = json.loads(metadata.get("antiphon.layers", ""))
    except json.JSONDecodeError:
        layers = None
    if (
        not isinstance(layers, list)
        or not layers
        or not all(isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in layers)
    ):
        raise ModelError(f"{path}: 'antiphon.layers' must be a JSON list of positive unit counts")
    return scheme, layers


def _check_signature(path: Path, session: ort.InferenceSession, layers: Sequence[int]) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    state_names = [f"{k}_{i}" for i in range(len(layers)) for k in ("h", "c")]
    expected_in = {"tokens", *state_names}
    if set(inputs) != expected_in:
        raise ModelError(
            f"{path}: inputs {sorted(inputs)} do not match {len(layers)} LSTM layer(s) "
            f"(expected {sorted(expected_in)})"
        )
    missing_out = {"logits", *(f"{n}_out" for n in state_names)} - set(outputs)
    if missing_out:
        raise ModelError(f"{path}: missing outputs {sorted(missing_out)}")
    if inputs["tokens"].type != "tensor(int64)" or len(inputs["tokens"].shape) != 2:
        raise ModelError(f"{path}: input 'tokens' must be int64 [batch, time]")
    for name in state_names:
        units = layers[int(name[2:])]
        shape = inputs[name].shape
        if inputs[name].type != "tensor(float)" or len(shape) != 2:
            raise ModelError(f"{path}: state input {name!r} must be float32 [batch, units]")
        if isinstance(shape[1], int) and shape[1] != units:
            raise ModelError(
                f"{path}: state {name!r} has {shape[1]} units but 'antiphon.layers' says {units}"
            )


def _dry_run(model: LstmModel) -> None:
    try:
        logits, state = model.run([model.scheme.bos], model.initial_state())
    except Exception as exc:
        raise ModelError(f"{model.path}: a dry run failed ({str(exc).strip()[:200]})") from exc
    if logits.ndim != 2 or logits.shape[-1] != model.vocab_size:
        raise ModelError(
            f"{model.path}: logits have {logits.shape[-1]} entries but the token scheme has "
            f"{model.vocab_size} tokens"
        )
    for name, value in state.items():
        if value.shape != (1, model.layers[int(name[2:])]):
            raise ModelError(f"{model.path}: output state {name}_out has shape {value.shape}")


def resolve_model(name: str, model_dirs: Iterable[str | Path]) -> Path:
    """The model file called ``name`` (``.onnx`` optional) in the first directory that has it.

    Only a plain file name is accepted — no separators, no ``..``, no absolute path — because the
    name may come from the network (OSC ``/antiphon/model``).  :class:`ModelError` otherwise.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ModelError(
            f"model name {name!r} is not allowed: use a plain name from the model directories"
        )
    filename = name if name.endswith(".onnx") else f"{name}.onnx"
    dirs = [Path(d) for d in model_dirs]
    for directory in dirs:
        candidate = directory / filename
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(d) for d in dirs) or "no model directories configured"
    raise ModelError(f"no model named {name!r} in {searched}")


SHIPPED_MODELS_PACKAGE = "antiphon_models"
"""The package the repository's ``models/`` folder is installed as (see pyproject.toml)."""


def shipped_models_dir() -> Path:
    """The shipped models' folder: the installed :data:`SHIPPED_MODELS_PACKAGE` (a wheel, pip,
    pipx or an editable install), else ``models/`` beside ``bridge/`` in a source checkout."""
    try:
        spec = importlib.util.find_spec(SHIPPED_MODELS_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "models"


def default_model_dirs() -> list[Path]:
    """Where shipped models live: :func:`shipped_models_dir`, then
    ``<prefix>/share/antiphon/models`` (a place for models of your own in a venv)."""
    return [shipped_models_dir(), Path(sys.prefix) / "share" / "antiphon" / "models"]


def model_dirs(
    extra: Iterable[str | Path] = (), model_file: str | Path | None = None
) -> list[Path]:
    """Where model names are looked up, in order, each once: ``extra`` (``--model-dir``), the
    directory of the ``--model`` file, then :func:`default_model_dirs`."""
    dirs = [Path(d) for d in extra]
    if model_file is not None:
        dirs.append(Path(model_file).parent)
    unique: list[Path] = []
    for directory in [*dirs, *default_model_dirs()]:
        if directory not in unique:
            unique.append(directory)
    return unique


def find_model(value: str | None, dirs: Iterable[str | Path]) -> Path:
    """The file ``--model VALUE`` means, for every command: None → :func:`default_model_path`;
    a path (an existing file, or any value with a separator) as given; else the model of that
    name in ``dirs`` (:func:`resolve_model`).  ModelError naming both readings if neither is."""
    if value is None:
        return default_model_path()
    path = Path(value).expanduser()
    if path.is_file() or "/" in value or "\\" in value:
        return path
    dirs = list(dirs)
    try:
        return resolve_model(value, dirs)
    except ModelError:
        searched = ", ".join(str(d) for d in dirs) or "no model directories"
        raise ModelError(
            f"model {value!r} not found: no such file, and no model of that name in {searched}"
        ) from None


def default_model_path() -> Path:
    """The shipped ``default.onnx`` (the first that exists; else the repo location, which
    :func:`load_model` then reports as missing)."""
    candidates = [d / "default.onnx" for d in default_model_dirs()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]
