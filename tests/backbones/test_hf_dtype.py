"""hf: models load in float32 whatever dtype their repository declares (transformers 5 would honour a bf16 config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from probe.backbones._hf import build_hf, float32_kwargs

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture
def bf16_repo(tmp_path: Path) -> Path:
    """A local hub-style repository of a tiny DINOv2 whose config and weights are bf16."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(**TINY, image_size=28, patch_size=14)).to(torch.bfloat16)
    model.config.dtype = "bfloat16"  # what a repository saved in bf16 declares
    repo = tmp_path / "tiny-bf16"
    model.save_pretrained(repo)
    processor = {
        "image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": 28},
        "do_center_crop": True, "crop_size": {"height": 28, "width": 28}, "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_rescale": True,
    }  # fmt: skip
    (repo / "preprocessor_config.json").write_text(json.dumps(processor))
    assert "bfloat16" in (repo / "config.json").read_text()
    return repo


@pytest.mark.parametrize("pretrained", [True, False])
def test_hf_model_loads_in_float32(bf16_repo: Path, pretrained: bool) -> None:
    bb = build_hf(str(bf16_repo), pretrained=pretrained)
    dtypes = {p.dtype for p in bb.pooler.parameters()}
    assert dtypes == {torch.float32}


def test_float32_keyword_follows_the_transformers_version() -> None:
    import transformers

    major, minor = (int(v) for v in transformers.__version__.split(".")[:2])
    expected = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    assert float32_kwargs() == {expected: torch.float32}
