"""Multi-worker training through ``tf.distribute.MultiWorkerMirroredStrategy`` (from ``TF_CONFIG``).

Keras 3.15's ``fit`` does not run under this strategy as shipped (keras-team/keras#20585): it
reduces the first batch and the scalar metrics with ``strategy.reduce("MEAN", …, axis=0)``,
which fails on scalars and on integer batches.  :func:`patch_keras_for_multi_worker` applies
two narrow work-arounds, only in the multi-worker case: the model is built from a local sample
batch before ``fit`` (instead of a cross-worker reduction of the first batch), and per-replica
scalars are averaged with ``axis=None``.  Metrics stay global (every worker logs the same
numbers), so early stopping decides the same on every worker.  Called in the main thread before
``fit``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

__all__ = ["Cluster", "cluster_from_env", "make_strategy", "patch_keras_for_multi_worker"]


class Cluster:
    """This process's place in a ``TF_CONFIG`` cluster (one worker when unset)."""

    def __init__(self, workers: int = 1, index: int = 0) -> None:
        self.workers = workers
        self.index = index

    @property
    def is_chief(self) -> bool:
        """Worker 0 writes checkpoints, logs and the model file; the others only compute."""
        return self.index == 0

    @property
    def distributed(self) -> bool:
        return self.workers > 1


def cluster_from_env() -> Cluster:
    """Read ``TF_CONFIG`` (``{"cluster": {"worker": [...]}, "task": {"index": i}}``)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return Cluster()
    try:
        config: dict[str, Any] = json.loads(raw)
        workers = len(config["cluster"]["worker"])
        index = int(config.get("task", {}).get("index", 0))
    except (ValueError, KeyError, TypeError) as exc:
        from bridge.errors import ConfigError

        raise ConfigError(f"TF_CONFIG is not a valid cluster description: {exc}") from exc
    return Cluster(workers, index)


def make_strategy(cluster: Cluster) -> tf.distribute.Strategy:
    import tensorflow as tf

    if cluster.distributed:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def patch_keras_for_multi_worker(
    model: keras.Model, strategy: tf.distribute.Strategy, sample: tuple[Any, Any]
) -> None:
    """Make ``model.fit`` work under MultiWorkerMirroredStrategy (see the module docstring)."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as keras_trainer

    with strategy.scope():
        model._symbolic_build(data_batch=sample)
    model._maybe_symbolic_build = lambda *args, **kwargs: None

    original = keras_trainer.reduce_per_replica
    if getattr(original, "_antiphon_patched", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and keras_trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return tf.nest.map_structure(
                lambda v: (
                    strategy.reduce("MEAN", v, axis=None)
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                values,
            )
        return original(values, strategy, reduction)

    reduce_per_replica._antiphon_patched = True  # type: ignore[attr-defined]
    keras_trainer.reduce_per_replica = reduce_per_replica
