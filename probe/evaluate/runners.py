"""Single-label head runners: each head over a plan's training draws → class probabilities on the evaluation split.

One runner per head. Runners take the plan's draws and do the least work that answers them all:
kNN answers every k from one search per draw, the linear head fits every few-shot draw (with its
cross-validation problems) in one batched solve, prototypes are a mean per class, and label
spreading builds one graph of the train split for every draw and solves them all at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from probe.evaluate.config import Evaluation, PlanConfig, Task, register_runner
from probe.evaluate.data import EvalData, Pool
from probe.evaluate.preprocessing import resolve_policy, transform_pools
from probe.evaluate.sampling import ALL

if TYPE_CHECKING:
    from probe.heads.linear import LinearProbeConfig


def full_proba(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Spread (n, len(classes)) probabilities into (n, n_classes) columns (absent classes get 0)."""
    if proba.shape[1] == n_classes and np.array_equal(classes, np.arange(n_classes)):
        return proba
    out = np.zeros((proba.shape[0], n_classes), dtype=np.float64)
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out


@register_runner("knn", family="single-label")
def run_knn(data: EvalData, tasks: list[Task], plan: PlanConfig) -> list[Evaluation]:
    """kNN on every draw; each requested k is capped at the draw size (recorded as ``k`` vs ``k_requested``)."""
    from probe.heads.knn import KNNProbe

    cfg = plan.knn
    out: list[Evaluation] = []
    for task in tasks:
        t0 = time.perf_counter()
        X, y = data.train.X[task.draw.rows], data.train.y[task.draw.rows]
        ks = {k: min(k, y.size) for k in cfg.k}
        # the plan's device is the linear solver's; FAISS-GPU is optional, so kNN falls back to the CPU
        # index (the index type is recorded in params) unless the CPU was asked for explicitly
        device = "cpu" if plan.device == "cpu" else "auto"
        probe = KNNProbe(k=sorted(set(ks.values())), vote=cfg.vote, temperature=cfg.temperature, device=device)
        probas = probe.fit(X, y).predict_proba_all(data.test.X)
        seconds = (time.perf_counter() - t0) / len(ks)
        for k_req, k in ks.items():
            params = {
                "k": k,
                "k_requested": k_req,
                "vote": cfg.vote,
                "temperature": cfg.temperature,
                "metric": "cosine",
                "index": type(probe.index_).__name__,
                "device": probe.device_,
            }
            out.append(
                Evaluation(
                    task=task,
                    head=f"knn-k{k_req}",
                    params=params,
                    proba=full_proba(probas[k], probe.classes_, data.n_classes),
                    seconds=seconds,
                )
            )
    return out


@register_runner("prototype", family="single-label")
def run_prototype(data: EvalData, tasks: list[Task], plan: PlanConfig) -> list[Evaluation]:
    """Nearest-prototype classification on every draw.

    ``simpleshot`` centres on the mean of the whole train split (its features, never its labels:
    SimpleShot's base-set mean), ``cosine`` on the support's own mean, ``centroid`` not at all.
    """
    from probe.heads.prototype import PrototypeProbe

    cfg = plan.prototype
    mean = data.train.X.mean(axis=0, dtype=np.float64) if cfg.method == "simpleshot" else None
    centre = {"simpleshot": "train-pool", "cosine": "support"}.get(cfg.method)
    out: list[Evaluation] = []
    queries: np.ndarray | None = None  # simpleshot: the test rows centred on the fixed mean, made once
    for task in tasks:
        t0 = time.perf_counter()
        X, y = data.train.X[task.draw.rows], data.train.y[task.draw.rows]
        probe = PrototypeProbe(method=cfg.method, temperature=cfg.temperature, mean=mean).fit(X, y)
        if mean is not None:
            queries = probe.transform(data.test.X) if queries is None else queries
            proba = probe.predict_proba(queries, transformed=True)
        else:
            proba = probe.predict_proba(data.test.X)
        proba = full_proba(proba, probe.classes_, data.n_classes)
        params = {"method": cfg.method, "temperature": cfg.temperature, "centre": centre}
        out.append(
            Evaluation(task=task, head="prototype", params=params, proba=proba, seconds=time.perf_counter() - t0)
        )
    return out


def _linear_params(probe: Any, cfg: Any) -> dict[str, Any]:
    return {
        "C": float(probe.C_),
        "selection": str(probe.selection_),
        "standardize": bool(probe.standardize),  # as applied: pool preprocessing policies turn it off
        "refit": cfg.refit,
        "n_iter": int(np.max(probe.n_iter_)),
        "converged": bool(np.all(probe.converged_)),
        "solver": "probe-lbfgs-batched",
        "precision": str(probe.dtype_),  # resolved: the plan's float32 products unless asked otherwise
        "selection_tol": cfg.selection_tol,
        "device": str(probe.device_),
    }


def linear_options(
    plan: PlanConfig, *, select_metric: str | None = None, preprocessing: str | None = None
) -> LinearProbeConfig:
    """The :class:`~probe.heads.linear.LinearProbeConfig` of a plan's linear head.

    Args:
        plan: the plan.
        select_metric: C-selection metric (None: the head's default).
        preprocessing: the policy the features went through (None: the plan's); support standardisation
            applies only under ``"support"``.
    """
    from probe.heads.linear import LinearProbeConfig

    cfg = plan.linear
    config = LinearProbeConfig(
        C=cfg.C,
        c_grid=cfg.c_grid,
        standardize=cfg.standardize and (preprocessing or plan.preprocessing) == "support",
        selection="auto" if cfg.selection == "fixed" else cfg.selection,
        refit=cfg.refit,
        max_iter=cfg.max_iter,
        selection_tol=cfg.selection_tol,
        precision=cfg.precision,
        device=plan.device,
        seed=plan.seed,
    )
    return config if select_metric is None else dataclasses.replace(config, select_metric=select_metric)


