"""Plan defaults, importable without numpy or scipy (the CLI's option defaults read them)."""

from __future__ import annotations

ALL = "all"  # the shots level of the whole training split
DEFAULT_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc", "mcc")
DEFAULT_SHOTS: tuple[int | str, ...] = (1, 2, 4, 8, 16, 32, 64, ALL)
DEFAULT_SEEDS = 5  # draws per shot level: 5-10 give useful confidence intervals
POLICIES: tuple[str, ...] = ("auto", "support", "pool-standardise", "pool-centre-l2")  # feature preprocessing
DEFAULT_PREPROCESSING = (
    "auto"  # pool-centre-l2 up to 32 shots, pool-standardise at 64, support for all (evidence: README)
)
