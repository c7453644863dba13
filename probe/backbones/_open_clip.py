"""open_clip adapter: the image tower of CLIP-family models (CLIP, CoCa, BiomedCLIP) as a frozen backbone.

Only the image tower is built (never the text tower), from open_clip's packaged architecture
configs, or, for hub models, from the hub's ``open_clip_config.json``; BiomedCLIP's is also written
out here, so its tower builds offline (random init, or a ``--weights`` file). Weights come from
open_clip's pretrained table (``<arch>@<tag>``) or the hub repository, and load strictly into the
tower (the ``visual.*`` keys of a full CLIP checkpoint, or a tower-only state dict).

Poolings, all from one forward pass:

* ``cls``, ``mean``, ``cls+mean``, ``last4``: transformer tokens **before the projection**. CLIP
  normalises them with its final norm ``ln_post``; CoCa applies ``ln_post`` only after its
  attentional pooler, so its tokens are taken through the pooler's own key norm ``ln_k``, the only
  norm CoCa applies to them. Timm towers (BiomedCLIP) use the timm ViT's final norm.
* ``attn`` (CoCa): the attentional pooler's first (contrastive) query after ``ln_post``, before the
  projection.
* ``proj``: the projected image embedding, **after the projection** (what CLIP compares with text).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from probe.backbones._base import Backbone, freeze, load_weights, read_state_dict, state_dict_sha256
from probe.backbones._pooling import TimmViTPooler, _token_poolings, vit_pooling_dims
from probe.backbones._preprocess import PreprocessConfig
from probe.backbones._timm import RANDOM_INIT_SEED
from probe.errors import ConfigError, UnknownBackboneError, WeightsError

HF_HUB_PREFIX = "hf-hub:"
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BIOMEDCLIP_REPO = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
#: The image half of BiomedCLIP's published ``open_clip_config.json``: timm's ViT-B/16 at 224 px with
#: the timm default (class-token) pooling and a bias-free linear projection to 512; CLIP mean/std.
BIOMEDCLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 512,
    "vision_cfg": {
        "timm_model_name": "vit_base_patch16_224",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "image_size": 224,
    },
    "preprocess_cfg": {"mean": list(OPENAI_CLIP_MEAN), "std": list(OPENAI_CLIP_STD)},
}
#: Hub models whose image-tower config is written here, so they build without the network.
WRITTEN_HUB_CONFIGS: dict[str, dict[str, Any]] = {BIOMEDCLIP_REPO: BIOMEDCLIP_CONFIG}


def _check_package_arch(arch: str, tag: str | None) -> None:
    import open_clip

    if arch not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownBackboneError(f"open_clip has no model {arch!r}; {hint}see open_clip.list_models()")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag is not None and tag not in tags:
        raise UnknownBackboneError(
            f"open_clip:{arch} has no pretrained tag {tag!r}; use one of {', '.join(tags) or '(none)'}"
        )


def _hub_file(repo: str, filename: str) -> str:
    from huggingface_hub import hf_hub_download

    return str(hf_hub_download(repo_id=repo, filename=filename))


def resolve_open_clip_config(arch: str, tag: str | None, *, from_hub: bool) -> dict[str, Any]:
    """The model config (``embed_dim``, ``vision_cfg``, ``quick_gelu``, ``preprocess_cfg``) of an open_clip model.

    Args:
        arch: an open_clip architecture name (``"ViT-B-16"``) or ``"hf-hub:<repo>"``.
        tag: the pretrained tag of a package architecture (``"openai"``), or None.
        from_hub: read a hub model's ``open_clip_config.json`` from the hub (pretrained weights);
            otherwise use the config written here (offline).

    Raises:
        UnknownBackboneError: unknown architecture or tag, or a hub model with no written config offline.
        WeightsError: the hub config cannot be downloaded.
    """
    import open_clip

    if arch.startswith(HF_HUB_PREFIX):
        repo = arch[len(HF_HUB_PREFIX) :]
        if not from_hub:
            if repo not in WRITTEN_HUB_CONFIGS:
                raise UnknownBackboneError(
                    f"open_clip:{arch} has no config written in probe, so it needs the hub; "
                    f"drop BackboneRequest(pretrained=False) and BackboneRequest(weights=FILE), "
                    f"or use one of: {', '.join(WRITTEN_HUB_CONFIGS)}"
                )
            return json.loads(json.dumps(WRITTEN_HUB_CONFIGS[repo]))  # a deep copy
        try:
            with open(_hub_file(repo, "open_clip_config.json"), encoding="utf-8") as f:
                published = json.load(f)
        except Exception as exc:
            raise WeightsError(
                f"could not download open_clip_config.json of {repo} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); check the repository id, or without "
                "network pass BackboneRequest(weights=FILE) (the repository's open_clip_pytorch_model.bin)"
            ) from None
        cfg = dict(published["model_cfg"])
        cfg["preprocess_cfg"] = published.get("preprocess_cfg", {})
        return cfg
    _check_package_arch(arch, tag)
    cfg = dict(open_clip.get_model_config(arch))
    pre = dict(cfg.get("preprocess_cfg") or {})
    if tag is not None:
        pcfg = open_clip.get_pretrained_cfg(arch, tag)
        pre.update({k: pcfg[k] for k in ("mean", "std", "interpolation") if k in pcfg})
        cfg["quick_gelu"] = bool(cfg.get("quick_gelu") or pcfg.get("quick_gelu"))
    cfg["preprocess_cfg"] = pre
    return cfg


def _weights_path(arch: str, tag: str | None) -> str:
    """Download (or find in the local cache) the checkpoint of a pretrained open_clip model."""
    import open_clip
    from open_clip.pretrained import download_pretrained, download_pretrained_from_hf

    try:
        if arch.startswith(HF_HUB_PREFIX):
            return str(download_pretrained_from_hf(arch[len(HF_HUB_PREFIX) :]))
        if tag is None:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "(none)"
            raise ConfigError(f"open_clip:{arch} needs a pretrained tag: open_clip:{arch}@<tag> with a tag of {tags}")
        return str(download_pretrained(open_clip.get_pretrained_cfg(arch, tag)))
    except ConfigError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        where = arch if tag is None else f"{arch}@{tag}"
        raise WeightsError(
            f"could not load pretrained weights for open_clip:{where} ({type(exc).__name__}: {first}); "
            "without network access download them elsewhere and pass BackboneRequest(weights=FILE) "
            "(.safetensors or .pth)"
        ) from None


def _vision_cfg(cfg: Mapping[str, Any], model_args: Mapping[str, Any] | None) -> tuple[int, dict[str, Any]]:
    """(embed_dim, vision_cfg) with ``model_args`` applied (``embed_dim`` or any ``CLIPVisionCfg`` field)."""
    import dataclasses

    from open_clip.model import CLIPVisionCfg

    fields = {f.name for f in dataclasses.fields(CLIPVisionCfg)}
    args = dict(model_args or {})
    embed_dim = int(args.pop("embed_dim", cfg["embed_dim"]))
    bad = sorted(set(args) - fields)
    if bad:
        raise ConfigError(f"model_args {bad} are not open_clip vision settings; use embed_dim or {sorted(fields)}")
    return embed_dim, {**cfg["vision_cfg"], **args}


def _load_tower_state(tower: nn.Module, path: str, *, origin: str) -> None:
    """Load the ``visual.*`` keys of a full checkpoint (or a tower-only state dict), resampling positions."""
    from types import SimpleNamespace

    from open_clip.model import resize_pos_embed

    state = read_state_dict(path)
    if any(k.startswith("visual.") for k in state):
        state = {k: v for k, v in state.items() if k.startswith("visual.")}
    else:
        state = {f"visual.{k}": v for k, v in state.items()}
    if hasattr(tower, "grid_size"):  # open_clip ViT built at another --image-size
        resize_pos_embed(state, SimpleNamespace(visual=tower))
    load_weights(tower, {k.removeprefix("visual."): v for k, v in state.items()}, origin=origin)


def build_open_clip_tower(
    arch: str,
    *,
    tag: str | None,
    pretrained: bool,
    weights: str | None = None,
    image_size: int | None = None,
    model_args: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build (and load) the image tower of an open_clip model.

    Returns:
        The tower and its resolved model config (``preprocess_cfg`` included).
    """
    from open_clip.model import _build_vision_tower

    load = weights is not None or pretrained
    cfg = resolve_open_clip_config(arch, tag, from_hub=weights is None and pretrained)
    embed_dim, vcfg = _vision_cfg(cfg, model_args)
    if isinstance(vcfg.get("layers"), (list, tuple)):
        raise ConfigError(f"open_clip:{arch} has a ResNet image tower; probe supports ViT towers only")
    if isinstance(vcfg.get("attentional_pool"), str):
        raise ConfigError(f"open_clip:{arch} uses a {vcfg['attentional_pool']!r} attentional pooler; not supported")
    native = int(vcfg.get("image_size", 224))
    timm_tower = bool(vcfg.get("timm_model_name"))
    if image_size and not timm_tower:
        vcfg["image_size"] = int(image_size)  # position grid sized for the input; loaded ones are resampled
    path = weights if weights is not None else (_weights_path(arch, tag) if load else None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        tower = _build_vision_tower(embed_dim, vcfg, quick_gelu=bool(cfg.get("quick_gelu")))
    if path is not None:
        _load_tower_state(tower, path, origin=f"BackboneRequest(weights={weights})" if weights else f"open_clip:{arch}")
    target = int(image_size or native)
    if timm_tower and tuple(tower.trunk.patch_embed.img_size) != (target, target):
        tower.trunk.set_input_size(img_size=target)  # resamples the (loaded) position embedding
    cfg["vision_cfg"], cfg["embed_dim"] = vcfg, embed_dim
    return tower, cfg


class OpenClipViTPooler(nn.Module):
    """Poolings of an open_clip ``VisionTransformer`` (CLIP, CoCa): hooks on the last four blocks."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower
        attn_pool = getattr(tower, "attn_pool", None)
        self.coca = attn_pool is not None
        self.token_norm: nn.Module = attn_pool.ln_k if attn_pool is not None else tower.ln_post  # type: ignore[assignment]
        transformer: Any = tower.transformer
        self.batch_first = bool(getattr(transformer, "batch_first", True))
        self._captured: list[torch.Tensor] = []
        for block in list(transformer.resblocks)[-4:]:
            block.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self._captured.append(output if self.batch_first else output.transpose(0, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._captured = []
        embedding = self.tower(x)
        blocks, self._captured = self._captured, []
        proj = embedding[0] if isinstance(embedding, tuple) else embedding
        tokens = self.token_norm(blocks[-1])
        out = _token_poolings(tokens, blocks, self.token_norm, 1, True)
        if self.coca:
            out["attn"] = self.tower.ln_post(self.tower.attn_pool(blocks[-1]))[:, 0]  # type: ignore[operator]
        out["proj"] = proj
        return out


class OpenClipTimmPooler(nn.Module):
    """Poolings of an open_clip ``TimmModel`` tower (BiomedCLIP): timm ViT poolings plus ``proj``."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.vit = TimmViTPooler(tower.trunk)  # type: ignore[arg-type]
        self.trunk: Any = tower.trunk
        self.head: nn.Module = tower.head  # type: ignore[assignment]
        self.has_proj = len(list(self.head.children())) > 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens, out = self.vit.pool(x)
        if self.has_proj:
            out["proj"] = self.head(self.trunk.forward_head(tokens, pre_logits=True))
        return out


def open_clip_pooler(tower: nn.Module, embed_dim: int) -> tuple[nn.Module, dict[str, int], tuple[str, ...]]:
    """(pooler, pooling widths, default poolings) of an open_clip image tower (works on a ``meta`` tower)."""
    from open_clip.timm_model import TimmModel

    if isinstance(tower, TimmModel):
        from probe.backbones._timm import _is_token_model

        if not _is_token_model(tower.trunk):
            raise ConfigError(f"open_clip timm tower {type(tower.trunk).__name__} is not a ViT; not supported")
        timm_pooler = OpenClipTimmPooler(tower)
        widths = vit_pooling_dims(int(tower.trunk.embed_dim), has_cls=timm_pooler.vit.has_cls)
        if timm_pooler.has_proj:
            widths["proj"] = embed_dim
        defaults = ("cls", "mean", "proj") if timm_pooler.vit.has_cls else ("mean",)
        return timm_pooler, widths, tuple(d for d in defaults if d in widths)
    vit_pooler = OpenClipViTPooler(tower)
    transformer: Any = tower.transformer
    widths = vit_pooling_dims(int(transformer.width), has_cls=True)
    if vit_pooler.coca:
        widths["attn"] = embed_dim
    widths["proj"] = embed_dim
    return vit_pooler, widths, ("attn", "mean", "proj") if vit_pooler.coca else ("cls", "mean", "proj")


def build_open_clip(
    arch: str,
    *,
    tag: str | None = None,
    name: str | None = None,
    pretrained: bool = True,
    weights: str | None = None,
    image_size: int | None = None,
    resolution: str = "resize",
    model_args: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Backbone:
    """Build ``open_clip:<arch>[@<tag>]``: downloaded weights, a local ``weights`` file, or random init.

    Args:
        arch: open_clip architecture name, or ``"hf-hub:<repo>"``.
        tag: pretrained tag of a package architecture (required for its downloaded weights).
        model_args: tiny test configs: ``embed_dim`` and any open_clip ``CLIPVisionCfg`` field.
    """
    import open_clip

    tower, cfg = build_open_clip_tower(
        arch, tag=tag, pretrained=pretrained, weights=weights, image_size=image_size, model_args=model_args
    )
    freeze(tower)
    pooler, poolings, defaults = open_clip_pooler(tower, int(cfg["embed_dim"]))
    pre = cfg.get("preprocess_cfg") or {}
    interpolation = pre.get("interpolation", "bicubic")
    preprocess = PreprocessConfig(
        image_size=int(image_size or cfg["vision_cfg"].get("image_size", 224)),
        mean=tuple(pre.get("mean", OPENAI_CLIP_MEAN)),  # type: ignore[arg-type]
        std=tuple(pre.get("std", OPENAI_CLIP_STD)),  # type: ignore[arg-type]
        interpolation=interpolation if interpolation in ("bicubic", "bilinear", "nearest") else "bicubic",
        resolution=resolution,
    )
    where = arch if tag is None else f"{arch}@{tag}"
    library = f"open_clip {open_clip.__version__}"
    if cfg["vision_cfg"].get("timm_model_name"):
        import timm

        library += f"; timm {timm.__version__}"
    info: dict[str, Any] = {
        "source": f"open_clip:{where}",
        "weights": weights or ("pretrained" if pretrained else "random"),
        "library": library,
    }
    info.update(meta or {})
    return Backbone(
        name=name or f"open_clip:{where}",
        pooler=pooler.eval(),
        preprocess=preprocess,
        poolings=poolings,
        default_poolings=defaults,
        weights_fingerprint=state_dict_sha256(tower),
        meta=info,
    )
