"""Make the repository's ``benchmarks`` package importable (it is not installed with antiphon)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[2])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
    if getattr(sys.modules[name], "__file__", None) is None:  # a namespace stand-in
        del sys.modules[name]
