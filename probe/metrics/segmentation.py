"""Segmentation metrics: Dice, IoU, volume Dice and HD95 of class maps, with bootstrap intervals over units.

Inputs are (n, H, W) integer class maps: classes 0..K-1 with 0 the background, and
:data:`IGNORE_INDEX` (255) in ``y_true`` marking unlabelled pixels, which count for no metric (the
prediction there is not read). A *unit* is what the bootstrap resamples: an image, or the volume a
slice belongs to when ``units`` is given.

- per image i and foreground class c, with I, P, T the intersection, predicted and true pixel counts:
  Dice = 2I / (P + T), IoU = I / (P + T - I); both undefined (NaN) when P + T = 0, i.e. the class is
  absent from truth and prediction, and such images are left out of every mean. A class predicted
  but absent from the truth (or the reverse) scores 0.
- ``dice:<c>`` / ``iou:<c>``: class c's mean over the images where it is defined.
- ``dice`` / ``iou``: the mean of those per-class means over the foreground classes defined on some
  image (NaN when none is).
- ``volume_dice``: as ``dice``, but with the counts summed over each unit's slices first (the Dice of
  the stacked volume); it needs ``units``.
- ``hd95`` (pixels, lower is better): for each image and foreground class present in *both* truth and
  prediction, the 95th percentile (linear interpolation) of the pooled surface distances from each
  boundary to the other (boundary pixels: the mask minus its binary erosion by the 4-neighbour cross,
  outside the image counting as background; distances by ``scipy.ndimage.distance_transform_edt``),
  as medpy's ``hd95``. A class present in only one of the two has no finite distance and is left
  out; the mean is per class over images, then over classes.

Every mean above is a ratio of per-unit sums, so a bootstrap resample is a (B, n_units) multiplicity
matrix times per-unit sum matrices, computed once: resample b is row b of
``default_rng(seed).integers(0, n_units, (B, n_units))``, the rows the classification metrics draw.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from probe.errors import MetricError
from probe.metrics._bootstrap import draw_resamples, percentile_interval, resample_counts

IGNORE_INDEX = 255  # label of unlabelled pixels in y_true
SEG_METRIC_LABELS = {
    "dice": "mean foreground Dice",
    "iou": "mean foreground IoU",
    "volume_dice": "volume Dice",
    "hd95": "HD95 (px)",
}
SEG_METRICS = tuple(SEG_METRIC_LABELS)  # valid names, besides "dice:<class>" and "iou:<class>"
_PER_CLASS = re.compile(r"(dice|iou):(.+)")
_PER_CLASS_TEXT = {"dice": "Dice of {}", "iou": "IoU of {}"}
_PIXEL_BLOCK = 2**22  # pixels counted per bincount call: bounds the int64 code array to 32 MiB
_CROSS = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True, eq=False)
class SegCounts:
    """Pixel counts per image (or unit) and class, ignored pixels excluded."""

    inter: np.ndarray  # (n, K) int64: pixels of class c in both truth and prediction
    pred: np.ndarray  # (n, K) int64: pixels predicted as class c
    true: np.ndarray  # (n, K) int64: pixels of class c in the truth
    unit: np.ndarray  # (n,) int64: row of each image's unit in unit_ids
    unit_ids: np.ndarray  # (n_units,): the distinct units, ascending (0..n-1 when none were given)

    @property
    def n_units(self) -> int:
        return int(self.unit_ids.shape[0])

    def by_unit(self) -> SegCounts:
        """Counts summed over each unit's images: (n_units, K) arrays, one row per ``unit_ids`` entry."""
        inter, pred, true = (_sum_by_unit(a, self.unit, self.n_units) for a in (self.inter, self.pred, self.true))
        return SegCounts(inter, pred, true, np.arange(self.n_units, dtype=np.int64), self.unit_ids)


def is_seg_metric(name: str) -> bool:
    """Whether ``name`` is a segmentation metric (class names are checked later, against the data)."""
    return name in SEG_METRIC_LABELS or _PER_CLASS.fullmatch(name) is not None


def seg_metric_label(name: str) -> str:
    """Human label, e.g. ``"mean foreground Dice"`` or ``"Dice of liver"``.

    Raises:
        MetricError: not a segmentation metric name.
    """
    match = _PER_CLASS.fullmatch(name)
    if match:
        return _PER_CLASS_TEXT[match.group(1)].format(match.group(2))
    if name not in SEG_METRIC_LABELS:
        raise _unknown(name)
    return SEG_METRIC_LABELS[name]


def seg_metric_range(name: str) -> tuple[float, float] | None:
    """(0, 1) for Dice and IoU; None for ``hd95``, which has no upper bound."""
    seg_metric_label(name)
    return None if name == "hd95" else (0.0, 1.0)


