"""open_clip towers: poolings before/after the projection, weights files, offline errors; MambaOut and RAD-DINO."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from probe.backbones import load_backbone
from probe.errors import ConfigError, UnknownBackboneError, WeightsError

TINY_CLIP = {"embed_dim": 16, "layers": 4, "width": 32, "head_width": 16, "patch_size": 8}
TINY_COCA = {**TINY_CLIP, "attn_pooler_heads": 2, "attn_pooler_queries": 4}
x32 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_clip_proj_is_the_projected_class_token() -> None:
    bb = load_backbone("clip_vitb16", pretrained=False, model_args=TINY_CLIP, image_size=32)
    tower = bb.pooler.tower
    with torch.no_grad():
        out = bb.pooler(x32)
        tokens = tower.transformer(tower._embeds(x32))
    torch.testing.assert_close(out["proj"], out["cls"] @ tower.proj)
    torch.testing.assert_close(out["proj"], tower(x32))  # open_clip's own image embedding
    torch.testing.assert_close(out["mean"], tower.ln_post(tokens)[:, 1:].mean(1))
    assert type(tower.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"  # OpenAI weights need it


def test_coca_attn_is_the_pooled_token_before_the_projection() -> None:
    bb = load_backbone("coca_vitb32", pretrained=False, model_args=TINY_COCA, image_size=32)
    tower = bb.pooler.tower
    with torch.no_grad():
        out = bb.pooler(x32)
        tokens = tower.transformer(tower._embeds(x32))
    torch.testing.assert_close(out["proj"], out["attn"] @ tower.proj)
    torch.testing.assert_close(out["proj"], tower(x32)[0])
    torch.testing.assert_close(out["cls"], tower.attn_pool.ln_k(tokens)[:, 0])  # CoCa's own token norm


def test_biomedclip_proj_is_the_linear_projection_of_cls() -> None:
    bb = load_backbone("biomedclip", pretrained=False, model_args={"timm_model_name": "test_vit"}, image_size=64)
    head = bb.pooler.head
    with torch.no_grad():
        out = bb.pooler(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(out["proj"], head.proj(out["cls"]))
    assert bb.poolings["proj"] == 512 and "timm" in bb.meta["library"] and "open_clip" in bb.meta["library"]


def _save_clip_checkpoint(path: Path, *, image_size: int, seed: int) -> dict[str, torch.Tensor]:
    """A full-CLIP-style checkpoint: ``visual.*`` keys plus a text key that must be ignored."""
    from open_clip.model import _build_vision_tower

    torch.manual_seed(seed)
    tower = _build_vision_tower(
        16, {"layers": 4, "width": 32, "head_width": 16, "patch_size": 8, "image_size": image_size}
    )
    state = {f"visual.{k}": v for k, v in tower.state_dict().items()}
    torch.save({"state_dict": {**state, "text_projection": torch.zeros(3, 3)}}, path)
    return state


def test_weights_file_loads_the_visual_keys_and_resamples_positions(tmp_path: Path) -> None:
    state = _save_clip_checkpoint(tmp_path / "clip.pt", image_size=32, seed=3)
    random = load_backbone("clip_vitb16", pretrained=False, model_args=TINY_CLIP, image_size=32)
    loaded = load_backbone("clip_vitb16", weights=str(tmp_path / "clip.pt"), model_args=TINY_CLIP, image_size=32)
    assert loaded.weights_fingerprint != random.weights_fingerprint
    torch.testing.assert_close(loaded.pooler.tower.proj, state["visual.proj"])
    bigger = load_backbone("clip_vitb16", weights=str(tmp_path / "clip.pt"), model_args=TINY_CLIP, image_size=48)
    assert bigger.pooler.tower.positional_embedding.shape == (1 + 6 * 6, 32)  # 4x4 grid resampled to 6x6
    with torch.no_grad():
        assert bigger.pooler(torch.randn(1, 3, 48, 48))["proj"].shape == (1, 16)


def test_weights_file_of_another_architecture_is_refused(tmp_path: Path) -> None:
    _save_clip_checkpoint(tmp_path / "clip.pt", image_size=32, seed=3)
    wide = {**TINY_CLIP, "width": 64}
    with pytest.raises(WeightsError, match=r"BackboneRequest\(weights=.*clip.pt\): weights do not fit"):
        load_backbone("clip_vitb16", weights=str(tmp_path / "clip.pt"), model_args=wide, image_size=32)


def test_offline_downloads_fail_with_the_fix() -> None:
    with pytest.raises(WeightsError, match=r"open_clip:ViT-B-16@openai.*BackboneRequest\(weights=FILE\)"):
        load_backbone("clip_vitb16")
    with pytest.raises(WeightsError, match=r"BiomedCLIP.*BackboneRequest\(weights=FILE\)"):
        load_backbone("biomedclip")


def test_open_clip_prefix_names_are_checked() -> None:
    with pytest.raises(UnknownBackboneError, match=r"open_clip has no model 'ViT-B-61'.*did you mean"):
        load_backbone("open_clip:ViT-B-61@openai")
    with pytest.raises(UnknownBackboneError, match=r"no pretrained tag 'nope'; use one of .*openai"):
        load_backbone("open_clip:ViT-B-16@nope")
    with pytest.raises(ConfigError, match=r"needs a pretrained tag: open_clip:ViT-B-16@<tag>"):
        load_backbone("open_clip:ViT-B-16")
    with pytest.raises(UnknownBackboneError, match=r"no config written in probe"):
        load_backbone("open_clip:hf-hub:someone/some-clip", pretrained=False)
    with pytest.raises(ConfigError, match=r"model_args \['depth'\] are not open_clip vision settings"):
        load_backbone("open_clip:ViT-B-16@openai", pretrained=False, model_args={"depth": 2})
    bb = load_backbone("open_clip:ViT-B-16@openai", pretrained=False, model_args=TINY_CLIP, image_size=32)
    assert bb.name == "open_clip:ViT-B-16@openai" and bb.poolings["proj"] == 16


def test_mambaout_poolings_before_and_after_the_head_mlp() -> None:
    bb = load_backbone("mambaout_femto", pretrained=False, model_args={"depths": (1, 1, 1, 1), "dims": (8, 16, 24, 32)})
    model = bb.pooler.model
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = bb.pooler(x)
        feats = model.forward_features(x)
        torch.testing.assert_close(out["gap"], model.forward_head(feats, pre_logits=True))  # timm's pre-logits
        torch.testing.assert_close(out["gap_trunk"], model.head.norm(feats.mean((1, 2))))


def test_rad_dino_builds_offline_from_the_written_recipe(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    tiny = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2}
    bb = load_backbone("rad_dino", pretrained=False, model_args=tiny, image_size=56)
    assert bb.preprocess.mean == (0.5307,) * 3 and bb.preprocess.std == (0.2583,) * 3
    assert bb.meta["source"] == "hf:microsoft/rad-dino" and bb.meta["weights"] == "random"
    state = {k: v + 1.0 for k, v in bb.pooler.model.state_dict().items()}
    save_file(state, str(tmp_path / "rad.safetensors"))
    loaded = load_backbone("rad_dino", weights=str(tmp_path / "rad.safetensors"), model_args=tiny, image_size=56)
    assert loaded.weights_fingerprint != bb.weights_fingerprint
    torch.testing.assert_close(loaded.pooler.model.state_dict()["layernorm.weight"], state["layernorm.weight"])
