"""Reports: curve summaries against scipy, leaderboards, figures and self-contained HTML."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from probe.errors import ConfigError, MetricError, ResultsError
from probe.report import ReportFiles, leaderboard, summary_table, write_report
from probe.report.plots import curve_figure, panel_figure
from probe.results import ResultRow, append_results, load_results

SHOTS: tuple[int | str, ...] = (1, 2, 4, 8, "all")
SEEDS = (0, 1, 2, 3, 4)
N_CLASSES = 8
N_TRAIN_ALL = 11_959  # bloodmnist's training split: "all" sits at 1494.9 labels per class
HEAD_OFFSET = {"knn": -0.04, "linear": 0.0, "prototype": -0.02}


def _row(**fields: Any) -> dict[str, Any]:
    """One result row with the fields the test does not care about filled in."""
    shots = fields.get("shots")
    n_train = N_TRAIN_ALL if shots == "all" else (N_CLASSES * shots if isinstance(shots, int) else 1_196)
    value = fields["value"]
    row = {
        "run_id": f"run-{fields['backbone']}",
        "time": f"2025-01-01T00:00:{fields.get('seed', 0):02d}Z",
        "dataset": "bloodmnist",
        "pooling": "cls",
        "protocol": "full" if shots == "all" else "shots",
        "fraction": math.nan,
        "metric": "balanced_accuracy",
        "ci_low": value - 0.03,
        "ci_high": value + 0.03,
        "ci_method": "bootstrap-1000",
        "n_train": n_train,
        "n_test": 3421,
        "n_classes": N_CLASSES,
        "labels_per_class": n_train / N_CLASSES,
        "params": {"C": 1.0},
        "split": "test",
        "store_fingerprint": f"{fields['backbone']}-fingerprint-0123456789abcdef",
        "sample_digest": f"{shots}-{fields.get('seed', 0)}",
        "seconds": 0.1,
        "versions": {"probe": "0.1.0", "torch": "2.5.1"},
    }
    row.update(fields)
    return row


def curve_rows(backbones: dict[str, float], *, heads: tuple[str, ...] = ("knn", "linear", "prototype")) -> pd.DataFrame:
    """Backbones × heads × shots × seeds; the value rises with log2(shots), plus a per-seed jitter.

    Every backbone sees the same jitter on the same (head, shots, seed), so a backbone with a higher
    base is better on every paired point.
    """
    rng = np.random.default_rng(0)
    jitter = {(h, s, seed): rng.normal(0, 0.02) for h in heads for s in SHOTS for seed in SEEDS}
    rows = []
    for backbone, base in backbones.items():
        for head in heads:
            for shots in SHOTS:
                step = math.log2(N_TRAIN_ALL / N_CLASSES) if shots == "all" else math.log2(float(shots))
                for seed in SEEDS:
                    value = base + HEAD_OFFSET.get(head, 0.0) + 0.04 * step + jitter[head, shots, seed]
                    rows.append(_row(backbone=backbone, head_name=head, shots=shots, seed=seed, value=value))
                    rows.append(_row(backbone=backbone, head_name=head, shots=shots, seed=seed, value=value + 0.05,
                                     metric="accuracy"))  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["shots"] = frame["shots"].astype(object)
    return frame


@pytest.fixture(scope="module")
def two_backbones() -> pd.DataFrame:
    return curve_rows({"dinov2-small": 0.40, "resnet50": 0.30})


@pytest.fixture(scope="module")
def report(two_backbones: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    second = curve_rows({"dinov2-small": 0.5}, heads=("knn", "linear")).assign(dataset="derma/mnist")
    rows = pd.concat([two_backbones, second], ignore_index=True)
    return write_report(rows, tmp_path_factory.mktemp("report"), source="results/")


def test_report_writes_markdown_html_and_figures(report: ReportFiles) -> None:
    assert [p.name for p in report.figures] == [
        "bloodmnist-balanced_accuracy.png",  # two backbones × three heads: a panel per head ...
        "bloodmnist-balanced_accuracy.svg",
        "bloodmnist-balanced_accuracy-by-backbone.png",  # ... and the transpose, a panel per backbone
        "bloodmnist-balanced_accuracy-by-backbone.svg",
        "derma_mnist-balanced_accuracy.png",  # a file name made safe; one backbone: one figure
        "derma_mnist-balanced_accuracy.svg",
    ]
    for path in (report.markdown, report.html, *report.figures):
        assert path.is_file() and path.stat().st_size > 0
    assert report.figures[0].read_bytes().startswith(b"\x89PNG")
    assert "<svg" in report.figures[1].read_text()
    md = report.markdown.read_text()
    alt = "balanced accuracy against labels per class on bloodmnist"
    assert f"![{alt}, one panel per head](figures/bloodmnist-balanced_accuracy.png)" in md
    by_backbone = "figures/bloodmnist-balanced_accuracy-by-backbone.png"
    assert f"![{alt}, one panel per backbone]({by_backbone})" in md
    assert "*One panel per head, one colour per backbone.*" in md
    assert md.index("one panel per head](") < md.index("one panel per backbone](") < md.index("### Leaderboard")
    assert "### Leaderboard (balanced accuracy)" in md and "### Label-efficiency curve (balanced accuracy)" in md
    assert "Results: results/" in md and "probe 0.1.0; torch 2.5.1" in md
    assert "Embedding stores: dinov2-small, resnet50-fin." in md  # short store fingerprints
    assert (
        md.index("## bloodmnist") < md.index("| # | backbone |") < md.index("## derma/mnist") < md.index("| # | head |")
    )


def test_html_is_self_contained(report: ReportFiles) -> None:
    page = report.html.read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert page.count('src="data:image/png;base64,') == 3  # bloodmnist: per head and per backbone; derma: one
    assert 'one panel per backbone"><figcaption>The same points transposed' in page
    assert "<table>" in page and "dinov2-small" in page


def test_leaderboard_ranks_uniformly_better_backbone_first(two_backbones: pd.DataFrame) -> None:
    board = leaderboard(two_backbones, metric="balanced_accuracy")
    assert board["unit"].tolist() == ["backbone", "backbone"]
    assert board["name"].tolist() == ["dinov2-small", "resnet50"]
    leader, other = board.iloc[0], board.iloc[1]
    assert leader["head_name"] == "linear" and leader["level"] == "all"  # best head, at the "all" level
    assert math.isnan(leader["p_value"])
    assert other["n_pairs"] == len(SHOTS) * len(SEEDS)  # the whole curve, paired by level and seed
    assert other["delta"] == pytest.approx(-0.10)
    assert other["delta_high"] < 0 and other["p_value"] < 0.05


def test_single_backbone_ranks_heads(tmp_path: Path) -> None:
    rows = curve_rows({"dinov2-small": 0.40})
    board = leaderboard(rows, metric="balanced_accuracy")
    assert board["unit"].unique().tolist() == ["head"]
    assert board["name"].tolist() == ["linear", "prototype", "knn"]
    assert (board["p_value"].iloc[1:] < 0.05).all()
    files = write_report(rows, tmp_path, formats=("png",))
    assert "| # | head | configuration | chosen by |" in files.markdown.read_text()


def test_leaderboard_never_selects_on_test_and_ranks_by_the_delta_quantity(two_backbones: pd.DataFrame) -> None:
    # a side run of a head that wins on test must not become the backbone's representative (rule: linear)
    lucky = curve_rows({"resnet50": 0.9}, heads=("knn-k10",))
    board = leaderboard(pd.concat([two_backbones, lucky], ignore_index=True), metric="balanced_accuracy")
    assert board["name"].tolist() == ["dinov2-small", "resnet50"]
    assert set(board["head_name"]) == {"linear"} and set(board["selection"]) == {"rule: linear head, first pooling"}
    leader, other = board.iloc[0], board.iloc[1]
    assert other["delta"] == pytest.approx(other["score"] - leader["score"])  # rank and Δ: one quantity
    assert other["n_pairs"] == other["n_points"] == len(SHOTS) * len(SEEDS)
    # validation rows choose instead, where they exist: prototype is best on validation for resnet50
    val = curve_rows({"resnet50": 0.3}, heads=("prototype",)).assign(split="val")
    val["value"] += 0.5
    board = leaderboard(pd.concat([two_backbones, val], ignore_index=True), metric="balanced_accuracy")
    resnet = board[board["name"] == "resnet50"].iloc[0]
    assert resnet["head_name"] == "prototype" and resnet["selection"] == "validation mean"


def test_a_comparison_on_one_shared_point_says_so(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        [_row(backbone="a", head_name="linear", shots="all", seed=0, value=0.8),
         _row(backbone="b", head_name="linear", shots="all", seed=0, value=0.7)]
    )  # fmt: skip
    board = leaderboard(rows, metric="balanced_accuracy")
    assert board["n_pairs"].iloc[1] == 1 and math.isnan(board["delta"].iloc[1])
    md = write_report(rows, tmp_path, formats=("png",)).markdown.read_text()
    assert "needs at least 2 shared points" in md and "— (1 shared point(s); needs ≥ 2)" in md


def test_summary_table_matches_scipy(two_backbones: pd.DataFrame) -> None:
    summary = summary_table(two_backbones, metric="balanced_accuracy")
    assert len(summary) == 2 * 3 * len(SHOTS)
    point = summary.query("backbone == 'resnet50' and head_name == 'knn' and level == '4'").iloc[0]
    raw = two_backbones.query(
        "backbone == 'resnet50' and head_name == 'knn' and shots == 4 and metric == 'balanced_accuracy'"
    )["value"]
    values = raw.to_numpy(float)
    low, high = scipy.stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=scipy.stats.sem(values))
    assert point["n_seeds"] == 5 and point["ci_source"] == "seeds"
    assert point["mean"] == pytest.approx(np.mean(values))
    assert (point["ci_low"], point["ci_high"]) == pytest.approx((low, high))
    assert point["x"] == 4.0 and point["series"] == "resnet50 · knn"


def test_all_level_sits_at_labels_per_class(two_backbones: pd.DataFrame) -> None:
    summary = summary_table(two_backbones, metric="balanced_accuracy")
    levels = summary.drop_duplicates("level").sort_values("x")
    assert levels["level"].tolist() == ["1", "2", "4", "8", "all"]
    assert levels["x"].iloc[-1] == pytest.approx(N_TRAIN_ALL / N_CLASSES)


def test_single_seed_points_use_the_row_bootstrap_ci(two_backbones: pd.DataFrame) -> None:
    one_seed = two_backbones[two_backbones["seed"] == 0]
    summary = summary_table(one_seed, metric="balanced_accuracy")
    assert (summary["n_seeds"] == 1).all() and (summary["ci_source"] == "bootstrap").all()
    np.testing.assert_allclose(summary["ci_low"], summary["mean"] - 0.03)
    np.testing.assert_allclose(summary["ci_high"], summary["mean"] + 0.03)


def test_identical_seeds_fall_back_to_bootstrap_ci() -> None:
    rows = pd.DataFrame([_row(backbone="b", head_name="knn", shots="all", seed=s, value=0.8) for s in SEEDS])
    point = summary_table(rows, metric="balanced_accuracy").iloc[0]
    assert point["n_seeds"] == 5 and point["ci_source"] == "bootstrap"
    assert (point["ci_low"], point["ci_high"]) == pytest.approx((0.77, 0.83))


def _fraction_rows(head: str) -> list[dict[str, Any]]:
    return [_row(backbone="b", head_name=head, shots=None, protocol="fraction", fraction=0.1, seed=s,
                 value=0.6 + s / 100) for s in SEEDS]  # fmt: skip


def test_fractions_and_episodes_get_their_own_levels_and_lines() -> None:
    rows = pd.DataFrame(
        _fraction_rows("linear")
        + [_row(backbone="b", head_name="prototype", shots=4, protocol="episodes", seed=s, value=0.5) for s in SEEDS]
    )
    summary = summary_table(rows, metric="balanced_accuracy").set_index("level")
    assert summary.loc["10%", "x"] == pytest.approx(1_196 / N_CLASSES)
    assert summary.loc["10%", "series"] == "b · linear"  # a line of fractions only
    assert summary.loc["4", "series"] == "b · prototype · episodes"


def test_fractions_beside_shots_are_a_line_of_their_own() -> None:
    shots = [_row(backbone="b", head_name="linear", shots=n, seed=s, value=0.5) for n in (2, 4, "all") for s in SEEDS]
    summary = summary_table(pd.DataFrame(shots + _fraction_rows("linear")), metric="balanced_accuracy")
    lines = summary.groupby("series")["level"].apply(list).to_dict()
    assert lines == {"b · linear": ["2", "4", "all"], "b · linear · fractions": ["10%"]}


def test_figure_has_a_log2_axis_with_an_all_tick_and_a_band_per_line(two_backbones: pd.DataFrame) -> None:
    summary = summary_table(two_backbones, metric="balanced_accuracy")
    fig = curve_figure(summary, title="t", metric_label="balanced accuracy")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8", "all"]
    assert ax.get_xticks()[-1] == pytest.approx(N_TRAIN_ALL / N_CLASSES)
    assert len(ax.get_lines()) == 6 and len(ax.collections) == 6  # one CI band per line
    assert ax.get_ylabel() == "balanced accuracy" and len(fig.legends) == 1


def test_small_multiples_and_their_transpose_stay_readable_with_ten_backbones() -> None:
    """A panel per head with ten colours, and the transpose: ten panels (three per row), a colour per head."""
    names = [f"timm:vit_small_patch16_224.variant_{i}_with_a_long_name" for i in range(10)]
    summary = summary_table(curve_rows({n: 0.3 + 0.01 * i for i, n in enumerate(names)}), metric="balanced_accuracy")
    by_head = panel_figure(summary, title="t", metric_label="balanced accuracy")
    shown = [ax for ax in by_head.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["knn", "linear", "prototype"]
    assert all(len(ax.get_lines()) == 10 for ax in shown)
    colours = {tuple(line.get_color()) for line in shown[0].get_lines()}
    assert len(colours) == 10  # ten backbones, ten distinct colours
    assert [t.get_text() for t in by_head.legends[0].get_texts()] == names
    by_backbone = panel_figure(summary, title="t", metric_label="balanced accuracy", panel="backbone")
    panels = [ax for ax in by_backbone.axes if ax.get_visible()]
    assert len(panels) == 10 and by_backbone.get_size_inches()[0] == pytest.approx(3 * 4.2)  # 4 rows of 3
    assert [ax.get_title().replace("\n", "") for ax in panels] == names  # long names wrap, never run over
    assert max(len(line) for ax in panels for line in ax.get_title().split("\n")) <= 40
    assert all(len(ax.get_lines()) == 3 for ax in panels)
    assert [t.get_text() for t in by_backbone.legends[0].get_texts()] == ["knn", "linear", "prototype"]
    with pytest.raises(ValueError, match="panel='pooling'"):
        panel_figure(summary, title="t", metric_label="balanced accuracy", panel="pooling")


def test_rerun_rows_keep_the_latest() -> None:
    old = _row(backbone="b", head_name="knn", shots=2, seed=0, value=0.1, time="2025-01-01T00:00:00Z")
    new = _row(backbone="b", head_name="knn", shots=2, seed=0, value=0.2, time="2025-02-01T00:00:00Z")
    summary = summary_table(pd.DataFrame([new, old]), metric="balanced_accuracy")
    assert summary["mean"].tolist() == [0.2]


def test_empty_results_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"empty.*run `probe curve`"):
        write_report(pd.DataFrame(), tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_unknown_metric_lists_the_metrics_present(two_backbones: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(MetricError, match=r"'macro_auroc' is not in the results; metrics present: accuracy, balanced_"):
        write_report(two_backbones, tmp_path, metric="macro_auroc")


def test_unknown_figure_format_is_refused(two_backbones: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\['jpg'\].*png, svg, pdf"):
        write_report(two_backbones, tmp_path, formats=["jpg"])


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    rows = curve_rows({"<script>alert(1)</script>": 0.4, "b|ad": 0.3}, heads=("linear",))
    files = write_report(rows, tmp_path, formats=("png",), title="<b>report</b>")
    page = files.html.read_text()
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;report&lt;/b&gt;" in page
    md = files.markdown.read_text()
    assert "<script>" not in md and "b\\|ad" in md


def test_report_reads_rows_loaded_from_jsonl(tmp_path: Path) -> None:
    """The frame load_results builds (string dtypes, object shots, None fractions) reports as is."""
    rows = curve_rows({"a": 0.4, "b": 0.3}, heads=("linear",))
    fields = {f.name for f in dataclasses.fields(ResultRow)}
    records = [{k: v for k, v in r.items() if k in fields} for r in rows.to_dict("records")]
    append_results([ResultRow(**{**r, "fraction": None}) for r in records], tmp_path / "results")
    loaded = load_results(tmp_path / "results")
    summary = summary_table(loaded, metric="balanced_accuracy")
    expected = summary_table(rows, metric="balanced_accuracy")
    np.testing.assert_allclose(summary["mean"], expected["mean"])
    assert summary["level"].tolist() == expected["level"].tolist()
    assert write_report(loaded, tmp_path / "report").html.is_file()


def test_report_files_are_replaced_not_rewritten_in_place(tmp_path: Path) -> None:
    """Issue 12.1: each report file is written under a temporary name and renamed over the old one, so a
    kill mid-write never leaves a half file (a new inode each time; nothing left behind)."""
    rows = curve_rows({"a": 0.4}, heads=("linear",))
    first = write_report(rows, tmp_path, formats=("png", "svg"))
    inodes = {p: p.stat().st_ino for p in (first.markdown, first.html, *first.figures)}
    second = write_report(rows, tmp_path, formats=("png", "svg"))
    assert all(p.stat().st_ino != inodes[p] for p in (second.markdown, second.html, *second.figures))
    left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(p.name for p in (second.markdown, second.html, *second.figures))
