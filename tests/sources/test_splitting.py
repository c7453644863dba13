"""Probe-made splits: seeded, group-aware, stratified; spec options; groups flowing to the store and draws."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from probe.errors import ConfigError
from probe.sources import SPLITS, open_source
from probe.sources.splitting import SplitConfig, assign_splits
from tests.conftest import write_feature_store, write_image_folder

UNSPLIT = SPLITS.index("unsplit")


def _toy(n_groups: int = 120, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Patients with 1-6 images each; class imbalanced 3:1 and constant within a patient."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for g in range(n_groups):
        cls = int(g % 4 == 0)
        k = int(rng.integers(1, 7))
        labels += [cls] * k
        groups += [f"p{g}"] * k
    return np.array(labels, np.int64), groups


def _assign(labels: np.ndarray, groups: list[str] | None, ratios=(0.7, 0.1, 0.2), seed: int = 0) -> np.ndarray:
    splits = np.full(labels.shape[0], UNSPLIT, np.int8)
    return assign_splits(labels, splits, groups, config=SplitConfig(ratios=ratios, seed=seed), n_classes=2)


def test_no_patient_in_two_splits_and_ratios_met() -> None:
    labels, groups = _toy()
    out = _assign(labels, groups)
    g = np.array(groups)
    assert all(np.unique(out[g == name]).size == 1 for name in set(groups))
    assert set(out.tolist()) == {0, 1, 2}
    frac = np.bincount(out, minlength=3) / out.size
    np.testing.assert_allclose(frac, [0.7, 0.1, 0.2], atol=0.03)
    for cls in (0, 1):  # stratified: each class split close to the ratios too
        per = np.bincount(out[labels == cls], minlength=3) / (labels == cls).sum()
        np.testing.assert_allclose(per, [0.7, 0.1, 0.2], atol=0.05)


def test_seeded_and_reproducible() -> None:
    labels, groups = _toy()
    a, b, c = _assign(labels, groups, seed=1), _assign(labels, groups, seed=1), _assign(labels, groups, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_without_groups_rows_are_units_and_zero_val() -> None:
    labels = np.array([0] * 30 + [1] * 10)
    out = _assign(labels, None, ratios=(0.8, 0.0, 0.2))
    assert 1 not in out.tolist()
    assert np.bincount(out[labels == 0], minlength=3).tolist() == [24, 0, 6]
    assert np.bincount(out[labels == 1], minlength=3).tolist() == [8, 0, 2]


def test_given_splits_are_kept_and_their_groups_follow() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    splits = np.array([2, UNSPLIT, UNSPLIT, UNSPLIT, UNSPLIT, UNSPLIT, UNSPLIT, UNSPLIT], np.int8)
    groups = ["a", "a", "b", "c", "d", "e", "f", ""]
    out = assign_splits(labels, splits, groups, config=SplitConfig(ratios=(0.5, 0.0, 0.5)), n_classes=2)
    assert out[0] == 2 and out[1] == 2  # patient a was already in test: its other image joins it
    assert UNSPLIT not in out.tolist()


def test_multilabel_targets_are_stratified() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 3)) < [0.5, 0.2, 0.05]).astype(np.int64)
    out = assign_splits(
        labels, np.full(400, UNSPLIT, np.int8), None, config=SplitConfig(ratios=(0.5, 0.0, 0.5)), n_classes=3
    )
    for c in range(3):
        pos = labels[:, c] == 1
        assert abs((out[pos] == 0).mean() - 0.5) < 0.1


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("split=70,30", "must be three non-negative"),
        ("split=0,50,50", "TRAIN and TEST > 0"),
        ("split=70,10,20&split_seed=x", "split_seed='x' must be an integer"),
        ("split_seed=1", "split_seed is given without split"),
        ("split", "is not key=value"),
        ("split=70,10,20&split=1,1,1", "given twice"),
        ("window=lung", "unknown option(s) window"),
    ],
)
def test_bad_split_options(image_folder: Path, query: str, message: str) -> None:
    flat = write_image_folder(image_folder.parent / "flat", per_class=4, splits=False)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_source(f"folder:{flat}?{query}")


def test_split_option_on_sources(tmp_path: Path) -> None:
    flat = write_image_folder(tmp_path / "flat", per_class=10, splits=False)
    src = open_source(f"folder:{flat}?split=60,20,20&split_seed=4")
    assert src.spec == f"folder:{flat}?split=0.6,0.2,0.2&split_seed=4"
    assert np.bincount(src.splits, minlength=3).tolist() == [12, 4, 4]
    assert src.fingerprint() != open_source(f"folder:{flat}?split=60,20,20&split_seed=5").fingerprint()
    np.testing.assert_array_equal(src.load_image(3), open_source(f"folder:{flat}").load_image(3))
    split_dirs = write_image_folder(tmp_path / "split", per_class=2)
    with pytest.raises(ConfigError, match="already assigns every row to a split"):
        open_source(f"folder:{split_dirs}?split=70,10,20")


def write_manifest(root: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A csv: manifest over the PNGs of a flat image folder: (path, label, split, patient) rows."""
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "split", "patient"), *rows])
    return manifest


def test_csv_groups_reach_the_store_and_splits_keep_patients_apart(tmp_path: Path) -> None:
    flat = write_image_folder(tmp_path / "flat", per_class=6, splits=False, size=16)
    rows = [(f"{c}/{c}_{i:03d}.png", c, "", f"{c}-p{i // 2}") for c in ("cyst", "normal") for i in range(6)]
    manifest = write_manifest(flat, rows)
    from probe.extraction import ExtractConfig, extract
    from probe.store import open_store

    spec = f"csv:{manifest}?split=50,0,50&split_seed=0"
    from probe.backbones import BackboneRequest

    result = extract(
        spec, backbone=BackboneRequest("timm:test_vit", pretrained=False),
        config=ExtractConfig(store_root=str(tmp_path / "emb"), progress=False),
    )  # fmt: skip
    store = open_store(result.store)
    groups = [str(g) for g in store.groups.tolist()]
    assert groups == [r[3] for r in rows]
    split = np.asarray(store.split)
    assert all(len({int(s) for s, g in zip(split, groups, strict=True) if g == name}) == 1 for name in set(groups))
    assert store.attrs["source"]["has_groups"] is True


def test_draws_from_a_store_with_groups_spread_over_patients(tmp_path: Path) -> None:
    from probe.evaluate.data import load_eval_data
    from probe.evaluate.sampling import draw_shots
    from probe.store import open_store

    rng = np.random.default_rng(0)
    n = 120
    labels = np.repeat([0, 1], n // 2)
    splits = np.array([0] * 40 + [2] * 20 + [0] * 40 + [2] * 20, np.int8)
    groups = [f"p{i // 4}" for i in range(n)]  # 4 images per patient
    path = write_feature_store(
        tmp_path / "emb", rng.normal(size=(n, 8)).astype(np.float32), labels, splits, groups=groups
    )
    data = load_eval_data(open_store(path))
    assert data.train.groups is not None
    for seed in range(5):
        d = draw_shots(data.train.ids, data.train.y, data.train.groups, shots=5, seed=seed, n_classes=2)
        for cls in (0, 1):
            picked = d.rows[data.train.y[d.rows] == cls]
            assert len(set(data.train.groups[picked].tolist())) == 5  # five shots, five patients
