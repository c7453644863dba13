"""``probe.sources.check``: planted patient leaks and duplicates are caught, a clean set passes, real MedMNIST."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.sources.check import check_data, pixel_digest
from tests.conftest import write_image_folder


def write_set(root: Path, *, leak_patient: bool = False, copy: str = "") -> Path:
    """A csv manifest over 24 small PNGs: 2 classes, 12 patients (2 images each), train/val/test by patient.

    Args:
        leak_patient: put one image of patient ``cyst-p0`` (a train patient) in test.
        copy: ``"bytes"`` adds a byte-identical copy of a train image to test; ``"pixels"`` a
            re-encoded copy (same pixels, other bytes); ``"within"`` a copy inside train.
    """
    write_image_folder(root, per_class=12, splits=False, size=12)
    split_of = {0: "train", 1: "train", 2: "train", 3: "train", 4: "val", 5: "test"}
    rows = []
    for c in ("cyst", "normal"):
        for i in range(12):
            rows.append([f"{c}/{c}_{i:03d}.png", c, split_of[i // 2], f"{c}-p{i // 2}"])
    if leak_patient:
        rows[1][2] = "test"  # cyst_001 belongs to patient cyst-p0, whose other image is in train
    if copy:
        src = root / "cyst" / "cyst_002.png"
        dst = root / "extra" / "copy.png"
        dst.parent.mkdir()
        if copy == "pixels":
            Image.open(src).save(dst, compress_level=0)
        else:
            shutil.copyfile(src, dst)
        rows.append(["extra/copy.png", "cyst", "train" if copy == "within" else "test", "other-patient"])
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split", "patient"], *rows])
    return manifest


def test_clean_set_passes(tmp_path: Path) -> None:
    report = check_data(f"csv:{write_set(tmp_path / 'd')}")
    assert report.ok and report.leaks == [] and report.notes == []
    assert report.class_counts == {"train": {"cyst": 8, "normal": 8}, "val": {"cyst": 2, "normal": 2},
                                   "test": {"cyst": 2, "normal": 2}}  # fmt: skip
    assert report.n_groups == 12 and report.checked == ["groups", "bytes", "pixels"]


def test_planted_patient_leak_is_caught(tmp_path: Path) -> None:
    report = check_data(f"csv:{write_set(tmp_path / 'd', leak_patient=True)}", pixels=False)
    assert not report.ok
    assert report.leaks == ["patient 'cyst-p0' is in train (1 sample), test (1 sample)"]
    assert report.checked == ["groups", "bytes"]


@pytest.mark.parametrize("kind", ["bytes", "pixels"])
def test_planted_duplicate_is_caught(tmp_path: Path, kind: str) -> None:
    report = check_data(f"csv:{write_set(tmp_path / 'd', copy=kind)}")
    assert not report.ok
    cross = [d for d in report.duplicates if d.cross_split]
    assert {d.kind for d in cross} == ({"bytes", "pixels"} if kind == "bytes" else {"pixels"})
    for d in cross:
        assert d.ids == ["cyst/cyst_002.png", "extra/copy.png"] and d.splits == ["train", "test"]
    assert any("identical decoded pixels across splits: 'cyst/cyst_002.png' (train)" in line for line in report.leaks)


def test_duplicate_within_a_split_is_a_note(tmp_path: Path) -> None:
    report = check_data(f"csv:{write_set(tmp_path / 'd', copy='within')}")
    assert report.ok and len(report.notes) == 2  # bytes and pixels, both inside train
    assert all("within one split" in n for n in report.notes)


def test_probe_made_splits_are_leak_free(tmp_path: Path) -> None:
    manifest = write_set(tmp_path / "d", leak_patient=True)
    text = manifest.read_text().replace(",train,", ",,").replace(",val,", ",,").replace(",test,", ",,")
    manifest.write_text(text)  # drop every split: probe makes them
    report = check_data(f"csv:{manifest}?split=60,20,20&split_seed=1", pixels=False)
    assert report.ok and set(report.class_counts) == {"train", "val", "test"}


def test_pixel_digest_sees_dtype_and_shape() -> None:
    a = np.zeros((2, 3, 3), np.uint8)
    assert pixel_digest(a) == pixel_digest(a.copy())
    assert pixel_digest(a) != pixel_digest(a.astype(np.float32))
    assert pixel_digest(a) != pixel_digest(np.zeros((3, 2, 3), np.uint8))


def test_real_breastmnist(medmnist_root: Path) -> None:
    """BreastMNIST (28 px) has no patient ids, and one image appears in both train and test with different labels."""
    report = check_data("medmnist:breastmnist", data_root=medmnist_root)
    assert report.n_samples == 780 and not report.has_groups and report.checked == ["pixels"]
    assert report.class_counts["train"] == {"malignant": 147, "normal, benign": 399}
    cross = [d for d in report.duplicates if d.cross_split]
    assert [(d.ids, d.splits) for d in cross] == [(["train/000115", "test/000076"], ["train", "test"])]
    assert not report.ok and any("patient leakage cannot be checked" in n for n in report.notes)


def test_volume_duplicates_are_found_over_all_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from probe.sources.medmnist import medmnist_info

    rng = np.random.default_rng(0)
    vols = {s: rng.integers(0, 255, size=(3, 28, 28, 28), dtype=np.uint8) for s in ("train", "val", "test")}
    vols["test"][1] = vols["train"][2]  # the same volume in train and test
    vols["val"][0, 3] = vols["train"][0, 3]  # one equal slice only: not a duplicate volume
    arrays = {f"{s}_images": v for s, v in vols.items()}
    arrays |= {f"{s}_labels": np.zeros((3, 1), np.uint8) for s in vols}
    np.savez(tmp_path / "adrenalmnist3d.npz", **arrays)
    md5 = hashlib.md5((tmp_path / "adrenalmnist3d.npz").read_bytes()).hexdigest()
    monkeypatch.setitem(medmnist_info()["adrenalmnist3d"]["md5"], "28", md5)
    report = check_data("medmnist:adrenalmnist3d", data_root=tmp_path)
    cross = [d for d in report.duplicates if d.cross_split]
    assert len(cross) == 1 and len(report.leaks) == 1
