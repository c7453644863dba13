"""Features and labels of one stored (dataset, backbone, pooling), split into train/val/eval pools.

This is the only place the probing side touches a store: it finds the store for a dataset and
backbone, checks it can support a classification probe, and hands numpy arrays to the protocols.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import ProtocolError, StoreError
from probe.evaluate.fusion import default_fusion, fuse_views
from probe.sources import same_source
from probe.store import DEFAULT_ROOT, EmbeddingStore, StoreSummary, list_stores, open_store

SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "unsplit": 3}
#: Share of (near-)constant feature columns over the train split above which a store is called degenerate.
DEGENERATE_SHARE = 0.5
DEGENERATE = "degenerate-features"  # the row flag of results from such a store


class DegenerateFeaturesWarning(UserWarning):
    """A store's features are (nearly) constant: every head's numbers from it are meaningless."""


@dataclass(frozen=True)
class Pool:
    """Rows of one split."""

    X: np.ndarray  # (n, d) float32 features
    y: np.ndarray  # (n,) int64 class indices; (n, C) 1/0/-1 (ignored) for multi-label
    ids: np.ndarray  # (n,) sample ids (str)
    groups: np.ndarray | None  # (n,) group (patient) ids, when known
    views: np.ndarray | None = None  # (n, n_views, dim) per-view features of multi-view stores (X is their fusion)
    present: np.ndarray | None = None  # (n, n_views) bool, which views each row has
    units: np.ndarray | None = None  # (n,) segmentation: the image or volume each row belongs to (shots count units)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class EvalData:
    """Everything a protocol needs from one store."""

    dataset: str  # source name, e.g. "bloodmnist_28"
    backbone: str
    pooling: str
    store_path: str
    store_fingerprint: str
    classes: tuple[str, ...]
    task: str  # "multiclass", "binary", "ordinal" or "multilabel" (classes are then the label names)
    train: Pool
    val: Pool | None  # None when the store has no validation rows
    test: Pool  # the evaluation split
    eval_split: str = "test"
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. rows dropped as invalid
    views: tuple[str, ...] = ()  # view names of a multi-view store (slices, modalities); () for images
    view_kind: str = ""  # "slices" or "modalities" for multi-view stores
    fusion: str = ""  # how the views were fused into X (see probe.evaluate.fusion)
    dataset_fingerprint: str = ""  # the source's fingerprint (content, ids, labels, splits): the dataset's identity
    dataset_spec: str = ""  # the source specification the store was extracted from
    setup: dict[str, Any] = field(default_factory=dict)  # the store's part of every row's setup (store_setup)
    flags: tuple[str, ...] = ()  # warnings every row of this data carries, e.g. ("degenerate-features",)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def identity(self) -> dict[str, str]:
        """The result-row fields that tell datasets of the same name apart."""
        return {"dataset_fingerprint": self.dataset_fingerprint, "dataset_spec": self.dataset_spec}


def find_store(
    data: str, *, backbone: str, root: str | os.PathLike[str] = DEFAULT_ROOT, image_size: int | None = None
) -> EmbeddingStore:
    """The complete store of ``data`` embedded by ``backbone`` under ``root``.

    Raises:
        StoreError: none (says how to extract), only an incomplete one (says how to resume), or
            several that differ (lists them; pick one with ``--store`` or ``--image-size``).
    """
    matches: list[tuple[StoreSummary, EmbeddingStore]] = []
    for summary in list_stores(root):
        if summary.backbone != backbone or not same_source(data, summary.dataset):
            continue
        store = open_store(summary.path, require_complete=False)
        size = store.attrs.get("backbone", {}).get("preprocess", {}).get("image_size")
        if image_size is None or size == image_size:
            matches.append((summary, store))
    done = [m for m in matches if m[0].complete]
    if len(done) == 1:
        return done[0][1]
    if len(done) > 1:
        lines = "; ".join(f"{s.path} ({_describe(st)})" for s, st in done)
        raise StoreError(
            f"several stores of {data} with {backbone}: {lines}; choose one with StoreChoice(store=PATH) or "
            "StoreChoice(image_size=N)"
        )
    if matches:
        cmd = matches[0][1].attrs.get("command", f"probe extract {data} --backbone {backbone}")
        raise StoreError(f"the store of {data} with {backbone} ({matches[0][0].path}) is incomplete; resume it: {cmd}")
    raise StoreError(
        f"no store of {data} with backbone {backbone} under {Path(root)}; extract it first: "
        f"probe extract {data} --backbone {backbone} (or pass StoreChoice(store=PATH) / StoreChoice(store_root=DIR))"
    )


def _describe(store: EmbeddingStore) -> str:
    pre = store.attrs.get("backbone", {}).get("preprocess", {})
    return f"{pre.get('image_size', '?')} px {pre.get('resolution', '')}, {store.attrs.get('precision', '')}".strip()


def _strings(values: np.ndarray | None) -> np.ndarray | None:
    """Zarr string arrays (numpy StringDType) as plain fixed-width unicode arrays."""
    return None if values is None else np.array([str(v) for v in values.tolist()])


def load_eval_data(
    store: EmbeddingStore, *, pooling: str | None = None, eval_split: str = "test", fusion: str | None = None
) -> EvalData:
    """Split a store's features into train / val / evaluation pools (single-label or multi-label).

    Args:
        store: a complete store.
        pooling: which features (default: the store's first pooling).
        eval_split: ``"test"`` (default) or ``"val"``.
        fusion: multi-view stores: how views become X (:data:`probe.evaluate.fusion.FUSIONS`; None: the view
            kind's default); the rows' pooling then reads ``<pooling>:<fusion>``.

    Raises:
        ProtocolError: 2-D labels without task "multilabel", no train rows, a split holding one class
            only, or (multi-label) no label with both states in a split.
        StoreError: unknown pooling.
    """
    if not store.complete:
        raise StoreError(f"store {store.path} is incomplete; resume it: {store.attrs.get('command', 'probe extract')}")
    if store.attrs.get("mask_size") is not None:  # label maps: the segmentation task kind
        from probe.evaluate.segmentation import load_seg_data  # it builds on this module

        if fusion is not None:
            raise ProtocolError(f"ViewConfig(fusion={fusion}) applies to multi-view stores; {store.path} holds images")
        return load_seg_data(store, pooling=pooling, eval_split=eval_split)
    pooling = pooling or next(iter(store.poolings))
    labels = np.asarray(store.labels)
    multilabel = labels.ndim == 2 and store.attrs.get("source", {}).get("task") == "multilabel"
    if labels.ndim != 1 and not multilabel:
        raise ProtocolError(f"{store.path} holds labels of shape {labels.shape} without task 'multilabel'")
    if eval_split not in ("test", "val"):
        raise ProtocolError(f"evaluation split {eval_split!r}: use 'test' or 'val'")
    X, views = _view_features(store, pooling, fusion)
    valid = np.asarray(store.valid).astype(bool)
    split = np.asarray(store.split)
    source = store.attrs.get("source", {})
    name = str(source.get("name", "?"))
    classes = tuple(str(c) for c in source.get("classes", []))
    ids, groups, labels = _strings(store.ids), _strings(store.groups), labels.astype(np.int64)
    assert ids is not None
    pools: dict[str, Pool | None] = {}
    for s in ("train", "val", "test"):
        keep = valid & (split == SPLIT_CODES[s])
        if keep.any():
            pool = Pool(X=X[keep], y=labels[keep], ids=ids[keep], groups=None if groups is None else groups[keep])
            pools[s] = pool if views is None else replace(pool, views=views[0][keep], present=views[1][keep])
        else:
            pools[s] = None
    train, test = pools["train"], pools[eval_split]
    if train is None or test is None:
        missing = "train" if train is None else eval_split
        raise ProtocolError(
            f"{name}: the store has no valid {missing} rows; probes need train and {eval_split} splits "
            "(use a folder with train/ val/ test/ subfolders or a CSV with a split column)"
        )
    for pool_name, pool in (("train", train), (eval_split, test)):
        if multilabel:
            _check_multilabel_pool(name, pool_name, pool, classes)
            continue
        present = np.unique(pool.y)
        if present.size < 2:
            label = classes[int(present[0])] if classes else str(present[0])
            raise ProtocolError(
                f"{name}: the {pool_name} split holds a single class ({label!r}); a classifier cannot be "
                "trained or scored on it: check the labels/split columns of the source"
            )
    return EvalData(
        dataset=name,
        backbone=str(store.attrs.get("backbone", {}).get("name", "?")),
        pooling=pooling if views is None else f"{pooling}:{views[2]}",
        store_path=store.path,
        store_fingerprint=store.fingerprint,
        classes=classes or tuple(str(c) for c in range(labels.shape[1] if multilabel else int(labels.max()) + 1)),
        task=str(source.get("task", "multiclass")),
        train=train,
        val=pools["val"] if eval_split == "test" else None,
        test=test,
        eval_split=eval_split,
        notes={"invalid_rows": int((~valid).sum()), **_label_notes(source), **_view_notes(store, views)},
        **_view_fields(store, views),
        dataset_fingerprint=str(store.attrs.get("fingerprint_inputs", {}).get("source", {}).get("content", "")),
        dataset_spec=str(source.get("spec", "")),
        setup=store_setup(store, pooling if views is None else f"{pooling}:{views[2]}"),
        flags=check_features(train.X, what=f"{name} ({store.path}, {pooling})", store=store),
    )


def check_features(X: np.ndarray, *, what: str, store: EmbeddingStore | None = None) -> tuple[str, ...]:
    """Warn (one line) and return ``("degenerate-features",)`` when features cannot carry information.

    Degenerate: every row identical, or more than :data:`DEGENERATE_SHARE` of the columns constant up
    to 1e-6 of the features' overall spread (EfficientNet-Lite0 on 32-px images stores 99.9999 % zeros).

    Args:
        X: (n, d) train-split features.
        what: the data named in the warning.
        store: the store, for the image size named as the likely cause.
    """
    X = X[np.isfinite(X).all(axis=1)]  # NaN/inf rows are the heads' error to report, not a spread
    if X.shape[0] < 2 or X.shape[1] == 0:
        return ()
    spread = X.std(axis=0, dtype=np.float64)
    overall = float(spread.max())
    constant = float((spread <= 1e-6 * overall).mean()) if overall > 0 else 1.0
    if overall > 0 and constant <= DEGENERATE_SHARE:
        return ()
    size = (store.attrs.get("backbone", {}).get("preprocess", {}).get("image_size") if store else None) or "?"
    found = "every train row is identical" if overall == 0 else f"{constant:.1%} of the feature columns are constant"
    warnings.warn(
        f"{what}: {found}; likely cause: images too small for the backbone ({size} px input) or a wrong "
        f"normalisation; re-extract with a larger --image-size or check the preprocessing "
        f"(rows flagged {DEGENERATE!r})",
        DegenerateFeaturesWarning,
        stacklevel=3,
    )
    return (DEGENERATE,)


def store_setup(store: EmbeddingStore, pooling: str) -> dict[str, Any]:
    """The store's part of a row's setup (:mod:`probe.setups`): fingerprint and the fields a reader names.

    ``source_resolution`` is the ``@N`` of a MedMNIST-style spec (None for sources of mixed sizes);
    ``weights`` is the weights id or file name, ``"random, seed s"`` for random init, or the sha256
    prefix of the weights when they have no name; ``weights_sha256`` is that hash (of the state dict
    as loaded).
    """
    attrs = store.attrs
    return input_setup(
        store=store.fingerprint,
        spec=str(attrs.get("source", {}).get("spec", "")),
        backbone=attrs.get("backbone", {}),
        precision=attrs.get("precision"),
        pooling=pooling,
        decode=attrs.get("fingerprint_inputs", {}).get("source", {}).get("decode", {}),
    )


def input_setup(
    *, store: str, spec: str, backbone: dict[str, Any], precision: Any, pooling: str, decode: dict[str, Any]
) -> dict[str, Any]:
    """The setup fields of what a head saw (:func:`store_setup`; fine-tuning builds them from its own run).

    Args:
        store: the store fingerprint (or the fine-tuning run's key); its first 16 characters are kept.
        spec: the source spec (``medmnist:bloodmnist@28``).
        backbone: ``{"meta", "weights_fingerprint", "preprocess"}`` as a store's ``backbone`` attribute.
        precision: the forward precision (``extract_precision``).
        pooling: the pooling.
        decode: the source's decode options (volume slice policy).
    """
    pre = backbone.get("preprocess", {})
    size = re.search(r"@(\d+)(?:\?|$)", spec)
    return {
        "store": store[:16],
        "source_resolution": int(size.group(1)) if size else None,
        "image_size": pre.get("image_size"),
        "resolution": pre.get("resolution"),
        "weights": _weights_label(backbone),
        "weights_sha256": str(backbone.get("weights_fingerprint", "")).removeprefix("sha256:")[:16] or None,
        "extract_precision": precision,
        "pooling": pooling,
        **({"slices": f"{decode.get('slices')} axis {decode.get('slice_axis')}"} if "slices" in decode else {}),
    }


def _weights_label(backbone: dict[str, Any]) -> str | None:
    meta = backbone.get("meta", {})
    weights, digest = meta.get("weights"), str(backbone.get("weights_fingerprint", ""))
    if weights == "random":
        return f"random, seed {meta.get('random_seed', 0)}"  # random init is seeded with RANDOM_INIT_SEED = 0
    if weights in (None, "", "pretrained"):
        return digest[:19] if digest else None  # "sha256:" + 12 hex digits
    return os.path.basename(str(weights))


def _view_features(
    store: EmbeddingStore, pooling: str, fusion: str | None
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, str] | None]:
    """(X, None) for image stores; (fused X, (per-view features, presence, fusion)) for multi-view ones."""
    if store.views is None:
        if fusion is not None:
            raise ProtocolError(
                f"ViewConfig(fusion={fusion}) applies to multi-view stores (volumes, modalities); {store.path} "
                "holds one image per sample: drop the fusion"
            )
        return store.features(pooling), None
    method = fusion or default_fusion(str(store.attrs.get("source", {}).get("view_kind", "")))
    feats, present = store.features(pooling), np.asarray(store.array("present"), dtype=bool)
    return fuse_views(feats, present, method), (feats, present, method)


def _view_fields(store: EmbeddingStore, views: tuple[np.ndarray, np.ndarray, str] | None) -> dict[str, Any]:
    if views is None or store.views is None:
        return {}
    kind = str(store.attrs.get("source", {}).get("view_kind", ""))
    return {"views": store.views, "view_kind": kind, "fusion": views[2]}


def _view_notes(store: EmbeddingStore, views: tuple[np.ndarray, np.ndarray, str] | None) -> dict[str, Any]:
    """Row parameters of a multi-view store: the fusion, and the stored slice policy for volumes."""
    if views is None:
        return {}
    decode = store.attrs.get("fingerprint_inputs", {}).get("source", {}).get("decode", {})
    extra = {k: decode[k] for k in ("slice_axis", "slices") if k in decode}
    return {"fusion": views[2], **extra}


def _check_multilabel_pool(name: str, pool_name: str, pool: Pool, classes: tuple[str, ...]) -> None:
    """A multi-label pool needs at least one label with both a positive and a negative entry."""
    both = ((pool.y == 1).any(axis=0)) & ((pool.y == 0).any(axis=0))
    if not both.any():
        raise ProtocolError(
            f"{name}: in the {pool_name} split no label ({', '.join(classes)}) has both positive and negative "
            "entries; a head cannot be trained or scored on it: check the label columns and the uncertain policy"
        )


def _label_notes(source: dict[str, Any]) -> dict[str, Any]:
    """Row parameters from the source's labelling: the multi-label uncertain/blank policy."""
    policy = source.get("label_policy")
    return {"label_policy": dict(policy)} if policy else {}
