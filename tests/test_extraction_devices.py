"""Extraction leaves the caller's backbone where it was; GPU-only checks (bf16 vs fp32) run with ``-m gpu``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from probe.backbones import load_backbone
from probe.extraction import ExtractConfig, extract_embeddings
from probe.sources import open_source
from probe.store import open_store


def _cfg(tmp_path: Path, **kw: Any) -> ExtractConfig:
    base: dict[str, Any] = {"store_root": str(tmp_path / "emb"), "batch_size": 8, "chunk_rows": 16}
    return ExtractConfig(**{**base, "num_workers": 0, "progress": False, **kw})


def test_the_callers_backbone_goes_back_to_its_device(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = open_source(f"folder:{image_folder}")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    moves: list[Any] = []
    to = bb.pooler.to

    def spy(*args: Any, **kw: Any) -> Any:
        moves.append(args[0] if args else kw)
        return to(*args, **kw)

    monkeypatch.setattr(bb.pooler, "to", spy)
    extract_embeddings(src, bb, _cfg(tmp_path, device="cpu"))
    assert moves == [torch.device("cpu"), torch.device("cpu")]  # to the run's device, then back where it was


@pytest.mark.gpu
def test_bf16_features_agree_with_fp32_and_the_pooler_stays_on_the_cpu(image_folder: Path, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    src = open_source(f"folder:{image_folder}")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    stores = {}
    for precision in ("fp32", "bf16"):
        res = extract_embeddings(src, bb, _cfg(tmp_path, device="cuda", precision=precision, poolings=("cls",)))
        assert res.device.startswith("cuda") and res.precision == precision
        assert {p.device.type for p in bb.pooler.parameters()} == {"cpu"}
        stores[precision] = open_store(res.store).features("cls")
    cpu = open_store(extract_embeddings(src, bb, _cfg(tmp_path, device="cpu", poolings=("cls",))).store).features("cls")
    np.testing.assert_allclose(stores["fp32"], cpu, rtol=1e-3, atol=1e-3)
    cos = (stores["bf16"] * stores["fp32"]).sum(1) / (
        np.linalg.norm(stores["bf16"], axis=1) * np.linalg.norm(stores["fp32"], axis=1)
    )
    assert cos.min() > 0.99


@pytest.mark.gpu
def test_torchrun_with_two_gpus_equals_one_process(image_folder: Path, tmp_path: Path) -> None:
    """Extraction under ``torchrun --nproc_per_node 2`` writes the features one process writes."""
    import inspect
    import os
    import subprocess
    import sys

    import probe.extraction

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA devices")
    if "LOCAL_RANK" not in inspect.getsource(probe.extraction):
        pytest.skip("extraction has no torchrun path yet (added by another issue)")
    args = ["extract", f"folder:{image_folder}", "--backbone", "timm:test_vit", "--random-weights", "--image-size",
            "32", "--batch-size", "8", "--chunk-rows", "16", "--device", "cuda", "--precision", "fp32"]  # fmt: skip
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    script = tmp_path / "probe_cli.py"
    script.write_text("import sys\nfrom cli.main import main\nsys.exit(main())\n")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    subprocess.run([sys.executable, str(script), *args, "--store", str(one)], check=True, cwd=repo, env=env)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    subprocess.run([*launcher, *args, "--store", str(two)], check=True, cwd=repo, env=env)
    np.testing.assert_allclose(open_store(str(two)).features("cls"), open_store(str(one)).features("cls"), atol=1e-5)