def seg_metric_direction(name: str) -> Literal["higher", "lower"]:
    """``"lower"`` for ``hd95`` (a distance), ``"higher"`` for every other name (validated)."""
    seg_metric_label(name)
    return "lower" if name == "hd95" else "higher"


def resolve_seg_metrics(names: str | Sequence[str], *, classes: Sequence[str], volumes: bool) -> tuple[str, ...]:
    """Validate names and expand ``"default"`` (also what an empty selection means).

    ``"default"`` is ``dice``, ``iou``, ``dice:<c>`` for every foreground class, and ``volume_dice``
    when ``volumes``; ``hd95`` is only computed when named.

    Args:
        names: names from :data:`SEG_METRICS`, ``"dice:<class>"``, ``"iou:<class>"`` or ``"default"``.
        classes: the K class names, background first.
        volumes: whether the images are slices grouped into volumes (``units`` given).

    Returns:
        The names in order, duplicates removed.

    Raises:
        MetricError: an unknown name or class, a per-class name for the background, or
            ``volume_dice`` without volumes.
    """
    requested = [names] if isinstance(names, str) else list(names)
    fg = tuple(str(c) for c in classes)[1:]
    out: list[str] = []
    for name in requested or ["default"]:
        match = _PER_CLASS.fullmatch(name) if isinstance(name, str) else None
        if name == "default":
            out.extend(("dice", "iou", *(f"dice:{c}" for c in fg), *(("volume_dice",) if volumes else ())))
        elif match:
            if match.group(2) not in fg:
                what = "the background" if match.group(2) == str(classes[0]) else "no class of this set"
                raise MetricError(
                    f"metric {name!r} names {what}; per-class metrics take a foreground class: {', '.join(fg)}."
                )
            out.append(name)
        elif name == "volume_dice" and not volumes:
            raise MetricError(
                "volume_dice needs volumes: pass units (the volume of each slice), or drop it for 2D images."
            )
        elif name in SEG_METRIC_LABELS:
            out.append(name)
        else:
            raise _unknown(name)
    return tuple(dict.fromkeys(out))


def seg_counts(y_true: Any, y_pred: Any, *, n_classes: int, units: Any = None) -> SegCounts:
    """Per-image intersection, predicted and true pixel counts of every class.

    Args:
        y_true: (n, H, W) int class maps in 0..K-1, 255 where unlabelled.
        y_pred: (n, H, W) int predicted class maps in 0..K-1 (read only where ``y_true`` is labelled).
        n_classes: K, background included.
        units: (n,) int unit of each image (the volume of a slice); None makes each image its own unit.

    Returns:
        :class:`SegCounts` with (n, K) int64 counts.

    Raises:
        MetricError: shapes differ, non-integer maps, or a class outside 0..K-1.
    """
    yt, yp = _check_maps(y_true, y_pred, n_classes)
    return _counts(yt, yp, n_classes, units)


def compute_seg_metrics(
    y_true: Any, y_pred: Any, *, n_classes: int, classes: Sequence[str], metrics: str | Sequence[str], units: Any = None
) -> dict[str, float]:
    """Segmentation metrics of one set of predicted class maps (definitions in the module docstring).

    Args:
        y_true, y_pred, n_classes, units: as in :func:`seg_counts`.
        classes: the K class names, background first.
        metrics: names for :func:`resolve_seg_metrics` (``"default"`` or empty: the default set).

    Returns:
        Metric name → value, NaN where undefined.

    Raises:
        MetricError: invalid maps, names, classes or units.
    """
    sums, names = _prepare(y_true, y_pred, n_classes=n_classes, classes=classes, metrics=metrics, units=units)
    values = _evaluate(sums, names, np.ones((1, sums.n_units), dtype=np.int32))
    return {name: float(values[name][0]) for name in names}


