"""Report defaults, importable without pandas or matplotlib (the CLI's option defaults read them)."""

from __future__ import annotations

#: Metrics ``probe report`` and ``probe demo`` show: the first ranks the leaderboards (balanced accuracy, robust
#: to class imbalance); then MedMNIST's own pair, ACC and AUC. A metric absent from the results is left out.
REPORT_METRICS: tuple[str, ...] = ("balanced_accuracy", "accuracy", "macro_auroc")
