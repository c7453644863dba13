"""``canonical_spec``: one form per data, so a store made from one spelling is found from another."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.errors import UnknownSourceError
from probe.sources import canonical_spec, same_source


def test_split_ratios_and_the_default_seed_are_one_form(tmp_path: Path) -> None:
    a = canonical_spec(f"folder:{tmp_path}?split=60,20,20")
    assert a == canonical_spec(f"folder:{tmp_path}/?split_seed=0&split=0.6,0.2,0.2")
    assert a == f"folder:{tmp_path.resolve()}?split=0.6,0.2,0.2&split_seed=0"
    assert a != canonical_spec(f"folder:{tmp_path}?split=60,20,20&split_seed=1")
    assert a != canonical_spec(f"csv:{tmp_path}?split=60,20,20")


def test_medmnist_names_carry_their_default_size() -> None:
    assert canonical_spec("medmnist:BloodMNIST") == "medmnist:bloodmnist@28" == canonical_spec("medmnist:bloodmnist@28")
    assert not same_source("medmnist:bloodmnist", "medmnist:bloodmnist@64")


def test_relative_paths_and_option_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ct").mkdir()
    monkeypatch.chdir(tmp_path)
    assert same_source("dicom:ct?window=Lung", f"dicom:{tmp_path}/ct?window=lung")


def test_unknown_prefixes_never_match() -> None:
    with pytest.raises(UnknownSourceError, match="unknown data source 'nope:x'"):
        canonical_spec("nope:x")
    assert not same_source("nope:x", "nope:x")


def test_allowed_labels_are_a_set(tmp_path: Path) -> None:
    assert same_source(f"folder:{tmp_path}?allow_label=None,NaN", f"folder:{tmp_path}?allow_label=nan,none")
