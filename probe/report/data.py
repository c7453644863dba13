"""Result rows → per-seed curve points, seed summaries and leaderboards (pure pandas, no files)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from probe.errors import MetricError, ResultsError
from probe.metrics import MIN_SEEDS, mean_ci, metric_range, paired_comparison
from probe.results import IDENTITY_FIELDS
from probe.setups import label_setups

RUN_HINT = "run `probe curve` (or `probe linear`, `probe knn`, `probe fewshot`) first"
REQUIRED_COLUMNS = (*IDENTITY_FIELDS, "value", "labels_per_class")  # what a curve point needs
ALL = "all"  # level label of the whole training split ("full" protocol, shots "all", fraction 1)
EPISODES = "episodes"  # regime of episodic few-shot rows: drawn as their own line, never merged with draws
FRACTIONS = "fractions"  # regime of fraction rows of a line that also has shot rows (not class-balanced draws)
SERIES_KEYS = ["dataset", "backbone", "pooling", "head_name", "regime"]  # one line of a figure
POINT_KEYS = [*SERIES_KEYS, "level"]  # one point of a line; seeds vary within it


def metric_rows(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of one metric that carry a value, named by setup (:func:`probe.setups.label_setups`, when
    ``results`` did not come from :func:`probe.results.load_results`, which does it already).

    Raises:
        ResultsError: the table is empty, lacks a needed column, or has no finite value for ``metric``.
        MetricError: ``metric`` is absent from the table (the message lists the metrics present).
    """
    if results is None or len(results) == 0:
        raise ResultsError(f"the results table is empty: there is nothing to report; {RUN_HINT}")
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise ResultsError(
            f"the results table lacks the columns {', '.join(missing)}; load it with "
            "probe.results.load_results(...) so every result-row field is present"
        )
    results = labelled(results)
    rows = results[results["metric"] == metric]
    rows = test_rows(rows)
    if rows.empty:
        present = ", ".join(sorted(str(m) for m in results["metric"].dropna().unique()))
        raise MetricError(f"metric {metric!r} is not in the results; metrics present: {present}; pass one of them")
    rows = rows[np.isfinite(pd.to_numeric(rows["value"], errors="coerce").to_numpy(float))]
    if rows.empty:
        raise ResultsError(f"every {metric!r} value in the results is missing (NaN); report another metric")
    return rows[~ablated(rows)]  # modality-ablation rows are reported apart (see ablation_summary)


