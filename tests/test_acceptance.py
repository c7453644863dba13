"""Long acceptance checks on real data (``pytest -m slow``; minutes on a 2-core CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probe.extract import ExtractConfig, extract
from probe.store import open_store


@pytest.mark.slow
def test_full_bloodmnist_extraction_is_complete_finite_and_idempotent(medmnist_root: Path, tmp_path: Path) -> None:
    cfg = ExtractConfig(store_root=str(tmp_path), progress=False)
    res = extract("medmnist:bloodmnist", backbone="efficientnet_lite0", data_root=str(medmnist_root), config=cfg)
    assert res.rows == 17092 and res.complete and res.poolings == {"gap": 1280}
    feats = open_store(res.store).features("gap")
    assert feats.shape == (17092, 1280) and np.isfinite(feats).all()
    again = extract("medmnist:bloodmnist", backbone="efficientnet_lite0", data_root=str(medmnist_root), config=cfg)
    assert again.noop and again.store == res.store