def bootstrap_seg_ci(
    y_true: Any,
    y_pred: Any,
    *,
    n_classes: int,
    classes: Sequence[str],
    metrics: str | Sequence[str],
    units: Any = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals over units (images, or volumes when ``units`` is given).

    A resampled unit brings all of its images; the intervals are paired across metrics. A resample
    on which a value is undefined is left out of its interval; one undefined on all gets (nan, nan).

    Args:
        y_true, y_pred, n_classes, classes, metrics, units: as in :func:`compute_seg_metrics`.
        n_resamples: B, the number of bootstrap resamples.
        seed: seed of ``np.random.default_rng``, which draws the resamples.
        level: central coverage of the interval, in (0, 1).

    Returns:
        Metric name → (low, high).

    Raises:
        MetricError: as :func:`compute_seg_metrics`, or a bad ``n_resamples`` / ``level``.
    """
    if not 0.0 < level < 1.0:
        raise MetricError(f"level must lie in (0, 1); got {level}. Use e.g. 0.95.")
    sums, names = _prepare(y_true, y_pred, n_classes=n_classes, classes=classes, metrics=metrics, units=units)
    parts = [_evaluate(sums, names, resample_counts(i)) for i in draw_resamples(seed, sums.n_units, n_resamples)]
    return {name: percentile_interval(np.concatenate([p[name] for p in parts]), level) for name in names}


# ---------------------------------------------------------------------------------------------------
# validation and counting


def _check_maps(y_true: Any, y_pred: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or not 2 <= n_classes <= 255:
        raise MetricError(f"n_classes must be an int in 2..255 (background included, 255 = ignore); got {n_classes}.")
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if yt.ndim != 3 or yt.shape[0] == 0 or yt.shape != yp.shape:
        raise MetricError(f"y_true {yt.shape} and y_pred {yp.shape} must both be (n, H, W) class maps with n >= 1.")
    for name, arr in (("y_true", yt), ("y_pred", yp)):
        if arr.dtype.kind not in "iu":
            raise MetricError(
                f"{name} must hold integer class indices; got dtype {arr.dtype}. Cast with .astype(np.uint8)."
            )
    return yt, yp


def _counts(yt: np.ndarray, yp: np.ndarray, k: int, units: Any) -> SegCounts:
    n, px, cells = yt.shape[0], yt[0].size, k * k + 1  # cell k * k of each image collects the ignored pixels
    conf = np.empty((n, k * k), dtype=np.int64)
    step = max(1, min(_PIXEL_BLOCK // px, (2**31 - 1) // cells))  # keeps the int32 codes below 2**31
    for s in range(0, n, step):
        t, p = yt[s : s + step].reshape(-1, px), yp[s : s + step].reshape(-1, px)
        m, valid = t.shape[0], t != IGNORE_INDEX
        _check_classes(t, p, valid, k)
        code = np.where(valid, t.astype(np.int32) * k + p.astype(np.int32, copy=False), k * k)
        code += (np.arange(m, dtype=np.int32) * cells)[:, None]
        conf[s : s + m] = np.bincount(code.ravel(), minlength=m * cells).reshape(m, cells)[:, : k * k]
    conf3 = conf.reshape(n, k, k)  # rows: true class, columns: predicted class
    unit, ids = _check_units(units, n)
    return SegCounts(np.diagonal(conf3, axis1=1, axis2=2).copy(), conf3.sum(axis=1), conf3.sum(axis=2), unit, ids)


def _check_classes(t: np.ndarray, p: np.ndarray, valid: np.ndarray, k: int) -> None:
    bad_t = valid & ((t < 0) | (t >= k))
    if bad_t.any():
        v = int(t[bad_t][0])
        raise MetricError(
            f"y_true holds class {v} outside 0..{k - 1} (255 = ignore); map labels to 0..K-1 or raise n_classes."
        )
    bad_p = valid & ((p < 0) | (p >= k))
    if bad_p.any():
        v = int(p[bad_p][0])
        raise MetricError(
            f"y_pred holds class {v} at a labelled pixel, outside 0..{k - 1}; predict one of the K classes."
        )


def _check_units(units: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    if units is None:
        return np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64)
    u = np.asarray(units)
    if u.shape != (n,) or u.dtype.kind not in "iu":
        raise MetricError(f"units must be ({n},) integers, the unit of each image; got {u.dtype} {u.shape}.")
    ids, inverse = np.unique(u, return_inverse=True)
    return inverse.astype(np.int64).reshape(n), ids


def _sum_by_unit(values: np.ndarray, unit: np.ndarray, n_units: int) -> np.ndarray:
    """(n, m) per-image values → (n_units, m) sums over each unit's images."""
    if n_units == unit.shape[0] and np.array_equal(unit, np.arange(n_units)):
        return values.copy()
    out = np.zeros((n_units, *values.shape[1:]), dtype=values.dtype)
    np.add.at(out, unit, values)
    return out


# ---------------------------------------------------------------------------------------------------
# HD95


def _hd95_per_image(yt: np.ndarray, yp: np.ndarray, counts: SegCounts) -> np.ndarray:
    """(n, K-1) HD95 of each image and foreground class, NaN unless present in truth and prediction."""
    both = (counts.true[:, 1:] > 0) & (counts.pred[:, 1:] > 0)
    out = np.full(both.shape, np.nan)
    for i in np.flatnonzero(both.any(axis=1)):
        valid = yt[i] != IGNORE_INDEX
        for j in np.flatnonzero(both[i]):
            out[i, j] = _hd95(yt[i] == j + 1, (yp[i] == j + 1) & valid)
    return out


def _hd95(a: np.ndarray, b: np.ndarray) -> float:
    """95th percentile of the pooled boundary-to-boundary distances of two non-empty (H, W) masks."""
    rows, cols = np.flatnonzero((a | b).any(axis=1)), np.flatnonzero((a | b).any(axis=0))
    # A one-pixel margin around both masks keeps the erosion and every distance exact: the crop
    # edge is background (or the image edge, background either way).
    r0, r1, c0, c1 = max(rows[0] - 1, 0), rows[-1] + 2, max(cols[0] - 1, 0), cols[-1] + 2
    a, b = a[r0:r1, c0:c1], b[r0:r1, c0:c1]
    edge_a = a & ~ndimage.binary_erosion(a, structure=_CROSS, border_value=0)
    edge_b = b & ~ndimage.binary_erosion(b, structure=_CROSS, border_value=0)
    d_ab = ndimage.distance_transform_edt(~edge_b)[edge_a]
    d_ba = ndimage.distance_transform_edt(~edge_a)[edge_b]
    return float(np.percentile(np.concatenate([d_ab, d_ba]), 95))


# ---------------------------------------------------------------------------------------------------
# per-unit sums and their weighted ratios


@dataclass(frozen=True, eq=False)
class _Sums:
    """Per-unit sums of each score family: the class mean under weights w is (w @ total) / (w @ defined)."""

    n_units: int
    classes: tuple[str, ...]  # the K-1 foreground class names
    total: dict[str, np.ndarray]  # family → (n_units, K-1) float64 sum of the defined scores of the unit
    defined: dict[str, np.ndarray]  # family → (n_units, K-1) float64 how many of them are defined


def _prepare(
    y_true: Any, y_pred: Any, *, n_classes: int, classes: Sequence[str], metrics: str | Sequence[str], units: Any
) -> tuple[_Sums, tuple[str, ...]]:
    yt, yp = _check_maps(y_true, y_pred, n_classes)
    names_of = tuple(str(c) for c in classes)
    if len(names_of) != n_classes or len(set(names_of)) != n_classes:
        raise MetricError(
            f"classes must be {n_classes} distinct names, background first; got {len(names_of)}: {names_of}."
        )
    names = resolve_seg_metrics(metrics, classes=names_of, volumes=units is not None)
    counts = _counts(yt, yp, n_classes, units)
    fams = {_PER_CLASS.sub(r"\1", n) for n in names}
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if fams & {"dice", "iou"}:
        dice, iou = _dice_iou(counts)
        scores |= {"dice": _sum_by_unit_nan(dice, counts), "iou": _sum_by_unit_nan(iou, counts)}
    if "hd95" in fams:
        scores["hd95"] = _sum_by_unit_nan(_hd95_per_image(yt, yp, counts), counts)
    total = {f: s[0] for f, s in scores.items()}
    defined = {f: s[1] for f, s in scores.items()}
    if "volume_dice" in fams:
        vol, _ = _dice_iou(counts.by_unit())
        total["volume_dice"], defined["volume_dice"] = np.nan_to_num(vol, nan=0.0), (~np.isnan(vol)).astype(float)
    return _Sums(counts.n_units, names_of[1:], total, defined), names


def _dice_iou(counts: SegCounts) -> tuple[np.ndarray, np.ndarray]:
    """(n, K-1) Dice and IoU of the foreground classes, NaN where P + T = 0."""
    i, p, t = (a[:, 1:].astype(np.float64) for a in (counts.inter, counts.pred, counts.true))
    return _div(2 * i, p + t), _div(i, p + t - i)


def _sum_by_unit_nan(values: np.ndarray, counts: SegCounts) -> tuple[np.ndarray, np.ndarray]:
    """(n, m) per-image values with NaN → per-unit (sum of the defined values, count of defined values)."""
    defined = ~np.isnan(values)
    return (
        _sum_by_unit(np.where(defined, values, 0.0), counts.unit, counts.n_units),
        _sum_by_unit(defined.astype(np.float64), counts.unit, counts.n_units),
    )


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def _evaluate(sums: _Sums, names: Sequence[str], w: np.ndarray) -> dict[str, np.ndarray]:
    """Metric values under (B, n_units) unit multiplicities: name → (B,) float64."""
    wf = w.astype(np.float64)
    means: dict[str, np.ndarray] = {}  # family → (B, K-1) per-class means
    out: dict[str, np.ndarray] = {}
    for name in names:
        family = _PER_CLASS.sub(r"\1", name)
        if family not in means:
            means[family] = _div(wf @ sums.total[family], wf @ sums.defined[family])
        match = _PER_CLASS.fullmatch(name)
        if match:
            out[name] = means[family][:, sums.classes.index(match.group(2))]
        else:
            ok = ~np.isnan(means[family])
            out[name] = _div(np.where(ok, means[family], 0.0).sum(axis=1), ok.sum(axis=1).astype(np.float64))
    return out


def _unknown(name: object) -> MetricError:
    return MetricError(
        f"unknown segmentation metric {name!r}; choose from {', '.join(SEG_METRICS)}, "
        "dice:<class>, iou:<class> or default."
    )
