"""Labels spelling a missing value ("NaN", "None", "null") are refused unless the spec allows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.errors import SourceError
from probe.sources import open_source
from tests.conftest import write_image_folder


def _manifest(tmp_path: Path, labels: list[str]) -> Path:
    rows = ["path,label,split"]
    for i, label in enumerate(labels):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{label},{'train' if i % 2 else 'test'}")
    file = tmp_path / "labels.csv"
    file.write_text("\n".join(rows) + "\n")
    return file


@pytest.mark.parametrize("missing", ["NaN", "nan", "None", "null", "NULL"])
def test_csv_label_spelling_a_missing_value_is_refused(tmp_path: Path, missing: str) -> None:
    """Issue 12.8: a label "NaN" no longer becomes a class of its own."""
    file = _manifest(tmp_path, ["cat", "dog", missing, "cat"])
    with pytest.raises(SourceError, match=rf"sample '2.png' .* has the label '{missing}', which reads as a missing"):
        open_source(f"csv:{file}")


def test_allow_label_keeps_it_as_a_class_and_enters_the_spec(tmp_path: Path) -> None:
    file = _manifest(tmp_path, ["cat", "dog", "NaN", "cat"])
    with pytest.raises(SourceError, match=r"keep 'NaN' as a class with the data specification csv:.*\?allow_label=nan"):
        open_source(f"csv:{file}")
    src = open_source(f"csv:{file}?allow_label=NaN,None")
    assert src.classes == ("NaN", "cat", "dog") and src.labels.tolist() == [1, 2, 0, 1]
    assert src.spec == f"csv:{file}?allow_label=nan,none"
    assert src.fingerprint() == open_source(f"csv:{file}?allow_label=nan,none").fingerprint()


def test_folder_class_named_none_is_refused(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", per_class=2)
    for split in ("train", "val", "test"):
        (root / split / "normal").rename(root / split / "None")
    with pytest.raises(SourceError, match=r"sample 'test/None/normal_000.png' .*label 'None'"):
        open_source(f"folder:{root}")
    assert open_source(f"folder:{root}?allow_label=none").classes == ("None", "cyst")
