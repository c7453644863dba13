"""Heads: scikit-learn estimators on stored features (kNN on FAISS, logistic regression, prototypes,
label spreading over a kNN graph).

Each head is importable on its own; this package imports them lazily so that using one never loads
the others' dependencies (the linear head's batched solver imports torch, the kNN head FAISS).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "KNNProbe",
    "LabelSpreadingProbe",
    "LinearProbe",
    "MultiLabelKNNProbe",
    "MultiLabelLinearProbe",
    "MultiLabelPrototypeProbe",
    "PrototypeProbe",
    "fit_label_spreading",
    "fit_linear_probes",
    "fit_multilabel_linear_probes",
    "solve_logistic_batch",
]

_HOME = {
    "KNNProbe": "probe.heads.knn",
    "PrototypeProbe": "probe.heads.prototype",
    "LabelSpreadingProbe": "probe.heads.labelspread",
    "fit_label_spreading": "probe.heads.labelspread",
    "LinearProbe": "probe.heads.linear",
    "fit_linear_probes": "probe.heads.linear",
    "solve_logistic_batch": "probe.heads.linear",
    "MultiLabelKNNProbe": "probe.heads.multilabel",
    "MultiLabelPrototypeProbe": "probe.heads.multilabel",
    "MultiLabelLinearProbe": "probe.heads.multilabel_linear",
    "fit_multilabel_linear_probes": "probe.heads.multilabel_linear",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'probe.heads' has no attribute {name!r}")
