"""seg: manifests: 2D image/mask pairs and NIfTI volume pairs cut into slice rows, and bad masks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.errors import ConfigError, SourceError
from probe.sources import open_source
from probe.sources.segmentation import SegmentationWarning
from tests.seg_synth import CLASSES, make_seg_2d, make_seg_3d


def _manifest(root: Path, rows: list[dict[str, str]]) -> Path:
    path = root / "m.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_2d_manifest_rows_classes_groups_and_masks(tmp_path: Path) -> None:
    manifest = make_seg_2d(tmp_path, n=(4, 2, 2), side=16)
    src = open_source(f"seg:{manifest}")
    assert src.task == "segmentation" and src.classes == CLASSES and len(src) == 8
    assert src.groups is not None and src.groups[:2] == ["ptrain0", "ptrain0"]
    mask = src.load_mask(0)
    assert mask.dtype == np.uint8 and mask.shape == src.load_image(0).shape[:2]
    np.testing.assert_array_equal(mask, np.asarray(Image.open(tmp_path / "train_0_mask.png")))


def test_3d_manifest_slices_rows_by_volume(tmp_path: Path) -> None:
    manifest = make_seg_3d(tmp_path, n=(2, 1, 1), side=12, depth=5)
    src = open_source(f"seg:{manifest}")
    assert len(src) == 4 * 5 and src.ids[:2] == ["train_0.nii.gz#0", "train_0.nii.gz#1"]
    assert src.groups is not None and set(src.groups[:5]) == {"train_0.nii.gz"}  # a volume is its own patient
    assert src.load_image(2).shape == (12, 12, 3) and src.load_mask(2).shape == (12, 12)
    assert src.decode_options()["slices"] == "all"
    every = open_source(f"seg:{manifest}?slices=every:2")
    assert len(every) == 4 * 3 and every.ids[1] == "train_0.nii.gz#2"
    assert every.fingerprint() != src.fingerprint() and every.decode_options() != src.decode_options()


def test_label_volume_on_another_grid_is_resampled_by_nearest_neighbour(tmp_path: Path) -> None:
    import nibabel as nib

    vol = np.arange(4 * 4 * 2, dtype=np.float32).reshape(4, 4, 2)
    lab = np.zeros((2, 2, 1), dtype=np.uint8)
    lab[1, 1, 0] = 2
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    nib.save(nib.Nifti1Image(lab, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "l.nii.gz")  # 2 mm voxels
    manifest = _manifest(tmp_path, [{"image": "v.nii.gz", "mask": "l.nii.gz", "split": "train"}])
    src = open_source(f"seg:{manifest}")
    m = src.load_mask(0)
    assert set(np.unique(m)) <= {0, 2}  # labels stay labels: no 1 from interpolation
    assert m.shape == (4, 4)


def test_bad_masks_are_one_clear_error(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(np.full((8, 8), 300, np.uint16)).save(tmp_path / "big.png")
    cases = {
        "small.png": r"mask .*small.png is 8x6 px but its image .*a.png is 8x8; masks must have their image's size",
        "rgb.png": r"mask .*rgb.png has pixel mode RGB .*save it as an integer label map",
        "big.png": r"holds values 300..300; class indices must lie in 0..254",
    }
    for mask, message in cases.items():
        manifest = _manifest(tmp_path, [{"image": "a.png", "mask": mask, "split": "train"}])
        with pytest.raises(SourceError, match=message):
            open_source(f"seg:{manifest}")
    no_mask = _manifest(tmp_path, [{"image": "a.png", "label": "x"}])
    with pytest.raises(SourceError, match="no mask column; name one of mask, label_map"):
        open_source(f"seg:{no_mask}")
    with pytest.raises(SourceError, match=r"seg:/nonexistent.csv: file not found; pass the path of a CSV manifest"):
        open_source("seg:/nonexistent.csv")
    with pytest.raises(ConfigError, match="apply to NIfTI volumes only"):
        open_source(f"seg:{_manifest(tmp_path, [{'image': 'a.png', 'mask': 'a.png'}])}?slices=every:2")


def test_non_integer_label_volume_is_refused(tmp_path: Path) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    nib.save(nib.Nifti1Image(np.full((4, 4, 2), 0.5, np.float32), np.eye(4)), tmp_path / "l.nii.gz")
    manifest = _manifest(tmp_path, [{"image": "v.nii.gz", "mask": "l.nii.gz"}])
    with pytest.raises(SourceError, match="non-integer values"):
        open_source(f"seg:{manifest}")


def test_empty_masks_and_test_only_classes_are_warned(tmp_path: Path) -> None:
    rows = []
    for i, (split, value) in enumerate((("train", 0), ("train", 1), ("test", 2), ("test", 1))):
        Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / f"i{i}.png")
        m = np.zeros((8, 8), np.uint8)
        m[2:5, 2:5] = value
        Image.fromarray(m).save(tmp_path / f"m{i}.png")
        rows.append({"image": f"i{i}.png", "mask": f"m{i}.png", "split": split})
    manifest = _manifest(tmp_path, rows)
    with pytest.warns(SegmentationWarning) as caught:
        src = open_source(f"seg:{manifest}")
    text = " ".join(str(w.message) for w in caught)
    assert "1 mask(s) hold background only" in text and "class(es) class_2 appear only in the test split" in text
    assert src.classes == ("background", "class_1", "class_2")
    assert src.describe()["mask_flags"] == ["empty-masks", "classes-only-in-test"]  # stored, then on every row
