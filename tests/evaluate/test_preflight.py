"""``probe curve`` checks the data and the plan before it embeds anything, and names the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.backbones import BackboneRequest
from probe.errors import ProtocolError
from probe.evaluate import PlanConfig, StoreChoice, run_curve
from tests.cli.test_multilabel_cli import LABELS
from tests.cli.test_multilabel_cli import _manifest as multilabel_manifest
from tests.conftest import write_image_folder

TINY = BackboneRequest("timm:test_vit", pretrained=False, image_size=32)


def _curve(source: str, tmp_path: Path, **plan: object) -> None:
    run_curve(
        source,
        backbones=[TINY],
        plan=PlanConfig(shots=(1,), seeds=1, bootstrap=0, **plan),  # type: ignore[arg-type]
        choice=StoreChoice(store_root=str(tmp_path / "emb")),
        results_dir=None,
    )


def test_a_folder_without_splits_fails_before_extraction_naming_the_fix(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "imgs", per_class=3, splits=False)
    with pytest.raises(ProtocolError, match=rf"has no train rows .*folder:{folder}\?split=70,10,20"):
        _curve(f"folder:{folder}", tmp_path)
    assert not (tmp_path / "emb").exists()  # nothing was embedded, no unusable store left behind


def test_a_single_class_split_fails_before_extraction(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "imgs", per_class=3)
    for f in (folder / "test" / "normal").iterdir():
        f.unlink()
    (folder / "test" / "normal").rmdir()
    with pytest.raises(ProtocolError, match=r"the test split holds a single class \('cyst'\)"):
        _curve(f"folder:{folder}", tmp_path)
    assert not (tmp_path / "emb").exists()


def test_a_head_without_a_multilabel_form_fails_before_extraction(tmp_path: Path) -> None:
    from probe.sources import MultiLabelOptions, SourceRequest

    manifest = multilabel_manifest(tmp_path / "ml")
    source = SourceRequest(f"csv:{manifest}", multilabel=MultiLabelOptions(label_columns=LABELS))
    with pytest.raises(ProtocolError, match="head 'labelspread' does not support multi-label data"):
        _curve(source, tmp_path, heads=("labelspread",))  # type: ignore[arg-type]
    assert not (tmp_path / "emb").exists()
