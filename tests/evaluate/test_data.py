"""Store lookup: a user's source specification matches the canonical one a store recorded."""

from __future__ import annotations

from pathlib import Path

from probe.sources import same_source


def test_spec_options_match_in_any_order_and_ratio_scale(tmp_path: Path) -> None:
    d = str(tmp_path)
    stored = f"dicom:{d}?split=0.7,0.1,0.2&split_seed=0&window=lung"
    assert same_source(f"dicom:{d}/?window=lung&split=70,10,20&split_seed=0", stored)
    assert not same_source(f"dicom:{d}?window=bone&split=70,10,20&split_seed=0", stored)
    assert not same_source(f"dicom:{d}?window=lung&split=60,20,20&split_seed=0", stored)
    assert same_source(f"folder:{d}", f"folder:{d}/") and not same_source(f"folder:{d}", f"csv:{d}")
    assert same_source("medmnist:bloodmnist", "medmnist:bloodmnist@28")


def test_a_store_made_with_split_options_is_found_by_the_same_spec(tmp_path: Path) -> None:
    """``?split=60,20,20`` was stored with ``split_seed=0`` added; the probing commands must still find it."""
    from probe.backbones import BackboneRequest
    from probe.evaluate import find_store
    from probe.extraction import ExtractConfig, extract
    from probe.store import open_store
    from tests.conftest import write_image_folder

    spec = f"folder:{write_image_folder(tmp_path / 'imgs', per_class=5, splits=False)}?split=60,20,20"
    made = extract(spec, backbone=BackboneRequest("timm:test_vit", pretrained=False, image_size=32),
                   config=ExtractConfig(store_root=str(tmp_path / "emb")))  # fmt: skip
    assert "split_seed=0" in str(open_store(made.store).attrs["source"]["spec"])
    assert find_store(spec, backbone="timm:test_vit", root=tmp_path / "emb").path == made.store
