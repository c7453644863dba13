"""Store lookup: a user's source specification matches the canonical one a store recorded."""

from __future__ import annotations

from pathlib import Path

from probe.evaluate.data import same_source


def test_spec_options_match_in_any_order_and_ratio_scale(tmp_path: Path) -> None:
    d = str(tmp_path)
    stored = f"dicom:{d}?split=0.7,0.1,0.2&split_seed=0&window=lung"
    assert same_source(f"dicom:{d}/?window=lung&split=70,10,20&split_seed=0", stored)
    assert not same_source(f"dicom:{d}?window=bone&split=70,10,20&split_seed=0", stored)
    assert not same_source(f"dicom:{d}?window=lung&split=60,20,20&split_seed=0", stored)
    assert same_source(f"folder:{d}", f"folder:{d}/") and not same_source(f"folder:{d}", f"csv:{d}")
    assert same_source("medmnist:bloodmnist", "medmnist:bloodmnist@28")
