"""Tests of probe.metrics.segmentation against per-image NumPy loops and brute-force distances."""

from __future__ import annotations

import time

import numpy as np
import pytest

from probe.errors import MetricError
from probe.metrics.segmentation import (
    IGNORE_INDEX,
    SEG_METRICS,
    SegCounts,
    bootstrap_seg_ci,
    compute_seg_metrics,
    is_seg_metric,
    resolve_seg_metrics,
    seg_counts,
    seg_metric_direction,
    seg_metric_label,
    seg_metric_range,
)

CLASSES = ("background", "liver", "kidney", "spleen")
K = len(CLASSES)
ALL = ("dice", "iou", "dice:liver", "dice:kidney", "dice:spleen", "iou:liver", "iou:kidney", "iou:spleen")


def _maps(n: int, size: int, seed: int, *, k: int = K, ignore: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Truth made of blocky regions with ignore pixels; a prediction that is right ~70% of the time."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, k, (n, size // 4 + 1, size // 4 + 1))
    yt = np.kron(coarse, np.ones((4, 4), dtype=np.int64))[:, :size, :size].astype(np.uint8)
    yp = np.where(rng.random(yt.shape) < 0.7, yt, rng.integers(0, k, yt.shape)).astype(np.uint8)
    yt[rng.random(yt.shape) < ignore] = IGNORE_INDEX
    return yt, yp


def _ref_scores(yt: np.ndarray, yp: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, k-1) Dice and IoU by per-image loops, NaN where the class is in neither map."""
    dice, iou = np.full((len(yt), k - 1), np.nan), np.full((len(yt), k - 1), np.nan)
    for i in range(len(yt)):
        valid = yt[i] != IGNORE_INDEX
        for c in range(1, k):
            t, p = (yt[i] == c) & valid, (yp[i] == c) & valid
            inter, total = np.sum(t & p), np.sum(t) + np.sum(p)
            if total:
                dice[i, c - 1] = 2 * inter / total
                iou[i, c - 1] = inter / np.sum(t | p)
    return dice, iou


def _ref_summary(scores: np.ndarray, classes: tuple[str, ...], kind: str) -> dict[str, float]:
    per = [float(np.mean(col[~np.isnan(col)])) if (~np.isnan(col)).any() else np.nan for col in scores.T]
    defined = [v for v in per if not np.isnan(v)]
    out = {kind: float(np.mean(defined)) if defined else np.nan}
    return out | {f"{kind}:{c}": v for c, v in zip(classes[1:], per, strict=True)}


def _boundary(mask: np.ndarray) -> np.ndarray:
    """(m, 2) coordinates of mask pixels with a 4-neighbour outside the mask or the image."""
    padded = np.pad(mask, 1)
    pts = []
    for r, c in zip(*np.nonzero(mask), strict=True):
        if not (padded[r, c + 1] and padded[r + 2, c + 1] and padded[r + 1, c] and padded[r + 1, c + 2]):
            pts.append((r, c))
    return np.array(pts, dtype=np.float64)


def _ref_hd95(a: np.ndarray, b: np.ndarray) -> float:
    ea, eb = _boundary(a), _boundary(b)
    d = np.sqrt(((ea[:, None, :] - eb[None, :, :]) ** 2).sum(axis=2))
    return float(np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), 95))


YT, YP = _maps(30, 16, 0)


# ---------------------------------------------------------------------------------------------------
# counts and point values


def test_seg_counts_match_loops_and_sum_per_unit() -> None:
    units = np.repeat([7, 3, 5], 10)
    counts = seg_counts(YT, YP, n_classes=K, units=units)
    assert isinstance(counts, SegCounts)
    assert counts.inter.shape == counts.pred.shape == counts.true.shape == (30, K)
    assert counts.inter.dtype == np.int64
    for i in (0, 17):
        valid = YT[i] != IGNORE_INDEX
        for c in range(K):
            assert counts.inter[i, c] == np.sum((YT[i] == c) & (YP[i] == c) & valid)
            assert counts.pred[i, c] == np.sum((YP[i] == c) & valid)
            assert counts.true[i, c] == np.sum(YT[i] == c)
    vol = counts.by_unit()
    assert vol.n_units == 3 and vol.true.shape == (3, K)
    np.testing.assert_array_equal(vol.unit_ids, [3, 5, 7])
    np.testing.assert_array_equal(vol.inter[0], counts.inter[10:20].sum(axis=0))  # unit 3 holds images 10..19
    np.testing.assert_array_equal(seg_counts(YT, YP, n_classes=K).unit, np.arange(30))


def test_seg_counts_in_blocks_equal_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = seg_counts(YT, YP, n_classes=K)
    monkeypatch.setattr("probe.metrics.segmentation._PIXEL_BLOCK", 16 * 16 * 7)
    blocked = seg_counts(YT, YP, n_classes=K)
    for a, b in ((whole.inter, blocked.inter), (whole.pred, blocked.pred), (whole.true, blocked.true)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", [1, 2])
def test_dice_and_iou_equal_numpy_reference(seed: int) -> None:
    yt, yp = _maps(12, 12, seed, ignore=0.2)
    yt[3][yt[3] == 2] = 0  # class 2 absent from image 3's truth ...
    yp[3][yp[3] == 2] = 0  # ... and prediction: that image is left out of class 2's mean
    got = compute_seg_metrics(yt, yp.astype(np.int64), n_classes=K, classes=CLASSES, metrics=ALL)
    dice, iou = _ref_scores(yt, yp, K)
    assert np.isnan(dice[3, 1])
    want = _ref_summary(dice, CLASSES, "dice") | _ref_summary(iou, CLASSES, "iou")
    assert set(got) == set(ALL)
    for name in ALL:
        assert got[name] == pytest.approx(want[name], rel=1e-12), name


def test_empty_classes() -> None:
    yt = np.zeros((2, 4, 4), dtype=np.uint8)
    yp = np.zeros((2, 4, 4), dtype=np.uint8)
    yt[0, :2, :2] = yp[0, :2, :2] = 1  # liver perfect on image 0, absent from both maps of image 1
    yp[1, 0, 0] = 2  # kidney predicted on image 1 but in no truth: Dice 0 there, absent from image 0
    got = compute_seg_metrics(yt, yp, n_classes=K, classes=CLASSES, metrics=(*ALL, "hd95"))
    assert got["dice:liver"] == 1.0 and got["iou:liver"] == 1.0
    assert got["dice:kidney"] == 0.0 and got["iou:kidney"] == 0.0
    assert np.isnan(got["dice:spleen"]) and np.isnan(got["iou:spleen"])
    assert got["dice"] == 0.5  # mean over liver and kidney; spleen is defined nowhere
    assert got["hd95"] == 0.0  # kidney is in one map only: excluded, not infinite
    nothing = compute_seg_metrics(yt[:1] * 0, yp[:1] * 0, n_classes=K, classes=CLASSES, metrics=("dice", "hd95"))
    assert np.isnan(nothing["dice"]) and np.isnan(nothing["hd95"])


def test_ignored_pixels_count_for_nothing() -> None:
    yt = np.full((1, 4, 4), IGNORE_INDEX, dtype=np.uint8)
    yt[0, 0, :2] = 1
    yp = np.full((1, 4, 4), 1, dtype=np.uint8)  # liver everywhere, wrong only under ignore
    got = compute_seg_metrics(yt, yp, n_classes=K, classes=CLASSES, metrics=("dice:liver", "hd95"))
    assert got == {"dice:liver": 1.0, "hd95": 0.0}


def test_volume_dice_is_dice_of_stacked_slices() -> None:
    units = np.array([2, 0, 2, 1, 0, 2, 1, 1, 0, 2] * 3)
    got = compute_seg_metrics(YT, YP, n_classes=K, classes=CLASSES, metrics=("volume_dice", "dice"), units=units)
    yt = [np.concatenate(YT[units == u]) for u in (0, 1, 2)]  # each volume as one tall image
    yp = [np.concatenate(YP[units == u]) for u in (0, 1, 2)]
    dice, _ = _ref_scores(yt, yp, K)  # type: ignore[arg-type]
    assert got["volume_dice"] == pytest.approx(_ref_summary(dice, CLASSES, "dice")["dice"], rel=1e-12)
    assert got["dice"] == pytest.approx(
        compute_seg_metrics(YT, YP, n_classes=K, classes=CLASSES, metrics="dice")["dice"]
    )


# ---------------------------------------------------------------------------------------------------
# HD95


def test_hd95_of_squares_offset_by_two_pixels() -> None:
    yt = np.zeros((1, 12, 12), dtype=np.uint8)
    yp = np.zeros_like(yt)
    yt[0, 2:8, 2:8] = 1
    yp[0, 2:8, 4:10] = 1  # the same square 2 px to the right: no boundary point is farther than 2
    got = compute_seg_metrics(yt, yp, n_classes=2, classes=("bg", "fg"), metrics=("hd95",))
    assert got["hd95"] == 2.0  # the 6 left-edge truth pixels (and 6 right-edge predicted) are 2 px off
    assert compute_seg_metrics(yt, yt, n_classes=2, classes=("bg", "fg"), metrics="hd95")["hd95"] == 0.0


def test_hd95_at_the_image_edge() -> None:
    yt = np.zeros((1, 6, 6), dtype=np.uint8)
    yt[0] = 1  # the whole image: only its outer ring is boundary
    yp = np.zeros_like(yt)
    yp[0, 2:4, 2:4] = 1
    got = compute_seg_metrics(yt, yp, n_classes=2, classes=("bg", "fg"), metrics="hd95")["hd95"]
    assert got == pytest.approx(_ref_hd95(yt[0] == 1, yp[0] == 1))


@pytest.mark.parametrize("seed", [3, 4])
def test_hd95_equals_brute_force_distances(seed: int) -> None:
    rng = np.random.default_rng(seed)
    yt, yp = _maps(6, 10, seed, k=3, ignore=0.05)
    yp[0] = 0  # nothing predicted on image 0: excluded there
    yp[1, rng.random((10, 10)) < 0.5] = 2
    got = compute_seg_metrics(yt, yp, n_classes=3, classes=("bg", "a", "b"), metrics="hd95")["hd95"]
    per_class = []
    for c in (1, 2):
        vals = []
        for i in range(len(yt)):
            t, p = yt[i] == c, (yp[i] == c) & (yt[i] != IGNORE_INDEX)
            if t.any() and p.any():
                vals.append(_ref_hd95(t, p))
        per_class.append(np.mean(vals))
    assert got == pytest.approx(np.mean(per_class), rel=1e-12)


# ---------------------------------------------------------------------------------------------------
# bootstrap


def _ref_bootstrap(
    yt: np.ndarray, yp: np.ndarray, units: np.ndarray, names: tuple[str, ...], b: int, seed: int
) -> dict[str, tuple[float, float]]:
    """Resample whole units with the documented draws and recompute the metrics on each resample."""
    ids = np.unique(units)
    draws = np.random.default_rng(seed).integers(0, len(ids), (b, len(ids)))
    values: dict[str, list[float]] = {n: [] for n in names}
    for row in draws:
        rows = np.concatenate([np.flatnonzero(units == ids[j]) for j in row])
        new_units = np.concatenate([np.full(np.sum(units == ids[j]), pos) for pos, j in enumerate(row)])
        got = compute_seg_metrics(yt[rows], yp[rows], n_classes=K, classes=CLASSES, metrics=names, units=new_units)
        for n in names:
            values[n].append(got[n])
    out = {}
    for n in names:
        v = np.array(values[n])
        out[n] = tuple(np.percentile(v[~np.isnan(v)], [2.5, 97.5]))
    return out


def test_bootstrap_equals_resampling_loop() -> None:
    yt, yp = _maps(16, 8, 5)
    yt[:5][yt[:5] == 3] = 0  # spleen absent from some images: resamples where it is undefined
    units = np.repeat(np.arange(8), 2)
    names = ("dice", "iou", "dice:spleen", "volume_dice", "hd95")
    got = bootstrap_seg_ci(yt, yp, n_classes=K, classes=CLASSES, metrics=names, units=units, n_resamples=40, seed=3)
    want = _ref_bootstrap(yt, yp, units, names, 40, 3)
    for n in names:
        assert got[n] == pytest.approx(want[n], rel=1e-9), n


def test_bootstrap_is_seeded_and_covers_the_point() -> None:
    kw = {"n_classes": K, "classes": CLASSES, "metrics": (*ALL, "hd95")}
    a = bootstrap_seg_ci(YT, YP, n_resamples=200, seed=1, **kw)  # type: ignore[arg-type]
    assert a == bootstrap_seg_ci(YT, YP, n_resamples=200, seed=1, **kw)  # type: ignore[arg-type]
    assert a != bootstrap_seg_ci(YT, YP, n_resamples=200, seed=2, **kw)  # type: ignore[arg-type]
    point = compute_seg_metrics(YT, YP, **kw)  # type: ignore[arg-type]
    for name, (low, high) in a.items():
        assert low <= point[name] <= high, name
        assert low < high


def test_bootstrap_resamples_units_not_images() -> None:
    yt, yp = _maps(4, 12, 6)  # four distinct images ...
    rep_t, rep_p = np.repeat(yt, 10, axis=0), np.repeat(yp, 10, axis=0)  # ... each copied 10 times
    kw = {"n_classes": K, "classes": CLASSES, "metrics": "dice", "n_resamples": 300, "seed": 0}
    as_units = bootstrap_seg_ci(rep_t, rep_p, units=np.repeat([0, 1, 2, 3], 10), **kw)["dice"]  # type: ignore[arg-type]
    as_images = bootstrap_seg_ci(rep_t, rep_p, **kw)["dice"]  # type: ignore[arg-type]
    distinct = bootstrap_seg_ci(yt, yp, **kw)["dice"]  # type: ignore[arg-type]
    assert as_units == pytest.approx(distinct, rel=1e-12)  # 4 units of identical copies = 4 images
    assert as_units[1] - as_units[0] > 2 * (as_images[1] - as_images[0])  # 40 units: far narrower


def test_bootstrap_speed() -> None:
    yt, yp = _maps(200, 32, 7)
    kw = {"n_classes": K, "classes": CLASSES, "metrics": ALL, "n_resamples": 1000}
    times = []
    for _ in range(3):
        start = time.perf_counter()
        bootstrap_seg_ci(yt, yp, **kw)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    assert min(times) < 1.0


def test_bootstrap_errors() -> None:
    with pytest.raises(MetricError, match="level must lie in"):
        bootstrap_seg_ci(YT, YP, n_classes=K, classes=CLASSES, metrics="dice", level=95)
    with pytest.raises(MetricError, match="n_resamples must be at least 1"):
        bootstrap_seg_ci(YT, YP, n_classes=K, classes=CLASSES, metrics="dice", n_resamples=0)


# ---------------------------------------------------------------------------------------------------
# names and input errors


def test_resolve_default_and_names() -> None:
    fg = ("dice:liver", "dice:kidney", "dice:spleen")
    assert resolve_seg_metrics("default", classes=CLASSES, volumes=False) == ("dice", "iou", *fg)
    assert resolve_seg_metrics((), classes=CLASSES, volumes=True) == ("dice", "iou", *fg, "volume_dice")
    assert resolve_seg_metrics(["hd95", "iou:kidney", "hd95"], classes=CLASSES, volumes=False) == (
        "hd95",
        "iou:kidney",
    )
    assert resolve_seg_metrics(["default", "dice"], classes=CLASSES, volumes=False)[-1] == "dice:spleen"
    got = compute_seg_metrics(YT, YP, n_classes=K, classes=CLASSES, metrics=(), units=np.zeros(30, dtype=int))
    assert tuple(got) == ("dice", "iou", *fg, "volume_dice")


def test_resolve_errors() -> None:
    with pytest.raises(MetricError, match="unknown segmentation metric 'dsc'; choose from dice, iou, volume_dice"):
        resolve_seg_metrics(["dsc"], classes=CLASSES, volumes=False)
    with pytest.raises(MetricError, match="'dice:lung' names no class .*liver, kidney, spleen"):
        resolve_seg_metrics("dice:lung", classes=CLASSES, volumes=False)
    with pytest.raises(MetricError, match="'iou:background' names the background"):
        resolve_seg_metrics("iou:background", classes=CLASSES, volumes=False)
    with pytest.raises(MetricError, match="volume_dice needs volumes: pass units"):
        resolve_seg_metrics("volume_dice", classes=CLASSES, volumes=False)
    with pytest.raises(MetricError, match="volume_dice needs volumes"):
        compute_seg_metrics(YT, YP, n_classes=K, classes=CLASSES, metrics="volume_dice")


def test_labels_ranges_directions() -> None:
    assert all(is_seg_metric(n) for n in (*SEG_METRICS, "dice:liver", "iou:anything"))
    assert not is_seg_metric("accuracy") and not is_seg_metric("hd95:liver")
    assert seg_metric_label("dice") == "mean foreground Dice"
    assert seg_metric_label("dice:liver") == "Dice of liver"
    assert seg_metric_label("iou:kidney") == "IoU of kidney"
    assert seg_metric_label("volume_dice") == "volume Dice"
    assert seg_metric_label("hd95") == "HD95 (px)"
    assert seg_metric_range("iou:liver") == (0.0, 1.0) and seg_metric_range("hd95") is None
    assert seg_metric_direction("hd95") == "lower" and seg_metric_direction("volume_dice") == "higher"
    with pytest.raises(MetricError, match="unknown segmentation metric 'auroc'"):
        seg_metric_label("auroc")
    with pytest.raises(MetricError, match="unknown segmentation metric"):
        seg_metric_direction("auroc")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y_true": YT[:, :8]}, r"must both be \(n, H, W\) class maps"),
        ({"y_pred": YP.astype(np.float32)}, "y_pred must hold integer class indices; got dtype float32"),
        ({"y_true": np.where(YT == 3, 9, YT).astype(np.uint8)}, "y_true holds class 9 outside 0..3"),
        ({"y_pred": np.where(YP == 3, 4, YP)}, "y_pred holds class 4 at a labelled pixel"),
        ({"n_classes": 1}, "n_classes must be an int in 2..255"),
        ({"classes": CLASSES[:3]}, "classes must be 4 distinct names"),
        ({"classes": ("bg", "a", "a", "b")}, "classes must be 4 distinct names"),
        ({"units": np.zeros(29, dtype=int)}, r"units must be \(30,\) integers"),
    ],
)
def test_input_errors(change: dict[str, object], message: str) -> None:
    kw: dict[str, object] = {"y_true": YT, "y_pred": YP, "n_classes": K, "classes": CLASSES, "metrics": "dice"}
    with pytest.raises(MetricError, match=message):
        compute_seg_metrics(**(kw | change))  # type: ignore[arg-type]


def test_prediction_under_ignore_is_not_read() -> None:
    yp = YP.copy()
    yp[YT == IGNORE_INDEX] = 200  # garbage where the truth is unlabelled
    assert compute_seg_metrics(YT, yp, n_classes=K, classes=CLASSES, metrics=ALL) == compute_seg_metrics(
        YT, YP, n_classes=K, classes=CLASSES, metrics=ALL
    )
