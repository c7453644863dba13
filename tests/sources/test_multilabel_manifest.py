"""Multi-label csv manifests: label columns, the uncertain and blank policies, fingerprints and provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.errors import ConfigError, SourceError
from probe.sources import MultiLabelFileSource, MultiLabelOptions, open_source

# raw cells of labels a and b per row: 1, 0, -1 (uncertain) and "" (blank)
CELLS = [("1", "0"), ("0", "1"), ("-1", ""), ("1", "-1"), ("", "1.0"), ("0", "0")]
SPLITS = ["train", "train", "train", "val", "test", "test"]


def _manifest(root: Path, *, header: tuple[str, str] = ("label:a", "label:b"), cells=CELLS) -> Path:  # type: ignore[no-untyped-def]
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"path,split,patient,{header[0]},{header[1]},notes"]
    for i, ((a, b), split) in enumerate(zip(cells, SPLITS, strict=True)):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / f"{i}.png")
        lines.append(f"{i}.png,{split},p{i // 2},{a},{b},x")
    path = root / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_label_prefix_columns_are_detected(tmp_path: Path) -> None:
    source = open_source(f"csv:{_manifest(tmp_path)}")
    assert isinstance(source, MultiLabelFileSource)
    assert source.task == "multilabel" and source.classes == ("a", "b")
    # default policy: uncertain ignored (-1), blank negative (0)
    assert source.labels.tolist() == [[1, 0], [0, 1], [-1, 0], [1, -1], [0, 1], [0, 0]]
    assert source.groups == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert source.load_image(3)[0, 0, 0] == 120
    info = source.describe()
    assert info["label_policy"] == {"uncertain": "ignore", "blank": "zeros"}
    assert info["label_counts"]["a"] == {"positive": 2, "negative": 3, "ignored": 1}
    assert info["raw_label_counts"]["b"] == {"positive": 2, "negative": 2, "uncertain": 1, "blank": 1}


@pytest.mark.parametrize(
    ("uncertain", "blank", "expected"),
    [
        ("zeros", "zeros", [[1, 0], [0, 1], [0, 0], [1, 0], [0, 1], [0, 0]]),
        ("ones", "zeros", [[1, 0], [0, 1], [1, 0], [1, 1], [0, 1], [0, 0]]),
        ("ignore", "ignore", [[1, 0], [0, 1], [-1, -1], [1, -1], [-1, 1], [0, 0]]),
    ],
)
def test_policies(tmp_path: Path, uncertain: str, blank: str, expected: list[list[int]]) -> None:
    options = MultiLabelOptions(uncertain=uncertain, blank=blank)
    source = open_source(f"csv:{_manifest(tmp_path)}", multilabel=options)
    assert source.labels.tolist() == expected
    assert source.describe()["label_policy"] == {"uncertain": uncertain, "blank": blank}


def test_label_columns_option_and_fingerprints(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, header=("Edema", "Effusion"))
    spec = f"csv:{manifest}"
    with pytest.raises(SourceError, match="no label column"):  # a plain manifest needs a label column
        open_source(spec)
    a = open_source(spec, multilabel=MultiLabelOptions(label_columns=("Effusion", "Edema")))
    assert a.classes == ("Effusion", "Edema") and a.labels[0].tolist() == [0, 1]
    prints = {
        policy: open_source(
            spec, multilabel=MultiLabelOptions(label_columns=("Edema", "Effusion"), uncertain=policy)
        ).fingerprint()
        for policy in ("ignore", "zeros", "ones")
    }
    assert len(set(prints.values())) == 3  # every policy is its own store
    again = open_source(spec, multilabel=MultiLabelOptions(label_columns=("Edema", "Effusion")))
    assert again.fingerprint() == prints["ignore"]
    # a subset (--limit) keeps the policy in its fingerprint and its provenance
    sub = open_source(spec, multilabel=MultiLabelOptions(label_columns=("Edema", "Effusion")), limit=1)
    assert len(sub) == 3 and sub.describe()["label_policy"] == {"uncertain": "ignore", "blank": "zeros"}


def test_errors(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "a")
    with pytest.raises(ConfigError, match=r"MultiLabelOptions\(uncertain='maybe'\)"):
        MultiLabelOptions(uncertain="maybe")
    with pytest.raises(ConfigError, match=r"MultiLabelOptions\(blank='ones'\)"):
        MultiLabelOptions(blank="ones")
    with pytest.raises(ConfigError, match="at least 2 distinct"):
        MultiLabelOptions(label_columns=("a",))
    with pytest.raises(SourceError, match="no such column"):
        open_source(f"csv:{manifest}", multilabel=MultiLabelOptions(label_columns=("a", "zzz")))
    with pytest.raises(ConfigError, match="apply to csv: manifests"):
        open_source("folder:/nowhere", multilabel=MultiLabelOptions())
    bad = _manifest(tmp_path / "b", cells=[*CELLS[:5], ("0", "u")])
    with pytest.raises(SourceError, match=r"line 7, column 'label:b' holds 'u'"):
        open_source(f"csv:{bad}")
    plain = _manifest(tmp_path / "c", header=("x", "y"))
    with pytest.raises(SourceError, match="no multi-label columns"):
        open_source(f"csv:{plain}", multilabel=MultiLabelOptions(uncertain="zeros"))


def test_dicom_window_options_reach_multilabel_manifests(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    plain = open_source(f"csv:{manifest}")
    windowed = open_source(f"csv:{manifest}?window=40,400")
    assert isinstance(windowed, MultiLabelFileSource) and windowed.spec.endswith("?window=40,400")
    assert windowed.decode_options()["dicom"]["window"] == "40,400" and "dicom" not in plain.decode_options()
    explicit = open_source(f"csv:{manifest}?window=40,400", multilabel=MultiLabelOptions(uncertain="zeros"))
    assert explicit.spec == windowed.spec and explicit.labels[2, 0] == 0
    with pytest.raises(ConfigError, match="frames=all"):
        open_source(f"csv:{manifest}?frames=all")
