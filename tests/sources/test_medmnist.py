"""MedMNIST source: real files, official MD5s, resolution order and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from probe.errors import ConfigError, DataFileError, SourceError, UnknownSourceError
from probe.sources import SPLITS, open_source
from probe.sources.medmnist import file_name, medmnist_info, parse_flag


def test_breastmnist_official_split(medmnist_root: Path) -> None:
    src = open_source("medmnist:breastmnist", data_root=medmnist_root)
    counts = {SPLITS[c]: int(n) for c, n in zip(*np.unique(src.splits, return_counts=True), strict=True)}
    assert counts == {"train": 546, "val": 78, "test": 156}
    assert src.classes == ("malignant", "normal, benign") and src.task == "binary"
    assert src.labels.shape == (780,) and set(np.unique(src.labels)) == {0, 1}
    img = src.load_image(0)
    assert img.shape == (28, 28, 3) and img.dtype == np.uint8
    assert src.ids[0] == "train/000000" and src.ids[546] == "val/000000"


def test_bloodmnist_rgb_and_stable_fingerprint(medmnist_root: Path) -> None:
    a = open_source("medmnist:bloodmnist", data_root=medmnist_root)
    b = open_source("medmnist:bloodmnist@28", data_root=medmnist_root)
    assert len(a) == 17092 and len(a.classes) == 8
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != open_source("medmnist:bloodmnist", data_root=medmnist_root, limit=5).fingerprint()


def test_env_data_root_is_used(medmnist_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_DATA_ROOT", str(medmnist_root))
    assert len(open_source("medmnist:breastmnist")) == 780


def test_md5_mismatch_is_refused(tmp_path: Path, medmnist_root: Path) -> None:
    shutil.copy(medmnist_root / "breastmnist.npz", tmp_path / "breastmnist.npz")
    with open(tmp_path / "breastmnist.npz", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(DataFileError, match=r"breastmnist.npz: MD5 \w+ does not match the official 750601b1"):
        open_source("medmnist:breastmnist", data_root=tmp_path)


def test_missing_file_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"pathmnist_64.npz not found.*downloads are off.*put the official"):
        open_source("medmnist:pathmnist@64", data_root=tmp_path)


def test_name_size_and_3d_errors() -> None:
    with pytest.raises(SourceError, match="did you mean bloodmnist"):
        parse_flag("bloodmnst")
    with pytest.raises(ConfigError, match="use one of 28, 64, 128, 224"):
        parse_flag("bloodmnist@100")
    with pytest.raises(UnknownSourceError, match="unknown data source 'imagenet:x'.*medmnist"):
        open_source("imagenet:x")


def test_3d_subsets_open_as_volume_sources(medmnist_root: Path) -> None:
    from probe.sources import MedMNIST3DSource, MedMNISTSource

    src = open_source("medmnist:adrenalmnist3d", data_root=medmnist_root)
    assert isinstance(src, MedMNIST3DSource) and src.views is not None and len(src.views) == 28
    assert len(src) == 1584 and src.load_view(0, 0).shape == (28, 28, 3)
    with pytest.raises(SourceError, match="holds 3D images; open it with open_source"):
        MedMNISTSource("adrenalmnist3d", data_root=medmnist_root)


def test_info_covers_every_subset_and_size() -> None:
    info = medmnist_info()
    assert len(info) == 18
    assert file_name("bloodmnist", 28) == "bloodmnist.npz" and file_name("bloodmnist", 224) == "bloodmnist_224.npz"
    for flag, entry in info.items():
        sizes = {"28", "64"} if entry["ndim"] == 3 else {"28", "64", "128", "224"}
        assert set(entry["md5"]) == sizes, flag


@pytest.fixture
def loopback_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A local HTTP server (127.0.0.1 only) standing in for the official download location."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/{{file}}"
    server.shutdown()
    server.server_close()


def test_download_is_md5_checked_and_cached(loopback_server, medmnist_root: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import probe.sources.medmnist as mm

    served, url = loopback_server
    monkeypatch.delenv("PROBE_OFFLINE")
    monkeypatch.setattr(mm, "DOWNLOAD_URL", url)
    (served / "breastmnist.npz").write_bytes(b"not the official file")
    with pytest.raises(DataFileError, match="downloaded .*breastmnist.npz has MD5 .*expected 750601b1"):
        open_source("medmnist:breastmnist")
    assert not (mm.cache_dir() / "breastmnist.npz").exists()  # a bad download is never kept
    shutil.copy(medmnist_root / "breastmnist.npz", served / "breastmnist.npz")
    src = open_source("medmnist:breastmnist")
    assert len(src) == 780 and (mm.cache_dir() / "breastmnist.npz").is_file()
    (served / "breastmnist.npz").unlink()
    assert len(open_source("medmnist:breastmnist")) == 780  # served from the cache now


def test_large_arrays_are_memory_mapped_from_an_unpacked_copy(medmnist_root: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import probe.sources.medmnist as mm

    in_memory = open_source("medmnist:breastmnist", data_root=medmnist_root)
    monkeypatch.setattr(mm, "MMAP_BYTES", 0)
    mapped = open_source("medmnist:breastmnist", data_root=medmnist_root)
    for i in (0, 600, 779):
        np.testing.assert_array_equal(mapped.load_image(i), in_memory.load_image(i))
    unpacked = sorted(p.name for p in (mm.cache_dir() / "unpacked").rglob("*.npy"))
    assert unpacked == ["test_images.npy", "train_images.npy", "val_images.npy"]
