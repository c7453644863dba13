"""3D volumes: slice policies, MedMNIST 3D (synthetic and real npz), NIfTI (nibabel), store layout, resume."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import zarr

from probe.backbones import Preprocessor, load_backbone
from probe.errors import ConfigError, SourceError
from probe.evaluate.data import load_eval_data
from probe.extraction import ExtractConfig, extract_embeddings
from probe.sources import NiftiSource, SlicePolicy, open_source
from probe.sources.medmnist import medmnist_info
from probe.sources.volumes import select_slices
from probe.store import open_store
from tests._views import volume


@pytest.mark.parametrize(
    ("text", "depth", "expected"),
    [
        ("all", 5, [0, 1, 2, 3, 4]),
        ("every:2", 5, [0, 2, 4]),
        ("every:3", 7, [0, 3, 6]),
        ("central:2", 6, [2, 3]),
        ("central:3", 6, [1, 2, 3]),
        ("central:9", 4, [0, 1, 2, 3]),
    ],
)
def test_slice_selection(text: str, depth: int, expected: list[int]) -> None:
    assert select_slices(depth, SlicePolicy.parse(text)).tolist() == expected


def test_slice_policy_errors() -> None:
    for bad in ("some", "every:", "central:x", "every:0"):
        with pytest.raises(ConfigError, match="slice policy"):
            SlicePolicy.parse(bad)
    with pytest.raises(ConfigError, match=r"SlicePolicy\(axis=3\) is invalid"):
        SlicePolicy.parse("all", axis=3)


def _fake_adrenal(root: Path, monkeypatch: pytest.MonkeyPatch, *, n: int = 4, depth: int = 28) -> Path:
    """A synthetic ``adrenalmnist3d.npz`` (N, D, H, W) uint8 whose official MD5 is patched to match."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for code, split in enumerate(("train", "val", "test")):
        vols = [volume(depth, 28, level=60 + 100 * (i % 2), seed=10 * code + i) for i in range(n)]
        arrays[f"{split}_images"] = np.stack(vols)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    path = root / "adrenalmnist3d.npz"
    np.savez(path, **arrays)
    monkeypatch.setitem(medmnist_info()["adrenalmnist3d"]["md5"], "28", hashlib.md5(path.read_bytes()).hexdigest())
    return root


def _cfg(tmp_path: Path, **kw: object) -> ExtractConfig:
    base: dict[str, object] = {"store_root": str(tmp_path / "emb"), "batch_size": 4, "chunk_rows": 4}
    base.update(num_workers=0, progress=False, **kw)
    return ExtractConfig(**base)  # type: ignore[arg-type]


def test_medmnist3d_slices_store_layout_and_load_time_aggregation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _fake_adrenal(tmp_path / "data", monkeypatch)
    src = open_source("medmnist:adrenalmnist3d", data_root=root, slices=SlicePolicy.parse("every:5"))
    assert src.views == tuple(f"slice{k}" for k in range(6)) and src.view_kind == "slices"  # 0, 5, ..., 25
    raw = np.load(root / "adrenalmnist3d.npz")["train_images"]
    np.testing.assert_array_equal(src.load_view(1, 2)[:, :, 0], raw[1, 10])
    with pytest.raises(SourceError, match="holds 3D volumes"):
        src.load_image(0)
    state = src.__getstate__()  # what a DataLoader worker receives: no image arrays, no cached volume
    assert state["_images"] == {} and state["_cache"] is None and src._images
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    res = extract_embeddings(src, bb, _cfg(tmp_path, poolings=("cls",)))
    assert res.rows == 12 and res.images_computed == 72 and res.rows_computed == 12
    store = open_store(res.store)
    feats = store.features("cls")
    assert store.views == src.views and feats.shape == (12, 6, bb.poolings["cls"])
    assert store.array("present").all() and store.attrs["source"]["view_kind"] == "slices"
    pre = Preprocessor(bb.preprocess)
    with torch.no_grad():
        ref = bb.pooler(torch.stack([pre(src.load_view(5, v)) for v in range(6)]))["cls"].numpy()
    np.testing.assert_allclose(feats[5], ref, rtol=1e-4, atol=1e-4)
    data = load_eval_data(store, fusion="meanmax")
    train = feats[store.split == 0]
    np.testing.assert_allclose(data.train.X, np.concatenate([train.mean(1), train.max(1)], axis=1), rtol=1e-6)
    assert data.pooling == "cls:meanmax" and data.notes["slices"] == "every:5" and data.notes["slice_axis"] == 0
    assert load_eval_data(store).train.X.shape == (4, bb.poolings["cls"])  # default: mean
    other = extract_embeddings(
        open_source("medmnist:adrenalmnist3d", data_root=root, slices=SlicePolicy.parse("central:4")),
        bb,
        _cfg(tmp_path, poolings=("cls",)),
    )
    assert other.fingerprint != res.fingerprint and other.store != res.store  # the policy is fingerprinted


