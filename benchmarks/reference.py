"""The reference method's start-up, timed by :mod:`benchmarks.startup` in a subprocess.

``python -c "from benchmarks.reference import start_and_report; start_and_report()"`` does what
a reference-method generator must do before its first note: import TensorFlow, build the window
net (``training.reference``, the paper's Figure 8), run one ``predict``; then it prints
``ready <VmRSS KiB>``.
"""

from __future__ import annotations

__all__ = ["REFERENCE_VOCAB", "start_and_report"]

REFERENCE_VOCAB = 162  # reference tokenization of the Bach chorales (../shared/REFERENCE.md)


def start_and_report(vocab: int = REFERENCE_VOCAB) -> None:
    import os

    import numpy as np

    from benchmarks.machine import rss_kib
    from training.reference import ReferenceConfig, build_reference

    config = ReferenceConfig(vocab)
    model = build_reference(config)
    model.predict(np.zeros((1, config.window), dtype=np.int32), verbose=0)
    print(f"ready {rss_kib(os.getpid()) or 0}", flush=True)
