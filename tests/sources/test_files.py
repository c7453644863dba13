"""folder: and csv: sources."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from probe.errors import SourceError
from probe.sources import SPLITS, open_source
from tests.conftest import write_image_folder


def test_folder_with_split_level(image_folder: Path) -> None:
    src = open_source(f"folder:{image_folder}")
    assert src.classes == ("cyst", "normal") and len(src) == 36
    assert {SPLITS[c] for c in np.unique(src.splits)} == {"train", "val", "test"}
    assert src.ids[0] == "test/cyst/cyst_000.png"
    assert src.load_image(0).shape == (24, 24, 3)


def test_folder_without_split_level(tmp_path: Path) -> None:
    src = open_source(f"folder:{write_image_folder(tmp_path / 'f', splits=False)}")
    assert set(src.splits.tolist()) == {SPLITS.index("unsplit")} and len(src) == 12


def test_folder_fingerprint_follows_content(image_folder: Path) -> None:
    before = open_source(f"folder:{image_folder}").fingerprint()
    assert open_source(f"folder:{image_folder}").fingerprint() == before
    target = next((image_folder / "train" / "cyst").glob("*.png"))
    target.write_bytes(target.read_bytes() + b"\0")
    assert open_source(f"folder:{image_folder}").fingerprint() != before


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a folder"):
        open_source(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(SourceError, match="no images in class subfolders"):
        open_source(f"folder:{tmp_path / 'empty'}")


def _manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_csv_relative_paths_splits_and_groups(image_folder: Path) -> None:
    imgs = sorted(image_folder.rglob("*.png"))
    rows = [
        {
            "path": str(p.relative_to(image_folder)),
            "label": p.parent.name,
            "split": p.parents[1].name,
            "patient_id": f"p{i // 2}",
        }
        for i, p in enumerate(imgs)
    ]
    src = open_source(f"csv:{_manifest(image_folder / 'm.csv', rows)}")
    assert len(src) == len(imgs) and src.groups is not None and src.groups[:3] == ["p0", "p0", "p1"]
    assert src.load_image(5).shape == (24, 24, 3)
    assert [SPLITS[c] for c in src.splits[:1]] == [rows[0]["split"]]


def test_csv_missing_column_and_empty_value(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no label column; name one of label"):
        open_source(f"csv:{_manifest(tmp_path / 'a.csv', [{'path': 'x.png', 'kind': 'a'}])}")
    with pytest.raises(SourceError, match="line 2 has an empty"):
        open_source(f"csv:{_manifest(tmp_path / 'b.csv', [{'path': '', 'label': 'a'}])}")
    with pytest.raises(SourceError, match="file not found"):
        open_source(f"csv:{tmp_path / 'none.csv'}")


def test_csv_single_class_is_refused(tmp_path: Path) -> None:
    rows = [{"path": f"{i}.png", "label": "a"} for i in range(3)]
    with pytest.raises(SourceError, match="single class"):
        open_source(f"csv:{_manifest(tmp_path / 'c.csv', rows)}")


def test_same_size_edit_in_the_middle_changes_the_fingerprint(tmp_path: Path) -> None:
    from PIL import Image

    root = write_image_folder(tmp_path / "bmp", per_class=2, splits=False)
    big = root / "cyst" / "big.bmp"  # uncompressed: a pixel edit keeps the file size
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(big)
    before = open_source(f"folder:{root}").fingerprint()
    data = bytearray(big.read_bytes())
    data[len(data) // 2] ^= 0xFF
    big.write_bytes(bytes(data))
    assert big.stat().st_size == len(data)
    assert open_source(f"folder:{root}").fingerprint() != before


def test_non_utf8_manifest(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes("path,label\nimg.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(SourceError, match="not UTF-8 text.*save it as UTF-8"):
        open_source(f"csv:{tmp_path / 'm.csv'}")
