"""Synthetic segmentation data for tests: discs and squares on textured backgrounds (2D PNG pairs)
and spheres in a noisy phantom (3D NIfTI pairs), each with a seg: manifest."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("background", "disc", "square")


def _scene(rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(side, side, 3) uint8 image and (side, side) uint8 label map: a bright disc and a dark square."""
    yy, xx = np.mgrid[:side, :side]
    texture = rng.normal(120, 20, (side, side)) + 15 * np.sin(xx / 3.0 + rng.uniform(0, 6))
    mask = np.zeros((side, side), dtype=np.uint8)
    r = rng.integers(side // 8, side // 4)
    cy, cx = rng.integers(r, side - r, size=2)
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    s = rng.integers(side // 6, side // 3)
    y0, x0 = rng.integers(0, side - s, size=2)
    mask[y0 : y0 + s, x0 : x0 + s] = 2
    image = texture.copy()
    image[mask == 1] = rng.normal(220, 10, int((mask == 1).sum()))
    image[mask == 2] = rng.normal(30, 10, int((mask == 2).sum()))
    gray = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2), mask


def make_seg_2d(root: Path, *, n: tuple[int, int, int] = (12, 4, 6), side: int = 32, seed: int = 0) -> Path:
    """Write train/val/test image/mask PNG pairs, ``classes.txt`` and ``manifest.csv``; return the manifest."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, count in zip(("train", "val", "test"), n, strict=True):
        for i in range(count):
            image, mask = _scene(rng, side)
            Image.fromarray(image).save(root / f"{split}_{i}.png")
            Image.fromarray(mask).save(root / f"{split}_{i}_mask.png")
            rows.append({"image": f"{split}_{i}.png", "mask": f"{split}_{i}_mask.png", "split": split,
                         "patient": f"p{split}{i // 2}"})  # fmt: skip
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mask", "split", "patient"])
        w.writeheader()
        w.writerows(rows)
    return manifest


def make_seg_3d(
    root: Path, *, n: tuple[int, int, int] = (4, 2, 2), side: int = 24, depth: int = 6, seed: int = 0
) -> Path:
    """Write NIfTI image/label volume pairs (a bright sphere and a dark box) and ``manifest.csv``."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    zz, yy, xx = np.mgrid[:depth, :side, :side]
    for split, count in zip(("train", "val", "test"), n, strict=True):
        for i in range(count):
            vol = rng.normal(100, 15, (depth, side, side)).astype(np.float32)
            lab = np.zeros((depth, side, side), dtype=np.uint8)
            r = rng.uniform(side / 6, side / 4)
            c = rng.uniform(r, side - r, size=2)
            lab[((yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r * r) & (zz >= 1) & (zz < depth - 1)] = 1
            b0 = rng.integers(0, side - side // 3, size=2)
            lab[2:4, b0[0] : b0[0] + side // 4, b0[1] : b0[1] + side // 4] = 2
            vol[lab == 1] += 120
            vol[lab == 2] -= 80
            affine = np.diag([1.0, 1.0, 1.0, 1.0])
            # (x, y, z) array order in NIfTI: put depth on axis 2 so axial slices are the default axis
            nib.save(nib.Nifti1Image(np.transpose(vol, (2, 1, 0)), affine), root / f"{split}_{i}.nii.gz")
            nib.save(nib.Nifti1Image(np.transpose(lab, (2, 1, 0)), affine), root / f"{split}_{i}_seg.nii.gz")
            rows.append({"image": f"{split}_{i}.nii.gz", "mask": f"{split}_{i}_seg.nii.gz", "split": split})
    (root / "classes.txt").write_text("background\nsphere\nbox\n")
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mask", "split"])
        w.writeheader()
        w.writerows(rows)
    return manifest
