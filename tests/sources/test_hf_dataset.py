"""``hf-dataset:``: a dataset saved with ``save_to_disk`` is a source like the others, content-fingerprinted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.errors import ConfigError, DataFileError
from probe.sources import canonical_spec, open_source

datasets = pytest.importorskip("datasets")


def _save(root: Path, *, splits: tuple[str, ...] = ("train", "validation", "test"), n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    features = datasets.Features({"img": datasets.Image(), "dx": datasets.ClassLabel(names=["benign", "malignant"])})
    parts = {}
    for split in splits:
        images = [Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)) for _ in range(n)]
        parts[split] = datasets.Dataset.from_dict({"img": images, "dx": [i % 2 for i in range(n)]}, features=features)
    datasets.DatasetDict(parts).save_to_disk(str(root))
    return root


def test_a_saved_dataset_is_a_source(tmp_path: Path) -> None:
    root = _save(tmp_path / "derm")
    src = open_source(f"hf-dataset:{root}")
    assert src.classes == ("benign", "malignant") and src.task == "binary" and len(src) == 12
    assert src.ids[:2] == ["train/0", "train/1"] and sorted(set(src.splits.tolist())) == [0, 1, 2]
    assert src.load_image(5).shape == (12, 12, 3)
    first = src.fingerprint()
    assert open_source(f"hf-dataset:{root}?image=img&label=dx").fingerprint() == first
    assert canonical_spec(f"hf-dataset:{root}/") == f"hf-dataset:{root.resolve()}"


def test_the_fingerprint_follows_the_content(tmp_path: Path) -> None:
    a = open_source(f"hf-dataset:{_save(tmp_path / 'a')}").fingerprint()
    b_root = tmp_path / "b"
    rng_changed = _save(b_root, n=5)
    assert open_source(f"hf-dataset:{rng_changed}").fingerprint() != a


def test_bad_datasets_and_options(tmp_path: Path) -> None:
    root = _save(tmp_path / "odd", splits=("train", "extra"))
    with pytest.raises(ConfigError, match="split 'extra' is not train, validation or test"):
        open_source(f"hf-dataset:{root}")
    good = _save(tmp_path / "good")
    with pytest.raises(ConfigError, match="no column 'pixels'; columns: img, dx"):
        open_source(f"hf-dataset:{good}?image=pixels")
    with pytest.raises(DataFileError, match="downloads are off"):
        open_source("hf-dataset:someone/not-here")


def test_curve_on_a_saved_dataset(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from cli.main import app

    root = _save(tmp_path / "derm", n=6)
    args = ["curve", f"hf-dataset:{root}", "--backbone", "timm:test_vit", "--random-weights", "--image-size", "32"]
    args += ["--heads", "prototype", "--shots", "2,all", "--seeds", "1", "--bootstrap", "0"]
    res = CliRunner().invoke(app, [*args, "--store-root", str(tmp_path / "emb"), "--no-save", "--json"])
    assert res.exit_code == 0, res.output
    assert {r["dataset"] for r in json.loads(res.stdout)["results"]} == {"derm"}