def test_multi_view_store_resumes_to_identical_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_adrenal(tmp_path / "data", monkeypatch)
    src = open_source("medmnist:adrenalmnist3d", data_root=root, slices=SlicePolicy.parse("central:5"))
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    first = extract_embeddings(src, bb, _cfg(tmp_path, poolings=("cls",)))
    before = open_store(first.store).features("cls")
    g = zarr.open_group(first.store, mode="r+")
    g["done"][1] = False  # type: ignore[index]
    g["features/cls"][4:8] = np.nan  # type: ignore[index]
    g.attrs.update({"complete": False, "state": "extracting"})
    res = extract_embeddings(src, bb, _cfg(tmp_path, poolings=("cls",)))
    assert res.resumed_from == 4 and res.rows_computed == 4 and res.images_computed == 20
    np.testing.assert_array_equal(open_store(res.store).features("cls"), before)


def test_slice_options_on_a_2d_source_are_an_error(image_folder: Path) -> None:
    with pytest.raises(ConfigError, match="applies to 3D volumes"):
        open_source(f"folder:{image_folder}", slices=SlicePolicy.parse("central:3"))


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def test_nifti_folder_reorients_to_ras_and_pads_views(tmp_path: Path) -> None:
    # stored as (z, y, x): array axis 0 is superior-inferior, so the canonical axial axis is 2
    swap = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    depths = {"train": (6, 8), "val": (6, 6), "test": (5, 7)}
    for split, (d0, d1) in depths.items():
        for cls, d in (("a", d0), ("b", d1)):
            zyx = np.arange(d, dtype=np.float32)[:, None, None] * np.ones((d, 4, 5), np.float32)
            _nifti(tmp_path / "vols" / split / cls / f"{split}_{cls}.nii.gz", zyx + (cls == "b"), swap)
    src = open_source(f"nifti:{tmp_path / 'vols'}", slices=SlicePolicy.parse("central:6"))
    assert isinstance(src, NiftiSource) and src.axis == 2
    order = [i.split("/")[0] + i.split("/")[1] for i in src.ids]
    assert order == ["testa", "testb", "traina", "trainb", "vala", "valb"] and src.classes == ("a", "b")
    assert src.volume_shape(2) == (5, 4, 6) and src.splits.tolist() == [2, 2, 0, 0, 1, 1]
    assert src.views is not None and len(src.views) == 6
    mask = src.view_mask()
    assert mask.sum(axis=1).tolist() == [5, 6, 6, 6, 6, 6]  # the 5-slice test volume has one view less
    view = src.load_view(3, 3)  # 8 slices, central 6 = 1..6, so view 3 is slice 4 (of 0..7)
    assert view.shape == (5, 4, 3) and view.dtype == np.float32
    np.testing.assert_allclose(view, 4 / 7)  # min-max over the whole volume, not the slice


