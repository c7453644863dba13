"""Synthetic multi-view data for the tests: multi-modal manifests and volumes (npz, NIfTI)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

MODALITIES = ("t1", "t2", "flair")


def write_multimodal_manifest(
    root: Path,
    *,
    per_class: dict[str, int] | None = None,
    signal: str = "t2",
    missing: float = 0.2,
    size: int = 24,
    seed: int = 0,
) -> Path:
    """A ``modality:`` manifest of two classes where only ``signal``'s brightness depends on the class.

    The other modalities have class-independent random brightness and are missing with probability
    ``missing`` (the signal modality is always present).
    """
    per_class = per_class or {"train": 24, "val": 8, "test": 24}
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for split, n in per_class.items():
        for cls in range(2):
            for i in range(n):
                sid = f"{split}-{cls}-{i:03d}"
                row = {"id": sid, "label": ("healthy", "tumour")[cls], "split": split, "patient": f"p{sid}"}
                for m in MODALITIES:
                    if m != signal and rng.random() < missing:
                        row[f"modality:{m}"] = ""
                        continue
                    base = (60 + 120 * cls) if m == signal else rng.uniform(40, 200)
                    a = np.clip(rng.normal(base, 15, size=(size, size)), 0, 255).astype(np.uint8)
                    name = f"{sid}_{m}.png"
                    Image.fromarray(a).save(root / name)
                    row[f"modality:{m}"] = name
                lines.append(row)
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)
    return manifest


def volume(depth: int, size: int, *, level: float, seed: int) -> np.ndarray:
    """(depth, size, size) uint8 noise around ``level``, with slice k offset by 2k (slices differ)."""
    rng = np.random.default_rng(seed)
    ramp = 2.0 * np.arange(depth)[:, None, None]
    return np.clip(rng.normal(level, 10, size=(depth, size, size)) + ramp, 0, 255).astype(np.uint8)
