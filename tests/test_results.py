"""Append-only results table: round trip, reruns, filters, torn lines, empty folders."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from probe.errors import ResultsError
from probe.results import ResultRow, append_results, load_results, read_rows, results_file

ROW = ResultRow(
    dataset="synth",
    backbone="toy",
    pooling="gap",
    head="knn",
    protocol="shots",
    shots=4,
    fraction=None,
    seed=0,
    metric="accuracy",
    value=0.5,
    ci_low=0.4,
    ci_high=0.6,
    ci_method="bootstrap-1000",
    n_train=16,
    n_test=100,
    n_classes=4,
    labels_per_class=4.0,
    params={"k": 4},
    split="test",
    store_fingerprint="f" * 64,
    sample_digest="abc",
    seconds=0.1,
    versions={"probe": "dev"},
    run_id="r1",
)


def test_round_trip_and_shots_column(tmp_path: Path) -> None:
    rows = [ROW, replace(ROW, shots="all", protocol="full", value=0.9, ci_low=math.nan)]
    path = append_results(rows, tmp_path / "results")
    assert path == results_file(tmp_path / "results") and path.name == "results.jsonl"
    frame = load_results(tmp_path / "results")
    assert frame["shots"].tolist() == [4, "all"]
    assert math.isnan(frame["ci_low"][1]) and frame["params"][0] == {"k": 4}


def test_rerun_superseded_but_kept_on_disk(tmp_path: Path) -> None:
    append_results([ROW], tmp_path)
    append_results([replace(ROW, value=0.55, run_id="r2")], tmp_path)
    append_results([replace(ROW, seed=1, run_id="r2")], tmp_path)
    latest = load_results(tmp_path)
    assert sorted(latest["value"].tolist()) == [0.5, 0.55]  # seed 0 rerun replaced, seed 1 kept
    assert len(load_results(tmp_path, latest=False)) == 3 and len(read_rows(tmp_path)) == 3


def test_filters(tmp_path: Path) -> None:
    append_results([ROW, replace(ROW, head="linear"), replace(ROW, head="prototype")], tmp_path)
    assert set(load_results(tmp_path, head=["knn", "linear"])["head"]) == {"knn", "linear"}
    with pytest.raises(ResultsError, match="unknown results column 'colour'"):
        load_results(tmp_path, colour="red")
    with pytest.raises(ResultsError, match="no rows .* match"):
        load_results(tmp_path, head="svm")


def test_empty_folder_and_torn_last_line(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no result rows in .*run `probe curve`"):
        load_results(tmp_path)
    file = append_results([ROW], tmp_path)
    with open(file, "a") as f:
        f.write('{"dataset": "syn')  # a writer killed mid-line
    assert len(load_results(tmp_path)) == 1
    with open(file, "a") as f:
        f.write("\n" + ROW.to_dict().__repr__() + "\n")  # a corrupt line that is not the last
    file.write_text(file.read_text() + '{"metric": "accuracy"}\n')
    with pytest.raises(ResultsError, match="is not JSON"):
        load_results(tmp_path)


def test_the_schema_is_stated_once_by_result_row() -> None:
    """Required fields, key columns, numeric columns and the report's needs all derive from ResultRow."""
    from dataclasses import fields

    from probe.report.data import REQUIRED_COLUMNS
    from probe.results import FIELDS, KEY_COLUMNS, NUMERIC_FIELDS, REQUIRED_FIELDS, ResultRow

    assert tuple(f.name for f in fields(ResultRow)) == FIELDS
    assert set(FIELDS) >= REQUIRED_FIELDS and {"versions", "run_id", "time", "schema"}.isdisjoint(REQUIRED_FIELDS)
    assert set(KEY_COLUMNS) - {"params_key"} <= set(FIELDS) and set(REQUIRED_COLUMNS) <= set(FIELDS)
    assert set(NUMERIC_FIELDS) == {"value", "ci_low", "ci_high", "fraction", "labels_per_class", "seconds"}
