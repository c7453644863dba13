"""Shared fixtures: the real MedMNIST folder, synthetic image folders and tiny weights files."""

from __future__ import annotations

import os
from pathlib import Path

# Tests never download: huggingface_hub reads this once, at import, so it is set before anything
# imports timm or transformers.
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MEDMNIST = Path(os.environ.get("PROBE_DATA_ROOT") or REPO.parent / "shared" / "data" / "medmnist")


@pytest.fixture
def medmnist_root() -> Path:
    """The official MedMNIST files beside the repo; tests using it skip cleanly when absent."""
    if not (MEDMNIST / "breastmnist.npz").is_file():
        pytest.skip(f"MedMNIST files not found in {MEDMNIST}")
    return MEDMNIST


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test downloads, touches the user's cache, or reads a caller's data root by accident."""
    monkeypatch.setenv("PROBE_OFFLINE", "1")
    monkeypatch.setenv("PROBE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBE_DATA_ROOT", raising=False)
    monkeypatch.delenv("PROBE_STORE_ROOT", raising=False)


def write_image_folder(root: Path, *, per_class: int = 6, size: int = 24, splits: bool = True, seed: int = 0) -> Path:
    """ImageFolder of two classes whose mean brightness differs (so features carry signal)."""
    rng = np.random.default_rng(seed)
    split_names = ("train", "val", "test") if splits else ("",)
    for split in split_names:
        for ci, cls in enumerate(("cyst", "normal")):
            d = root / split / cls if split else root / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                base = 60 + 120 * ci
                a = np.clip(rng.normal(base, 20, size=(size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{cls}_{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "imgs")


@pytest.fixture(scope="session")
def tiny_vit_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dict for timm's ``test_vit`` saved as .safetensors (the air-gapped --weights path)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = timm.create_model("test_vit", pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "test_vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path
