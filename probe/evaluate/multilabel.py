"""Multi-label head runners: per-label probabilities and F1 thresholds tuned off the evaluated split.

A multi-label :class:`~probe.evaluate.data.EvalData` holds (n, C) targets (1, 0, -1 ignored). Each
runner fits its multi-label head on every draw (the linear head batches every draw × label × CV
problem) and returns (n_eval, C) per-label probabilities plus one F1 threshold per label, tuned
without the evaluated split:

- ``"val"``: full-data runs on a store with a validation split tune on its predictions (the same
  split the full-data linear head already selects C on);
- ``"train"``: every other run tunes on the labelled training draw itself, the only labels a
  label-efficiency run may use — in-sample predictions for the linear and prototype heads, and
  leave-one-out votes for kNN (a training row's own vote would make every cut look perfect).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from probe.evaluate.config import Evaluation, PlanConfig, Task, register_runner
from probe.evaluate.data import EvalData, Pool
from probe.evaluate.preprocessing import transform_pools
from probe.evaluate.runners import fit_linear_draws, linear_options, policy_groups
from probe.metrics import multilabel as ML


def _tune_on_val(data: EvalData, task: Task) -> bool:
    return task.protocol == "full" and data.val is not None


def _tuned(y: np.ndarray, proba: np.ndarray, source: str) -> dict[str, Any]:
    thresholds = ML.tune_thresholds(y, proba)
    return {"thresholds": [round(float(t), 6) for t in thresholds], "threshold_source": source}


@register_runner("knn", family="multi-label")
def run_knn(data: EvalData, tasks: list[Task], plan: PlanConfig) -> list[Evaluation]:
    """Per-label kNN vote mass on every draw; k is capped at the draw size - 1 (leave-one-out tuning)."""
    from probe.heads.multilabel import MultiLabelKNNProbe

    cfg = plan.knn
    out: list[Evaluation] = []
    for task in tasks:
        t0 = time.perf_counter()
        X, Y = data.train.X[task.draw.rows], data.train.y[task.draw.rows]
        ks = {k: max(1, min(k, Y.shape[0] - 1)) for k in cfg.k}
        device = "cpu" if plan.device == "cpu" else "auto"
        probe = MultiLabelKNNProbe(
            k=sorted(set(ks.values())), vote=cfg.vote, temperature=cfg.temperature, device=device
        )
        probas = probe.fit(X, Y).predict_proba_all(data.test.X)
        if _tune_on_val(data, task):
            assert data.val is not None
            tune_y, tune, source = data.val.y, probe.predict_proba_all(data.val.X), "val"
        elif Y.shape[0] > max(ks.values()):
            tune_y, tune, source = Y, probe.loo_proba_all(), "train-loo"
        else:  # a single training row: nothing to leave out
            tune_y, tune, source = Y, probe.predict_proba_all(X), "train"
        seconds = (time.perf_counter() - t0) / len(ks)
        for k_req, k in ks.items():
            params = {"k": k, "k_requested": k_req, "vote": cfg.vote, "temperature": cfg.temperature}
            params |= {"metric": "cosine", "index": type(probe.knn_.index_).__name__, "device": probe.knn_.device_}
            params |= _tuned(tune_y, tune[k], source)
            head = f"knn-k{k_req}"
            out.append(Evaluation(task=task, head=head, params=params, proba=probas[k], seconds=seconds))
    return out


@register_runner("prototype", family="multi-label")
def run_prototype(data: EvalData, tasks: list[Task], plan: PlanConfig) -> list[Evaluation]:
    """Per-label positive/negative prototypes on every draw."""
    from probe.heads.multilabel import MultiLabelPrototypeProbe

    cfg = plan.prototype
    out: list[Evaluation] = []
    for task in tasks:
        t0 = time.perf_counter()
        X, Y = data.train.X[task.draw.rows], data.train.y[task.draw.rows]
        probe = MultiLabelPrototypeProbe(method=cfg.method, temperature=cfg.temperature).fit(X, Y)
        val = data.val if _tune_on_val(data, task) else None
        tuned = (
            _tuned(Y, probe.predict_proba(X), "train")
            if val is None
            else _tuned(val.y, probe.predict_proba(val.X), "val")
        )
        params = {"method": cfg.method, "temperature": cfg.temperature, **tuned}
        params["degenerate_labels"] = [data.classes[j] for j in np.flatnonzero(probe.degenerate_)]
        proba = probe.predict_proba(data.test.X)
        out.append(
            Evaluation(task=task, head="prototype", params=params, proba=proba, seconds=time.perf_counter() - t0)
        )
    return out


def _linear_params(probe: Any, data: EvalData, cfg: Any) -> dict[str, Any]:
    return {
        "C": [None if np.isnan(c) else float(c) for c in probe.C_],
        "selection": list(probe.selection_),
        "select_metric": probe.select_metric,
        "standardize": bool(probe.standardize),  # as applied: pool preprocessing policies turn it off
        "refit": cfg.refit,
        "n_iter": int(np.max(probe.n_iter_)),
        "converged": bool(np.all(probe.converged_)),
        "degenerate_labels": [data.classes[j] for j in np.flatnonzero(probe.degenerate_)],
        "solver": "probe-lbfgs-batched-ovr",
        "precision": str(probe.dtype_),
        "device": str(probe.device_),
    }


@register_runner("linear", family="multi-label")
def run_linear(data: EvalData, tasks: list[Task], plan: PlanConfig) -> list[Evaluation]:
    """One-vs-rest logistic regression with a C per label over every draw (see
    :func:`~probe.evaluate.runners.fit_linear_draws`; the batch holds every draw × label × CV problem)."""
    from probe.heads.multilabel_linear import DEFAULT_SELECT_METRIC, fit_multilabel_linear_probes

    done: dict[int, Evaluation] = {}
    for policy, group in policy_groups(plan, tasks):
        pools = transform_pools(data, policy)
        cfg, train = plan.linear, pools.train
        options = linear_options(plan, select_metric=DEFAULT_SELECT_METRIC, preprocessing=policy)

        def fit(rows: list[np.ndarray], val: Pool | None, train: Pool = train, options: Any = options) -> list[Any]:
            X_val, Y_val = (None, None) if val is None else (val.X, val.y)
            return fit_multilabel_linear_probes(train.X, train.y, rows, X_val=X_val, Y_val=Y_val, config=options)

        for task, probe, seconds in fit_linear_draws(pools, group, fit):
            t0 = time.perf_counter()
            if _tune_on_val(pools, task):
                assert pools.val is not None
                tuned = _tuned(pools.val.y, probe.predict_proba(pools.val.X), "val")
            else:
                rows = task.draw.rows
                tuned = _tuned(train.y[rows], probe.predict_proba(train.X[rows]), "train")
            params = {**_linear_params(probe, pools, cfg), **tuned, "preprocessing": policy}
            proba = probe.predict_proba(pools.test.X)
            done[id(task)] = Evaluation(task, "linear", params, proba, seconds + time.perf_counter() - t0)
    return [done[id(t)] for t in tasks]
