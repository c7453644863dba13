"""Every registered family: built from config with random weights (no download), poolings and documented facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from probe.backbones import load_backbone, models_markdown, registered_backbones
from probe.backbones._registry import BackboneSpec

REPO = Path(__file__).resolve().parents[2]
SPECS = registered_backbones()
TINY_VIT = {"depth": 4, "embed_dim": 32, "num_heads": 2}
TINY_OPEN_CLIP = {"embed_dim": 16, "layers": 4, "width": 32, "head_width": 16, "patch_size": 8}
#: (model_args, image_size) by name prefix: the family's own architecture, shrunk (depth, width).
TINY: dict[str, tuple[dict[str, Any] | None, int]] = {
    "efficientnet_lite0": (None, 64),
    "sam_": ({"depth": 2, "embed_dim": 32, "num_heads": 2, "global_attn_indexes": (1,), "neck_chans": 16}, 64),
    "sam2_hiera": ({"embed_dim": 16, "num_heads": 1, "stages": (1, 1, 2, 1), "global_att_blocks": (3,)}, 64),
    "mambaout": ({"depths": (1, 1, 1, 1), "dims": (8, 16, 24, 32)}, 64),
    "clip_": (TINY_OPEN_CLIP, 32),
    "coca_": ({**TINY_OPEN_CLIP, "attn_pooler_heads": 2, "attn_pooler_queries": 4}, 32),
    # the same open_clip TimmModel tower (class-token pooling, bias-free linear projection) on timm's
    # small test ViT; the full ViT-B/16 architecture is checked on the meta device below
    "biomedclip": ({"timm_model_name": "test_vit", "embed_dim": 16}, 64),
    "rad_dino": ({"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2}, 56),
}


def _tiny(name: str) -> tuple[dict[str, Any] | None, int]:
    for prefix, value in TINY.items():
        if name.startswith(prefix):
            return value
    return TINY_VIT, 56  # plain ViTs: DINOv2, MAE, AIMv2, EVA-02


@pytest.mark.parametrize("name", list(SPECS))
def test_family_builds_from_config_and_pools(name: str) -> None:
    spec = SPECS[name]
    args, size = _tiny(name)
    bb = load_backbone(name, pretrained=False, model_args=args, image_size=size)
    assert set(bb.poolings) == set(spec.poolings) and bb.default_poolings == spec.default_poolings
    assert bb.preprocess.mean == pytest.approx(spec.mean) and bb.preprocess.std == pytest.approx(spec.std)
    assert bb.preprocess.image_size == size and bb.meta["license"] == spec.license
    assert bb.weights_fingerprint.startswith("sha256:")
    with torch.no_grad():
        out = bb.pooler(torch.randn(2, 3, size, size))
    pooled = {k: tuple(v.shape) for k, v in out.items() if v.ndim == 2}
    assert pooled == {k: (2, d) for k, d in bb.poolings.items()}
    grids = {k: v for k, v in out.items() if v.ndim == 4}  # patch grids (B, h, w, C) from the same forward
    assert set(grids) == set(out) - set(pooled) and set(bb.dense_poolings) <= set(grids)
    assert all(grids[k].shape[0] == 2 and grids[k].shape[3] == d for k, d in bb.dense_poolings.items())
    assert all(torch.isfinite(v).all() for v in out.values())
    if "cls" in bb.poolings:  # widths scale like the full model: cls=D, cls+mean=2D, last4=4D
        d = bb.poolings["cls"]
        assert (bb.poolings["cls+mean"], bb.poolings["last4"]) == (2 * d, 4 * d)
        torch.testing.assert_close(out["cls+mean"], torch.cat([out["cls"], out["mean"]], 1))
        torch.testing.assert_close(out["last4"][:, -d:], out["cls"])  # last block's CLS, normed


@pytest.mark.parametrize("name", list(SPECS))
def test_default_input_size_is_the_documented_one(name: str) -> None:
    args, _ = _tiny(name)
    bb = load_backbone(name, pretrained=False, model_args=args)
    assert bb.preprocess.image_size == SPECS[name].image_size


def _full_size_poolings(spec: BackboneSpec) -> dict[str, int]:
    """Pooling widths of the real, full-size architecture, built on the meta device (no memory, no init)."""
    kind, _, arg = spec.source.partition(":")
    with torch.device("meta"):
        if kind == "timm":
            import timm

            from probe.backbones._timm import timm_pooler

            return timm_pooler(timm.create_model(arg.split(".")[0], pretrained=False))[1]
        if kind == "open_clip":
            from probe.backbones._open_clip import build_open_clip_tower, open_clip_pooler

            arch, _, tag = arg.partition("@")
            tower, cfg = build_open_clip_tower(arch, tag=tag or None, pretrained=False)
            return open_clip_pooler(tower, cfg["embed_dim"])[1]
        if kind == "hf":
            from transformers import AutoConfig, AutoModel

            from probe.backbones._hf import RAD_DINO_CONFIG

            hidden = AutoModel.from_config(AutoConfig.for_model(**RAD_DINO_CONFIG)).config.hidden_size
            return {"cls": hidden, "mean": hidden, "cls+mean": 2 * hidden, "last4": 4 * hidden}
    import timm

    return {"gap": timm.create_model("efficientnet_lite0", num_classes=0).num_features}


@pytest.mark.parametrize("name", list(SPECS))
def test_documented_widths_match_the_full_architecture(name: str) -> None:
    assert _full_size_poolings(SPECS[name]) == SPECS[name].poolings


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.source.startswith("timm:")])
def test_timm_facts_match_timms_pretrained_config(name: str) -> None:
    from timm.models import get_pretrained_cfg

    spec = SPECS[name]
    cfg = get_pretrained_cfg(spec.source.removeprefix("timm:"))
    assert cfg is not None and spec.weights_id == cfg.hf_hub_id
    assert spec.mean == pytest.approx(cfg.mean) and spec.std == pytest.approx(cfg.std)
    native = cfg.input_size[-1]
    assert spec.image_size == native or (spec.family == "DINOv2" and native == 518 and spec.image_size == 224)
    if spec.family != "AIMv2":  # Apple relicensed its repositories to apple-amlr; timm's copy says apple-ascl
        assert spec.license.lower() == cfg.license


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.source.startswith("open_clip:") and "@" in s.source])
def test_open_clip_facts_match_the_pretrained_table(name: str) -> None:
    import open_clip

    arch, tag = SPECS[name].source.removeprefix("open_clip:").split("@")
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    assert cfg and SPECS[name].mean == pytest.approx(cfg["mean"]) and SPECS[name].std == pytest.approx(cfg["std"])
    assert open_clip.get_model_config(arch)["vision_cfg"]["image_size"] == SPECS[name].image_size


def test_biomedclip_tower_is_the_published_vit_b16() -> None:
    from open_clip.timm_model import TimmModel

    from probe.backbones._open_clip import BIOMEDCLIP_REPO, build_open_clip_tower

    with torch.device("meta"):
        tower, cfg = build_open_clip_tower(f"hf-hub:{BIOMEDCLIP_REPO}", tag=None, pretrained=False)
    assert isinstance(tower, TimmModel) and cfg["vision_cfg"]["timm_model_name"] == "vit_base_patch16_224"
    assert len(tower.trunk.blocks) == 12 and tower.trunk.embed_dim == 768 and tower.trunk.global_pool == "token"
    proj = tower.head.proj
    assert (proj.in_features, proj.out_features, proj.bias) == (768, 512, None)


def test_docs_table_matches_the_registry() -> None:
    docs = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    assert models_markdown() in docs, "docs/models.md is stale: paste `probe models --markdown` into it"
    assert "docs/models.md" in (REPO / "README.md").read_text(encoding="utf-8")


def test_probe_models_lists_every_family_with_its_recipe() -> None:
    import json

    from typer.testing import CliRunner

    from cli.main import app

    res = CliRunner().invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {m["name"]: m for m in json.loads(res.stdout)["models"]}
    assert list(rows) == list(SPECS)
    families = {m["family"] for m in rows.values()}
    assert {"DINOv2", "MAE", "AIMv2", "SAM", "SAM2", "CLIP", "CoCa", "EVA-02", "RAD-DINO", "BiomedCLIP"} <= families
    assert "MambaOut" in families
    for m in rows.values():
        assert m["license"] and m["weights_id"] and m["projection"] and len(m["mean"]) == 3
        assert set(m["default_poolings"]) <= set(m["poolings"])
    assert rows["clip_vitb16"]["poolings"]["proj"] == 512 and rows["biomedclip"]["license"] == "MIT"
    text = CliRunner().invoke(app, ["models"])
    assert text.exit_code == 0 and all(n in text.stdout for n in SPECS)
    assert "CC-BY-NC-4.0" in text.stdout and "apple-amlr" in text.stdout
