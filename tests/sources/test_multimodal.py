"""Multi-modal ``csv:`` manifests: modality columns, presence mask, errors, digests, and extraction."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from probe.backbones import load_backbone
from probe.errors import SourceError
from probe.extraction import ExtractConfig, extract_embeddings
from probe.sources import MultiModalSource, open_source
from probe.store import open_store
from tests._views import MODALITIES, write_multimodal_manifest


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_manifest_views_presence_and_decoding(tmp_path: Path) -> None:
    manifest = write_multimodal_manifest(tmp_path / "mm", per_class={"train": 4, "test": 3}, missing=0.4)
    src = open_source(f"csv:{manifest}")
    assert isinstance(src, MultiModalSource)
    assert src.views == MODALITIES and src.view_kind == "modalities" and len(src) == 14
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    expected = np.array([[bool(r[f"modality:{m}"]) for m in MODALITIES] for r in rows])
    np.testing.assert_array_equal(src.view_mask(), expected)
    assert expected[:, 1].all() and not expected.all()  # t2 always there, some others missing
    assert src.groups == [r["patient"] for r in rows] and src.classes == ("healthy", "tumour")
    img = src.load_view(0, 1)
    assert img.shape == (24, 24, 3) and img.dtype == np.uint8
    with pytest.raises(SourceError, match="several modalities per sample"):
        src.load_image(0)
    sub = open_source(f"csv:{manifest}", limit=2)
    assert sub.views == MODALITIES and sub.view_mask().shape == (4, 3)
    np.testing.assert_array_equal(sub.view_mask(), expected[[0, 1, 8, 9]])


def test_digest_follows_file_content_and_presence(tmp_path: Path) -> None:
    manifest = write_multimodal_manifest(tmp_path / "mm", per_class={"train": 2, "test": 2})
    before = open_source(f"csv:{manifest}").fingerprint()
    assert open_source(f"csv:{manifest}").fingerprint() == before
    text = manifest.read_text().splitlines()
    cells = text[1].split(",")
    cells[4] = ""  # drop the first sample's t1
    manifest.write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
    assert open_source(f"csv:{manifest}").fingerprint() != before


@pytest.mark.parametrize(
    ("header", "row", "pattern"),
    [
        (["label", "modality:"], ["a", "x.png"], "without a modality name"),
        (["label", "modality:T1", "modality:t1"], ["a", "x.png", "y.png"], "modality 'T1' has two columns"),
        (["label", "path", "modality:t1"], ["a", "x.png", "y.png"], "has both a 'path' column and modality columns"),
        (["modality:t1"], ["x.png"], "no label column"),
        (["label", "modality:t1", "modality:t2"], ["a", "", ""], "line 2 has no modality path"),
    ],
)
def test_bad_manifests(tmp_path: Path, header: list[str], row: list[str], pattern: str) -> None:
    manifest = _write(tmp_path / "m.csv", header, [row])
    with pytest.raises(SourceError, match=pattern):
        open_source(f"csv:{manifest}")


def test_extraction_stores_views_and_presence(tmp_path: Path) -> None:
    manifest = write_multimodal_manifest(tmp_path / "mm", per_class={"train": 3, "test": 3}, missing=0.5)
    src = open_source(f"csv:{manifest}")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    cfg = ExtractConfig(store_root=str(tmp_path / "emb"), batch_size=4, chunk_rows=4, num_workers=0, progress=False)
    res = extract_embeddings(src, bb, cfg)
    mask = src.view_mask()
    assert res.images_computed == int(mask.sum()) and res.rows == 12
    store = open_store(res.store)
    feats, present = store.features("cls"), store.array("present")
    np.testing.assert_array_equal(present, mask)
    assert np.isfinite(feats[present]).all() and np.isnan(feats[~present]).all()
    assert store.attrs["fingerprint_inputs"]["views"] == {"kind": "modalities", "names": list(MODALITIES)}
    # a missing file in a filled cell: --on-error skip drops that view, the sample stays valid
    victim = next(i for i in range(len(src)) if mask[i, 0])
    Path(src.paths[victim][0]).unlink()  # type: ignore[arg-type, attr-defined]
    skipped = extract_embeddings(
        open_source(f"csv:{manifest}"), bb, ExtractConfig(**{**cfg.__dict__, "on_error": "skip", "overwrite": True})
    )
    store = open_store(skipped.store)
    assert not store.array("present")[victim, 0] and store.valid[victim] and skipped.skipped == 0
