"""Append-only results table: round trip, reruns, filters, torn lines, empty folders."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from probe.errors import ResultsError
from probe.results import ResultRow, ResultsWarning, append_results, load_results, read_rows, results_file

ROW = ResultRow(
    dataset="synth",
    backbone="toy",
    pooling="gap",
    head_name="knn",
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
    append_results([ROW, replace(ROW, head_name="linear"), replace(ROW, head_name="prototype")], tmp_path)
    assert set(load_results(tmp_path, head_name=["knn", "linear"])["head_name"]) == {"knn", "linear"}
    with pytest.raises(ResultsError, match="unknown results column 'colour'"):
        load_results(tmp_path, colour="red")
    with pytest.raises(ResultsError, match="no rows .* match"):
        load_results(tmp_path, head_name="svm")


def test_the_head_column_does_not_clash_with_dataframe_head(tmp_path: Path) -> None:
    append_results([ROW, replace(ROW, head_name="linear")], tmp_path)
    frame = load_results(tmp_path)
    assert frame.head_name.isin(["linear"]).tolist() == [False, True]  # ``frame.head`` is the pandas method
    schema = json.loads(results_file(tmp_path).read_text().splitlines()[0])["schema"]
    assert "head" not in frame and schema == "probe.results/3"


def test_rows_written_with_a_head_field_load_as_head_name(tmp_path: Path) -> None:
    """Files of results schemas 1 and 2 name the column ``head``: they load, filter and mix with new rows."""
    old = {k: v for k, v in ROW.to_dict().items() if k != "head_name"} | {"head": "knn", "schema": "probe.results/2"}
    older = {k: v for k, v in old.items() if k != "setup"} | {"seed": 1, "schema": "probe.results/1"}
    new = replace(ROW, seed=2, head_name="knn").to_dict()
    results_file(tmp_path).write_text("".join(json.dumps(r) + "\n" for r in (old, older, new)))
    frame = load_results(tmp_path)
    assert frame["head_name"].tolist() == ["knn"] * 3 and "head" not in frame
    assert sorted(load_results(tmp_path, head_name="knn")["seed"]) == [0, 1, 2]
    with pytest.raises(ResultsError, match=r"unknown results column 'head' \(renamed 'head_name' in results schema"):
        load_results(tmp_path, head="knn")


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


def test_append_after_a_torn_line_sets_it_aside(tmp_path: Path) -> None:
    """Issue 12.1: a line cut in half by a kill is moved to results.jsonl.torn, never glued to the next rows."""
    file = append_results([ROW, replace(ROW, seed=1)], tmp_path)
    data = file.read_bytes()
    cut = data[: len(data) - len(data.splitlines()[-1]) // 2 - 1]  # the second line half written
    file.write_bytes(cut)
    with pytest.warns(ResultsWarning, match=r"torn line.*moved to .*results\.jsonl\.torn"):
        append_results([replace(ROW, seed=2)], tmp_path)
    assert sorted(load_results(tmp_path)["seed"]) == [0, 2]
    torn = file.with_name("results.jsonl.torn")
    assert torn.read_bytes() == cut[len(data.splitlines(keepends=True)[0]) :] + b"\n"
    assert file.read_bytes().endswith(b"\n") and len(file.read_bytes().splitlines()) == 2


def test_append_completes_a_whole_row_missing_its_newline(tmp_path: Path) -> None:
    file = append_results([ROW], tmp_path)
    file.write_bytes(file.read_bytes().rstrip(b"\n"))
    append_results([replace(ROW, seed=1)], tmp_path)
    assert sorted(load_results(tmp_path)["seed"]) == [0, 1]
    assert not file.with_name("results.jsonl.torn").exists()


def test_corrupt_middle_line_is_named_and_skippable(tmp_path: Path) -> None:
    file = append_results([ROW, replace(ROW, seed=1), replace(ROW, seed=2)], tmp_path)
    lines = file.read_text().splitlines(keepends=True)
    file.write_text(lines[0] + '{"metric": "acc\n' + lines[2])
    with pytest.raises(ResultsError, match=r"results\.jsonl:2 is not JSON .*load_results\(skip_bad_lines=True\)"):
        load_results(tmp_path)
    with pytest.warns(ResultsWarning, match=r"skipped 1 unreadable line\(s\): 2"):
        frame = load_results(tmp_path, skip_bad_lines=True)
    assert sorted(frame["seed"]) == [0, 2]


def test_same_named_datasets_stay_apart_with_unique_display_names(tmp_path: Path) -> None:
    """Issue 12.3: folder:/a/base and folder:/b/base are two datasets, not two seeds of one."""
    a = replace(ROW, dataset="base", dataset_fingerprint="a" * 64, dataset_spec="folder:/data/a/base", value=1.0)
    b = replace(a, dataset_fingerprint="b" * 64, dataset_spec="folder:/data/b/base", value=0.5, store_fingerprint="g")
    append_results([a, b, replace(a, seed=1)], tmp_path)
    frame = load_results(tmp_path)
    assert sorted(frame["dataset"]) == ["a/base", "a/base", "b/base"]
    assert set(frame["dataset_name"]) == {"base"}
    assert len(load_results(tmp_path, dataset="base")) == 3 and len(load_results(tmp_path, dataset="b/base")) == 1


def test_two_manifests_of_one_folder_and_legacy_rows(tmp_path: Path) -> None:
    one = replace(ROW, dataset="csv", dataset_fingerprint="1" * 64, dataset_spec="csv:/x/csv/one.csv")
    two = replace(ROW, dataset="csv", dataset_fingerprint="2" * 64, dataset_spec="csv:/x/csv/two.csv", seed=1)
    same_path = replace(one, dataset_fingerprint="3" * 64, seed=2)  # the manifest's files changed since
    append_results([one, two, same_path], tmp_path)
    names = load_results(tmp_path).set_index("seed")["dataset"]
    assert names.to_dict() == {0: "csv/one.csv@11111111", 1: "csv/two.csv", 2: "csv/one.csv@33333333"}
    legacy = tmp_path / "legacy"
    old = {k: v for k, v in ROW.to_dict().items() if k not in ("dataset_fingerprint", "dataset_spec")}
    (legacy / "results.jsonl").parent.mkdir()
    (legacy / "results.jsonl").write_text(json.dumps(old) + "\n")
    append_results([replace(ROW, seed=1, dataset_fingerprint="f" * 64, dataset_spec="folder:/d/synth")], legacy)
    assert load_results(legacy)["dataset"].tolist() == ["synth", "synth"]  # one fingerprint: the old rows join it
