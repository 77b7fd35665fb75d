"""Antiphon's benchmarks: every figure measured beside its baseline in the same run.

Run ``python -m benchmarks`` (``--help`` lists the sizes; ``--quick`` is the CI smoke run).  One
module per section — :mod:`~benchmarks.inference`, :mod:`~benchmarks.latency`,
:mod:`~benchmarks.startup`, :mod:`~benchmarks.training`, :mod:`~benchmarks.corpus`,
:mod:`~benchmarks.quality` — each with ``run(options, context) -> Section``;
:mod:`~benchmarks.report` writes ``RESULTS.md``.  Not installed with the package: it imports
``bridge`` and ``training`` from the repository.
"""

__all__: list[str] = []