FitDraws = Callable[[list[np.ndarray], "Pool | None"], list[Any]]


def fit_linear_draws(data: EvalData, tasks: list[Task], fit: FitDraws) -> list[tuple[Task, Any, float]]:
    """(task, fitted probe, seconds) for every task, in task order, with the linear heads' protocol.

    Few-shot draws are fitted in one batched call without the validation split (C by CV inside each
    support: the validation labels are never used); each full-data draw is fitted on its own with
    the validation split (C on validation; CV inside train when there is none).

    Args:
        data: the pools.
        tasks: the plan's draws.
        fit: ``fit(rows per draw, validation pool or None)`` → one fitted probe per draw.
    """
    few = [t for t in tasks if t.draw.shots != ALL]
    fitted: dict[int, tuple[Task, Any, float]] = {}
    if few:
        t0 = time.perf_counter()
        probes = fit([t.draw.rows for t in few], None)
        share = (time.perf_counter() - t0) / len(few)
        fitted |= {id(t): (t, p, share) for t, p in zip(few, probes, strict=True)}
    for task in (t for t in tasks if t.draw.shots == ALL):
        t0 = time.perf_counter()
        (probe,) = fit([task.draw.rows], data.val)
        fitted[id(task)] = (task, probe, time.perf_counter() - t0)
    return [fitted[id(t)] for t in tasks]


def policy_groups(plan: PlanConfig, tasks: list[Task]) -> list[tuple[str, list[Task]]]:
    """The plan's tasks grouped by the preprocessing policy each one's linear head uses (``auto`` resolved)."""
    groups: dict[str, list[Task]] = {}
    for task in tasks:
        groups.setdefault(resolve_policy(plan.preprocessing, shots=task.draw.shots), []).append(task)
    return list(groups.items())


@register_runner("linear", family="single-label")
def run_linear(data: EvalData, tasks: list[Task], plan: PlanConfig) -> list[Evaluation]:
    """Logistic regression over every draw (see :func:`fit_linear_draws`) on the plan's preprocessed features."""
    from probe.heads.linear import fit_linear_probes

    done: dict[int, Evaluation] = {}
    for policy, group in policy_groups(plan, tasks):
        pools = transform_pools(data, policy)
        cfg, options, train = plan.linear, linear_options(plan, preprocessing=policy), pools.train

        def fit(rows: list[np.ndarray], val: Pool | None, train: Pool = train, options: Any = options) -> list[Any]:
            X_val, y_val = (None, None) if val is None else (val.X, val.y)
            return fit_linear_probes(train.X, train.y, rows, X_val=X_val, y_val=y_val, config=options)

        for task, probe, seconds in fit_linear_draws(pools, group, fit):
            t0 = time.perf_counter()
            proba = full_proba(probe.predict_proba(pools.test.X), probe.classes_, pools.n_classes)
            params = {**_linear_params(probe, cfg), "preprocessing": policy}
            done[id(task)] = Evaluation(task, "linear", params, proba, seconds + time.perf_counter() - t0)
    return [done[id(t)] for t in tasks]


@register_runner("labelspread", family="single-label")
def run_labelspread(data: EvalData, tasks: list[Task], plan: PlanConfig) -> list[Evaluation]:
    """Label spreading: a draw's rows are labelled, every other train row is unlabelled (its label is
    never read); one kNN graph of the train split and one batched solve serve every draw."""
    from probe.heads.labelspread import LabelSpreadingProbe, fit_label_spreading, predict_proba_shared

    cfg = plan.labelspread
    policy = resolve_policy(plan.preprocessing, shots=ALL, head="labelspread")
    data = transform_pools(data, policy)
    k = min(cfg.n_neighbors, data.train.n - 1)
    estimator = LabelSpreadingProbe(
        n_neighbors=k,
        alpha=cfg.alpha,
        weight=cfg.weight,
        power=cfg.power,
        class_mass=cfg.class_mass,
        max_iter=cfg.max_iter,
        tol=cfg.tol,
        device="cpu" if plan.device == "cpu" else "auto",
    )
    t0 = time.perf_counter()
    probes = fit_label_spreading(data.train.X, data.train.y, [t.draw.rows for t in tasks], estimator=estimator)
    probas = predict_proba_shared(probes, data.test.X)
    share = (time.perf_counter() - t0) / len(tasks)
    out = []
    for task, probe, proba in zip(tasks, probes, probas, strict=True):
        params = {
            "n_neighbors": k,
            "n_neighbors_requested": cfg.n_neighbors,
            "alpha": cfg.alpha,
            "weight": cfg.weight,
            "power": cfg.power,
            "class_mass": cfg.class_mass,
            "tol": cfg.tol,
            "n_unlabeled": data.train.n - probe.n_labeled_,
            "n_iter": int(probe.n_iter_),
            "converged": bool(probe.converged_),
            "graph": "knn-cosine-symmetric",
            "induction": "knn-weighted-spread-labels",
            "index": type(probe.index_.index_).__name__,
            "preprocessing": policy,
        }
        out.append(
            Evaluation(
                task=task,
                head="labelspread",
                params=params,
                proba=full_proba(proba, probe.classes_, data.n_classes),
                seconds=share,
            )
        )
    return out
