"""The Antiphon network: Embedding → stacked LSTM (Dropout between layers) → Dense logits.

Every position predicts its next token (sequence to sequence), so one window of ``W`` tokens
yields ``W`` training targets.  There is no ``recurrent_dropout``: it disables the fused LSTM
kernel and exports to ONNX as a ``Loop`` instead of the native ``LSTM`` op.  Keras is imported
inside the builders so this module loads without TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bridge.errors import ConfigError

if TYPE_CHECKING:
    import keras

__all__ = ["LstmConfig", "build_lstm", "compile_model"]


@dataclass(frozen=True)
class LstmConfig:
    """Sizes of the default architecture; validated when built."""

    vocab_size: int
    embedding: int = 128
    units: tuple[int, ...] = (256, 256)
    dropout: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", tuple(int(u) for u in self.units))
        if self.vocab_size < 2:
            raise ConfigError(f"vocabulary size must be >= 2, got {self.vocab_size}")
        if self.embedding < 1:
            raise ConfigError(f"embedding size must be >= 1, got {self.embedding}")
        if not self.units or min(self.units) < 1:
            raise ConfigError(f"LSTM sizes must be >= 1, got {list(self.units)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["units"] = list(self.units)
        return {"arch": "default", **data}


def build_lstm(config: LstmConfig) -> keras.Model:
    """The training model: ``int32 [batch, time]`` tokens → ``[batch, time, vocab]`` logits."""
    import keras
    from keras import layers

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = layers.Embedding(config.vocab_size, config.embedding, name="embedding")(tokens)
    for i, units in enumerate(config.units):
        x = layers.LSTM(units, return_sequences=True, name=f"lstm_{i}")(x)
        x = layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    logits = layers.Dense(config.vocab_size, name="logits")(x)
    return keras.Model(tokens, logits, name="antiphon_lstm")


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """Adam with gradient clipping, cross-entropy on logits, token accuracy."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=False,
    )