def test_nifti_manifest_and_errors(tmp_path: Path) -> None:
    rows = []
    for i in range(6):
        vol = volume(4, 8, level=50 + 100 * (i % 2), seed=i)
        p = _nifti(tmp_path / f"v{i}.nii", vol, np.eye(4))
        rows.append({"path": p.name, "label": "ab"[i % 2], "split": ("train", "val", "test")[i // 2], "patient": i})
    manifest = tmp_path / "vols.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    src = open_source(f"nifti:{manifest}")
    assert len(src) == 6 and src.groups == [str(i) for i in range(6)] and src.views is not None
    assert len(src.views) == 8 and src.load_view(2, 1).dtype == np.float32  # axis 2 of (4, 8, 8)
    with pytest.raises(SourceError, match="not found"):
        open_source(f"nifti:{tmp_path / 'missing'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(SourceError, match=r"no \.nii/\.nii\.gz files"):
        open_source(f"nifti:{tmp_path / 'empty'}")
    _nifti(tmp_path / "four" / "a" / "x.nii", np.zeros((3, 3, 3, 2), np.float32), np.eye(4))
    _nifti(tmp_path / "four" / "b" / "y.nii", np.zeros((3, 3, 3), np.float32), np.eye(4))
    with pytest.raises(SourceError, match="expected a 3D volume"):
        open_source(f"nifti:{tmp_path / 'four'}")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "slices"), [("adrenalmnist3d", "every:4"), ("adrenalmnist3d@64", "every:8")])
def test_real_adrenal_curve_beats_chance(medmnist_root: Path, tmp_path: Path, name: str, slices: str) -> None:
    """The real AdrenalMNIST3D with efficientnet_lite0 at 64 px: full-data AUROC well above 0.5."""
    if not (medmnist_root / "adrenalmnist3d.npz").is_file():
        pytest.skip("adrenalmnist3d.npz not in the data folder")
    from probe.backbones import BackboneRequest
    from probe.evaluate import PlanConfig, run_curve
    from probe.sources import SourceRequest

    run = run_curve(
        SourceRequest(f"medmnist:{name}", data_root=str(medmnist_root), slices=SlicePolicy.parse(slices)),
        backbones=[BackboneRequest("efficientnet_lite0", image_size=64)],
        plan=PlanConfig(heads=("linear",), shots=(16, "all"), seeds=2, bootstrap=200, metrics=("macro_auroc",)),
        results_dir=None,
        extract_config=ExtractConfig(store_root=str(tmp_path / "emb"), progress=False),
    )
    full = next(r for r in run.rows if r.shots == "all")
    assert full.value > 0.7 and full.ci_low is not None and full.ci_low > 0.6, full
    assert full.pooling.endswith(":mean") and full.params["slices"] == slices


def test_volume_views_are_decoded_once_and_resized_as_one_tensor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _fake_adrenal(tmp_path / "data", monkeypatch)
    src = open_source("medmnist:adrenalmnist3d", data_root=root, slices=SlicePolicy.parse("every:3"))
    stack = src.load_views(2, [0, 3, 7])
    assert stack is not None and stack.shape == (3, 28, 28, 3)
    for k, v in enumerate((0, 3, 7)):
        np.testing.assert_array_equal(stack[k], src.load_view(2, v))
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    pre = Preprocessor(bb.preprocess)
    for images in (stack, stack.astype(np.float32) / 255):
        torch.testing.assert_close(pre.batch(images), torch.stack([pre(im) for im in images]), rtol=0, atol=0)
    batched = extract_embeddings(src, bb, _cfg(tmp_path / "batched", poolings=("cls",)))
    import probe.extract_loop

    monkeypatch.setattr(probe.extract_loop, "_batched_views", lambda source: False)  # the item-by-item path
    single = extract_embeddings(src, bb, _cfg(tmp_path / "single", poolings=("cls",)))
    assert batched.fingerprint == single.fingerprint
    np.testing.assert_array_equal(open_store(batched.store).features("cls"), open_store(single.store).features("cls"))


def test_volume_stores_chunk_about_4096_images() -> None:
    assert ExtractConfig(batch_size=32).resolved_chunk_rows(28) == 160  # 4480 slices: 140 whole batches
    assert ExtractConfig(batch_size=32).resolved_chunk_rows() == 4096
    assert ExtractConfig(batch_size=32, chunk_rows=64).resolved_chunk_rows(28) == 64
