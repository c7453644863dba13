"""Heads: scikit-learn estimators on stored features (kNN on FAISS, logistic regression, prototypes,
label spreading over a kNN graph), and segmentation heads on patch grids (seg-linear, seg-knn, seg-conv).

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
    "SegConvProbe",
    "SegKNNProbe",
    "SegLinearProbe",
    "fit_label_spreading",
    "fit_linear_probes",
    "fit_multilabel_linear_probes",
    "fit_seg_linear_batch",
    "pool_statistics",
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
    "SegLinearProbe": "probe.heads.seg_linear",
    "fit_seg_linear_batch": "probe.heads.seg_linear",
    "SegKNNProbe": "probe.heads.seg_knn",
    "SegConvProbe": "probe.heads.seg_conv",
    "pool_statistics": "probe.heads._seg_targets",  # patch statistics of a train pool (no labels)
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'probe.heads' has no attribute {name!r}")