def labelled(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with its setups named (:func:`probe.setups.label_setups`) when it did not come from
    :func:`probe.results.load_results`, which names them already (a ``setup`` column, no ``setup_id``)."""
    if results is not None and "setup" in results and "setup_id" not in results:
        return label_setups(results.reset_index(drop=True))
    return results


def test_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows scored on the evaluation (test) split: validation-split rows select, they are not drawn."""
    if "split" not in rows:
        return rows
    val = (rows["split"] == "val").to_numpy()
    return rows if val.all() else rows[~val]


def val_points(results: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """Curve points of the rows scored on the validation split (None when there are none, or only those)."""
    if "split" not in results:
        return None
    rows = results[(results["metric"] == metric) & (results["split"] == "val")]
    if rows.empty or len(rows) == int((results["metric"] == metric).sum()):
        return None
    rows = rows[np.isfinite(pd.to_numeric(rows["value"], errors="coerce").to_numpy(float))]
    return curve_points(rows[~ablated(rows)]) if len(rows) else None


def ablated(rows: pd.DataFrame) -> np.ndarray:
    """(n,) bool: rows scored with a modality removed at test time (``params.ablate`` set)."""
    params = rows["params"] if "params" in rows else [None] * len(rows)
    return np.array([isinstance(p, dict) and p.get("ablate") is not None for p in params], dtype=bool)


def ablation_summary(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Seed summaries of the modality-ablation rows beside the configurations they ablate.

    Each ablated configuration (dataset, backbone, pooling, head) appears once as evaluated
    (``removed`` = ``""``) and once per modality removed from the test split; the ``head_name`` of the
    ablated lines reads ``"<head> without <modality>"``.

    Returns:
        :func:`summarise` columns plus ``removed``; empty when the results hold no ablation rows.
    """
    rows = results[results["metric"] == metric] if "metric" in results else results.iloc[:0]
    rows = rows[np.isfinite(pd.to_numeric(rows["value"], errors="coerce").to_numpy(float))]
    mask = ablated(rows)
    if not mask.any():
        return pd.DataFrame()
    keys = ["dataset", "backbone", "pooling", "head_name"]
    configs = rows.loc[mask, keys].drop_duplicates()
    base = rows[~mask].merge(configs, on=keys, how="inner").assign(removed="")
    cut = rows[mask].assign(removed=[p["ablate"] for p in rows.loc[mask, "params"]])
    frame = pd.concat([base, cut], ignore_index=True)
    heads = zip(frame["head_name"], frame["removed"], strict=True)
    frame["head_name"] = [h if not r else f"{h} without {r}" for h, r in heads]
    summary = summarise(curve_points(frame))
    removed = {h: r for h, r in zip(frame["head_name"], frame["removed"], strict=True)}
    return summary.assign(removed=[removed[h] for h in summary["head_name"]])


def curve_points(rows: pd.DataFrame) -> pd.DataFrame:
    """One point per (dataset, backbone, pooling, head_name, regime, level, seed), with its x position.

    Levels are ``"1"``, ``"2"``, ... for shots, ``"10%"`` for fractions and ``"all"`` for the whole
    training split; x is the shot count, or the mean ``labels_per_class`` of the level's rows. A point
    evaluated twice (a re-run appended to the table) keeps its latest row.

    Args:
        rows: rows of one metric (see :func:`metric_rows`).

    Returns:
        Columns ``dataset, backbone, pooling, head_name, regime, level, x, seed, value, ci_low, ci_high,
        series`` (``series`` is the line's legend label).
    """
    frame = rows.copy()
    levels = [_level_of(p, s, f) for p, s, f in zip(frame["protocol"], frame["shots"], frame["fraction"], strict=True)]
    frame["regime"] = [lv[0] for lv in levels]
    frame["level"] = [lv[1] for lv in levels]
    frame["x"] = [lv[2] for lv in levels]
    frame["regime"] = _merge_lone_fractions(frame)
    for col in ("ci_low", "ci_high"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame else math.nan
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    if "time" in frame:
        frame = frame.sort_values("time", kind="stable")
    frame = frame.drop_duplicates(subset=[*POINT_KEYS, "seed"], keep="last")
    frame["x"] = _fill_level_x(frame)
    frame["series"] = _series_labels(frame)
    cols = [
        *POINT_KEYS,
        "x",
        "seed",
        "value",
        "ci_low",
        "ci_high",
        "series",
        *(["metric"] if "metric" in frame else []),
    ]
    return frame[cols].sort_values([*POINT_KEYS[:-1], "x", "seed"], kind="stable").reset_index(drop=True)


def _level_of(protocol: Any, shots: Any, fraction: Any) -> tuple[str, str, float]:
    """(regime, level label, x or NaN when x comes from ``labels_per_class``) of one row."""
    regime = EPISODES if protocol == EPISODES else ""
    if _missing(shots):
        if protocol == "full":
            return regime, ALL, math.nan
        f = math.nan if _missing(fraction) else float(fraction)
        if not math.isfinite(f) or f <= 0:
            raise ResultsError(
                f"a {protocol!r} row has neither shots nor a positive fraction (fraction={fraction!r}); "
                "remove it from the results or re-run that evaluation"
            )
        return (regime, ALL, math.nan) if f >= 1 else (regime or FRACTIONS, f"{f * 100:g}%", math.nan)
    if str(shots) == ALL or protocol == "full":
        return regime, ALL, math.nan
    try:
        n = int(float(shots))
    except (TypeError, ValueError):
        raise ResultsError(f"shots {shots!r} is neither a count nor 'all'; fix or remove those rows") from None
    return regime, str(n), float(n)


def _missing(v: Any) -> bool:
    return v is None or (not isinstance(v, str) and bool(pd.isna(v)))


def _merge_lone_fractions(frame: pd.DataFrame) -> pd.Series:
    """Fraction rows join their line unless it also has shot rows: stratified and class-balanced draws differ."""
    line = [frame[c] for c in ("dataset", "backbone", "pooling", "head_name")]
    is_shots = (frame["regime"] == "") & (frame["level"] != ALL)
    has_shots = is_shots.groupby(line, dropna=False).transform("any")
    return frame["regime"].mask((frame["regime"] == FRACTIONS) & ~has_shots, "")


def _fill_level_x(frame: pd.DataFrame) -> pd.Series:
    """x of "all" and fraction points: the mean labels per class of their (dataset, level), shared by every line."""
    lpc = pd.to_numeric(frame["labels_per_class"], errors="coerce").astype(float)
    level_x = lpc.groupby([frame["dataset"], frame["level"]], dropna=False).transform("mean")
    x = frame["x"].astype(float).fillna(level_x)
    # "all" always sits right of the largest shot level: with capped classes (shots above a class's
    # size) the mean labels per class of the full split can be smaller than the largest shot count
    is_all = frame["level"] == ALL
    largest = frame["x"].astype(float).groupby(frame["dataset"]).transform("max")
    x = x.where(~is_all | ~(x <= largest), 2 * largest)
    bad = frame.loc[~np.isfinite(x.to_numpy()) | (x <= 0)]
    if not bad.empty:
        first = bad.iloc[0]
        raise ResultsError(
            f"rows of dataset {first['dataset']!r} at level {first['level']!r} have no positive labels_per_class, "
            "so they cannot be placed on the label axis; re-run them with a current probe version"
        )
    return x


def _series_labels(frame: pd.DataFrame) -> pd.Series:
    """``backbone · head``, plus the pooling when a backbone has several, plus the regime when there is one."""
    n_pool = frame.groupby(["dataset", "backbone"])["pooling"].transform("nunique")
    label = frame["backbone"].astype(str) + " · " + frame["head_name"].astype(str)
    label = label.where(n_pool <= 1, label + " (" + frame["pooling"].astype(str) + ")")
    return label.where(frame["regime"] == "", label + " · " + frame["regime"].astype(str))


def summarise(points: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % CI across seeds per point of every line.

    With two or more seeds the CI is Student-t across seeds (:func:`probe.metrics.mean_ci`). With one
    seed, or seeds whose values are all equal (identical draws, such as a deterministic head on the
    whole training split), it is the row's own test-set bootstrap CI: a zero-width seed interval would
    hide the test-set uncertainty. Seed intervals are clipped to the metric's range
    (:func:`probe.metrics.metric_range`, when ``points`` has a ``metric`` column) and flagged
    (``few_seeds``) below :data:`probe.metrics.MIN_SEEDS` seeds.

    Returns:
        Columns ``dataset, backbone, pooling, head_name, regime, level, x, series, n_seeds, mean, ci_low,
        ci_high, ci_source, few_seeds`` (``ci_source`` is ``"seeds"``, ``"bootstrap"`` or ``"none"``).
    """
    records = []
    for key, group in points.groupby(POINT_KEYS, sort=False, dropna=False):
        values = group["value"].to_numpy(float)
        bounds = metric_range(str(group["metric"].iloc[0])) if "metric" in group else None
        if len(values) >= 2 and np.ptp(values) > 0:
            mean, low, high = (float(v) for v in mean_ci(values, bounds=bounds))
            source = "seeds"
        else:
            mean = float(values.mean())
            low, high = float(group["ci_low"].iloc[-1]), float(group["ci_high"].iloc[-1])
            source = "bootstrap" if math.isfinite(low) and math.isfinite(high) else "none"
        records.append(
            {
                **dict(zip(POINT_KEYS, key, strict=True)),
                "x": float(group["x"].iloc[0]),
                "series": group["series"].iloc[0],
                "n_seeds": len(values),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "ci_source": source,
                "few_seeds": source == "seeds" and len(values) < MIN_SEEDS,
            }
        )
    return pd.DataFrame.from_records(records)


#: Leaderboard unit ("backbone", or "head" with a single backbone) → the summary column naming it.
UNIT_COLUMNS = {"backbone": "backbone", "head": "head_name"}
#: Heads in the order the fixed selection rule prefers them (the linear probe is the usual reference).
RULE_HEADS = ("linear", "prototype", "labelspread", "seg-linear", "seg-knn")


def rank(points: pd.DataFrame, summary: pd.DataFrame, *, val_points: pd.DataFrame | None = None) -> pd.DataFrame:
    """Leaderboard rows of every dataset (see :func:`_rank_dataset`), in dataset order.

    Args:
        points: test-split curve points (:func:`curve_points`).
        summary: their :func:`summarise`.
        val_points: curve points of the same configurations scored on the validation split, if any.
    """
    frames = [
        _rank_dataset(
            points[points["dataset"] == ds],
            summary[summary["dataset"] == ds],
            None if val_points is None else val_points[val_points["dataset"] == ds],
        )
        for ds in _datasets(summary)
    ]
    return pd.concat(frames, ignore_index=True)


def _datasets(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["dataset"].unique(), key=str)


def _rank_dataset(points: pd.DataFrame, summary: pd.DataFrame, val_points: pd.DataFrame | None) -> pd.DataFrame:
    """Rank backbones (or heads when there is one backbone), each by one configuration chosen without test scores.

    A unit's configuration is the one with the best validation mean where validation rows exist for
    it, else the rule fixed in advance (:func:`_rule_choice`: the linear head, the first pooling). Units
    are ranked by their mean over the (regime, level, seed) points that every ranked configuration has
    ("score"), and Δ = other − leader is the paired comparison on exactly those points, so the rank and
    Δ measure one quantity. Fewer than 2 shared points: no Δ (``n_pairs`` says how many there were).
    """
    unit = "backbone" if summary["backbone"].nunique() >= 2 else "head"
    col = UNIT_COLUMNS[unit]
    chosen = [_choose(summary[summary[col] == name], val_points, unit) for name in summary[col].unique()]
    configs = [(_config_points(points, row), how) for row, how in chosen]
    shared = set.intersection(*(set(_point_keys(p)) for p, _ in configs))
    scored = []
    for (row, how), (pts, _) in zip(chosen, configs, strict=True):
        on = pts[[k in shared for k in _point_keys(pts)]]
        score = float(on["value"].mean()) if len(on) else math.nan
        scored.append((score, row, how, on))
    scored.sort(key=lambda t: -t[0] if math.isfinite(t[0]) else math.inf)
    leader = scored[0][3]
    records = []
    for i, (score, row, how, on) in enumerate(scored):
        record = {
            "dataset": row["dataset"],
            "rank": i + 1,
            "unit": unit,
            "name": row[col],
            "config": _config_label(row, unit),
            "selection": how,
            "score": score,
            "n_points": len(on),
            **{k: row[k] for k in ("backbone", "pooling", "head_name", "regime", "level", "x", "n_seeds")},
            **{k: row[k] for k in ("mean", "ci_low", "ci_high", "ci_source", "few_seeds")},
        }
        records.append({**record, **_compare(on, leader, is_leader=i == 0)})
    return pd.DataFrame.from_records(records)


def _point_keys(points: pd.DataFrame) -> list[tuple[str, str, int]]:
    return list(zip(points["regime"], points["level"], points["seed"], strict=True))


def _choose(configs: pd.DataFrame, val_points: pd.DataFrame | None, unit: str) -> tuple[pd.Series, str]:
    """(summary row at the reference level of the chosen configuration, how it was chosen)."""
    configs = configs.assign(at_reference=_at_reference(configs))
    configs = configs.sort_values(["at_reference", "x"], ascending=False, kind="stable")
    heads = configs.drop_duplicates(subset=["backbone", "pooling", "head_name", "regime"])
    if val_points is not None and not val_points.empty:
        val_means = []
        for _, row in heads.iterrows():
            pts = _config_points(val_points, row)
            val_means.append(float(pts["value"].mean()) if len(pts) else math.nan)
        if any(math.isfinite(v) for v in val_means):
            best = int(np.nanargmax(val_means))
            return heads.iloc[best], "validation mean"
    return _rule_choice(heads, unit)


def _rule_choice(heads: pd.DataFrame, unit: str) -> tuple[pd.Series, str]:
    """The configuration a rule fixed in advance picks: a preferred head, then curves before episodes, then pooling."""
    base = [str(h).split(" ")[0] for h in heads["head_name"]]
    order = [RULE_HEADS.index(b) if b in RULE_HEADS else len(RULE_HEADS) for b in base]
    ranked = heads.assign(_order=order, _episodes=heads["regime"] == EPISODES)
    ranked = ranked.sort_values(["_order", "_episodes", "pooling", "head_name"], kind="stable")
    first = ranked.iloc[0]
    head = str(first["head_name"]).split(" ")[0]
    rule = "rule: first pooling" if unit == "head" else f"rule: {head} head, first pooling"
    return first.drop(labels=["_order", "_episodes"]), rule


def _at_reference(summary: pd.DataFrame) -> pd.Series:
    curve = summary[summary["regime"] != EPISODES]
    pool = curve if not curve.empty else summary
    is_all = pool["level"] == ALL
    top = pool[is_all].iloc[0] if is_all.any() else pool.loc[pool["x"].idxmax()]
    ref_regime, ref_level = top["regime"], top["level"]
    return (summary["regime"] == ref_regime) & (summary["level"] == ref_level)


def _config_points(points: pd.DataFrame, row: pd.Series) -> pd.DataFrame:
    keep = np.ones(len(points), dtype=bool)
    for col in ("backbone", "pooling", "head_name", "regime"):
        keep &= (points[col] == row[col]).to_numpy()
    return points[keep]


def _config_label(row: pd.Series, unit: str) -> str:
    first = row["head_name"] if unit == "backbone" else row["backbone"]
    label = f"{first} ({row['pooling']})"
    return f"{label} · {row['regime']}" if row["regime"] else label


def _compare(other: pd.DataFrame, leader: pd.DataFrame, *, is_leader: bool) -> dict[str, float]:
    """Paired comparison other − leader on the (regime, level, seed) points both have."""
    out = dict.fromkeys(("delta", "delta_low", "delta_high", "p_value"), math.nan)
    if is_leader:
        return {**out, "n_pairs": math.nan}
    on = ["regime", "level", "seed"]
    pairs = other[[*on, "value"]].merge(leader[[*on, "value"]], on=on, suffixes=("_other", "_leader"))
    if len(pairs) < 2:
        return {**out, "n_pairs": float(len(pairs))}
    cmp = paired_comparison(pairs["value_other"].to_numpy(float), pairs["value_leader"].to_numpy(float))
    return {
        "delta": float(cmp.mean_diff),
        "delta_low": float(cmp.ci_low),
        "delta_high": float(cmp.ci_high),
        "p_value": float(cmp.wilcoxon_p),
        "n_pairs": float(cmp.n_pairs),
    }
