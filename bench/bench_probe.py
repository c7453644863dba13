"""Probing benchmark: batched heads vs scikit-learn on the same stored features, and a whole curve.

Run from the repository root (figures go to docs/benchmarks.md, between the probe markers):

    .venv/bin/python bench/bench_probe.py --data-root ../shared/data/medmnist

Feature sets: BloodMNIST embedded by efficientnet_lite0 (the store under embeddings/, extracted
first when missing) and a seeded synthetic 20k x 768, 10-class Gaussian set. In one run, per set:

  (a) few-shot sweep: shots 1..64 x seeds, each support's C chosen by stratified CV inside the
      support over the 9-point grid 1e-4..1e4 (C = 1 where a class has one example), then refit:
      ``fit_linear_probes`` (batched L-BFGS) vs the same selection as a scikit-learn loop
      (StandardScaler + LogisticRegression(lbfgs) per fold and C); mean test accuracy of both;
  (b) full-data grid: the same 9 C values fitted on train and scored on val, then refit at the best
      C: ``LinearProbe(c_grid=...)`` vs a scikit-learn loop; accuracy and relative objective gap
      at the chosen C;
  (c) kNN: ``KNNProbe`` vs ``KNeighborsClassifier(algorithm="brute", metric="cosine")``, k = 20
      (fit + predict), and a k list 10,20,100,200 (one search vs one sklearn model per k);
      predictions compared sample by sample;
  (d) the whole ``run_plan`` with 3 heads (shots 1..64 and all, 5 seeds; bootstrap CIs) on the
      BloodMNIST store.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from _shared import REPO
from _shared import cpu_name as _cpu_name
from _shared import write_section as _write_section

SHOTS = (1, 2, 4, 8, 16, 32, 64)
GRID = tuple(10.0**k for k in range(-4, 5))
#: scikit-learn's BLAS/OpenMP threads. 1 is its fastest setting on this 2-core VM (its default
#: threading ran the few-shot loop ~7x slower here), so the comparison is against its best.
SK_THREADS = int(os.environ.get("BENCH_SK_THREADS", "1"))


def synthetic(seed: int = 0, n_train: int = 20000, dim: int = 768, n_classes: int = 10):  # type: ignore[no-untyped-def]
    """Gaussian classes with a shared random covariance factor: hard enough that C matters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.35, size=(n_classes, dim))
    mix = rng.normal(0, 1 / np.sqrt(dim), size=(dim, dim))

    def draw(n: int):  # type: ignore[no-untyped-def]
        y = rng.integers(0, n_classes, n)
        X = (centres[y] + rng.normal(size=(n, dim)) @ mix * 3).astype(np.float32)
        return X, y

    (Xtr, ytr), (Xva, yva), (Xte, yte) = draw(n_train), draw(n_train // 10), draw(n_train // 5)
    return {
        "name": f"synthetic {n_train}x{dim}, {n_classes} classes",
        "train": (Xtr, ytr),
        "val": (Xva, yva),
        "test": (Xte, yte),
        "ids": np.array([f"s{i:06d}" for i in range(n_train)]),
    }


def blood(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from probe.errors import StoreError
    from probe.evaluate.data import find_store, load_eval_data
    from probe.store import open_store

    try:
        store = find_store(args.data, backbone=args.backbone, root=args.store_root, image_size=args.image_size)
    except StoreError:
        from probe.backbones import BackboneRequest
        from probe.extraction import ExtractConfig, extract
        from probe.sources import SourceRequest

        res = extract(
            SourceRequest(args.data, data_root=args.data_root),
            backbone=BackboneRequest(args.backbone, image_size=args.image_size or 128),
            config=ExtractConfig(store_root=args.store_root),
        )
        store = open_store(res.store)
    d = load_eval_data(store)
    size = store.attrs["backbone"]["preprocess"]["image_size"]
    return {
        "name": f"{d.dataset} {d.backbone} {size} px ({d.train.n} train x {d.train.X.shape[1]})",
        "train": (d.train.X, d.train.y),
        "val": (d.val.X, d.val.y),
        "test": (d.test.X, d.test.y),
        "ids": d.train.ids,
        "data": d,
    }


def sklearn_select(X: np.ndarray, y: np.ndarray, *, seed: int, max_iter: int) -> tuple[float, object, object]:
    """The head's few-shot rule as a scikit-learn loop: stratified CV inside the support, then refit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    folds = min(5, int(np.bincount(y).min()))
    best_c = 1.0
    if folds >= 2:
        scores = np.zeros(len(GRID))
        for tr, va in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
            sc = StandardScaler().fit(X[tr])
            for i, c in enumerate(GRID):
                m = LogisticRegression(C=c, max_iter=max_iter).fit(sc.transform(X[tr]), y[tr])
                scores[i] += (m.predict(sc.transform(X[va])) == y[va]).mean()
        best_c = GRID[int(np.argmax(scores))]  # first maximum = smallest C on ties
    sc = StandardScaler().fit(X)
    return best_c, LogisticRegression(C=best_c, max_iter=max_iter).fit(sc.transform(X), y), sc


_SK_POOL: list[Any] = []  # the one child process of the scikit-learn measurements, started on first use


def in_child(fn, *args):  # type: ignore[no-untyped-def]
    """Run a scikit-learn measurement in a separate process: torch's OpenMP threads in this one keep
    spinning after a parallel region and would steal the cores scikit-learn's BLAS needs. The child
    never runs torch, so one child serves every measurement (each times only its own fits)."""
    import atexit
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if not _SK_POOL:
        _SK_POOL.append(ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")))
        atexit.register(_SK_POOL[0].shutdown)
    return _SK_POOL[0].submit(_limited, fn, SK_THREADS, *args).result()


def _limited(fn, threads, *args):  # type: ignore[no-untyped-def]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        return fn(*args)


def sk_few_shot(X, y, Xte, yte, supports, max_iter):  # type: ignore[no-untyped-def]
    """The scikit-learn loop of the few-shot sweep: (test accuracies, seconds)."""
    t0 = time.perf_counter()
    accs = []
    for i, rows in enumerate(supports):
        _, model, sc = sklearn_select(X[rows], y[rows], seed=i, max_iter=max_iter)
        accs.append(float((model.predict(sc.transform(Xte)) == yte).mean()))  # type: ignore[attr-defined]
    return accs, time.perf_counter() - t0


def sk_grid(X, y, Xv, yv, Xte, yte, max_iter):  # type: ignore[no-untyped-def]
    """The scikit-learn loop of the full-data grid: (best C, test accuracy, objective, seconds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    sc = StandardScaler().fit(X)
    Xs, Xvs = sc.transform(X), sc.transform(Xv)
    val = [float((LogisticRegression(C=c, max_iter=max_iter).fit(Xs, y).predict(Xvs) == yv).mean()) for c in GRID]
    best = GRID[int(np.argmax(val))]
    sk = LogisticRegression(C=best, max_iter=max_iter).fit(Xs, y)
    acc = float((sk.predict(sc.transform(Xte)) == yte).mean())
    seconds = time.perf_counter() - t0
    return best, acc, objective(sk, Xs, y, best), seconds


def sk_knn(X, y, Xte, ks):  # type: ignore[no-untyped-def]
    """scikit-learn brute-force cosine kNN, one model per k: (predictions per k, seconds)."""
    from sklearn.neighbors import KNeighborsClassifier

    t0 = time.perf_counter()
    out = {
        k: KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric="cosine").fit(X, y).predict(Xte) for k in ks
    }
    return out, time.perf_counter() - t0


def few_shot(ds: dict, args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    from probe.evaluate.sampling import draw_shot_levels
    from probe.heads.linear import LinearProbeConfig, fit_linear_probes

    (X, y), (Xte, yte) = ds["train"], ds["test"]
    k = int(y.max()) + 1
    levels = [draw_shot_levels(ds["ids"], y, shots=SHOTS, seed=s, n_classes=k) for s in range(args.seeds)]
    supports = [d.rows for draws in levels for d in draws]
    picked = supports[:: args.sk_every]
    sk_acc, t_sk = in_child(sk_few_shot, X, y, Xte, yte, picked, args.max_iter)
    times, accs = {}, {}
    for precision in ("float64", "float32"):
        t0 = time.perf_counter()
        cfg = LinearProbeConfig(c_grid=GRID, device=args.device, precision=precision)
        probes = fit_linear_probes(X, y, supports, config=cfg)
        accs[precision] = [float((p.predict(Xte) == yte).mean()) for p in probes]
        times[precision] = time.perf_counter() - t0
    ours = np.array(accs["float64"][:: args.sk_every])
    diff = np.abs(ours - np.array(sk_acc))
    return {
        "fits": len(supports),
        "ours": times["float64"],
        "ours32": times["float32"],
        "sk": t_sk * len(supports) / len(picked),
        "sk_measured": len(picked),
        "acc_ours": ours.mean(),
        "acc_sk": np.mean(sk_acc),
        "mean_abs_diff": diff.mean(),
        "max_abs_diff": diff.max(),
    }


def full_grid(ds: dict, args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    from probe.heads.linear import LinearProbe

    (X, y), (Xv, yv), (Xte, yte) = ds["train"], ds["val"], ds["test"]
    best, acc_sk, sk_obj, t_sk = in_child(sk_grid, X, y, Xv, yv, Xte, yte, args.max_iter)
    t32 = time.perf_counter()
    LinearProbe(C="auto", c_grid=GRID, device=args.device, precision="float32").fit(X, y, X_val=Xv, y_val=yv)
    t32 = time.perf_counter() - t32
    t0 = time.perf_counter()
    ours = LinearProbe(C="auto", c_grid=GRID, device=args.device, precision="float64").fit(X, y, X_val=Xv, y_val=yv)
    acc_ours = float((ours.predict(Xte) == yte).mean())
    t_ours = time.perf_counter() - t0
    gap = (ours.objective_ - sk_obj) / sk_obj if best == ours.C_ else float("nan")
    return {
        "ours": t_ours,
        "ours32": t32,
        "sk": t_sk,
        "C_ours": ours.C_,
        "C_sk": best,
        "acc_ours": acc_ours,
        "acc_sk": acc_sk,
        "objective_gap": gap,
        "fits": len(GRID) + 1,
    }


def objective(model, Xs: np.ndarray, y: np.ndarray, C: float) -> float:  # type: ignore[no-untyped-def]
    """scikit-learn's multinomial objective C * sum CE + 0.5 ||W||^2 at a fitted model."""
    z = Xs @ model.coef_.T + model.intercept_
    if z.shape[1] == 1:  # binary: one logit
        z = np.hstack([np.zeros_like(z), z])
    z = z - z.max(1, keepdims=True)
    ce = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1)))
    return float(C * ce.sum() + 0.5 * (model.coef_**2).sum())


def knn(ds: dict, args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    from probe.heads.knn import KNNProbe

    (X, y), (Xte, _) = ds["train"], ds["test"]
    out: dict = {}  # type: ignore[type-arg]
    lists = (("k=20", (20,)), ("k=10,20,100,200", (10, 20, 100, 200)))
    for label, ks in lists[:1] if args.quick else lists:
        sk, t_sk = in_child(sk_knn, X, y, Xte, ks)
        KNNProbe(k=20).fit(X[:100], y[:100]).predict(Xte[:10])  # warm-up: FAISS / BLAS thread start
        t0 = time.perf_counter()
        ours = KNNProbe(k=list(ks), vote="uniform", device=args.device).fit(X, y).predict_all(Xte)
        t_ours = time.perf_counter() - t0
        out[label] = {
            "ours": t_ours,
            "sk": t_sk,
            "differ": int(sum((ours[k] != sk[k]).sum() for k in ks)),
            "n": len(Xte) * len(ks),
        }
    return out


def curve(ds: dict, args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    from probe.evaluate import PlanConfig, run_plan

    t0 = time.perf_counter()
    plan = PlanConfig(seeds=1, shots=SHOTS, bootstrap=0) if args.quick else PlanConfig(seeds=5)
    rows = run_plan(ds["data"], replace(plan, device=args.device))
    wall = time.perf_counter() - t0
    per_head: dict[str, float] = {}
    for r in rows:
        if r.metric == "accuracy":
            per_head[r.head_name] = per_head.get(r.head_name, 0.0) + r.seconds
    return {"wall": wall, "rows": len(rows), "per_head": per_head}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="medmnist:bloodmnist")
    ap.add_argument("--data-root", default=os.environ.get("PROBE_DATA_ROOT"))
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--store-root", default="embeddings")
    ap.add_argument("--image-size", type=int, default=None, help="pick (or extract) the store at this size")
    ap.add_argument("--seeds", type=int, default=10, help="seeds of the few-shot sweep")
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--sk-every", type=int, default=1, help="time scikit-learn on every n-th support, extrapolate")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--parts", default="fewshot,grid,knn,curve")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--label", default="probe")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny run (tests: the script runs; figures mean nothing): shots 1,2, one seed, k=20 only, no "
        "synthetic set",
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # capped classes / sklearn convergence notes are not the point here
    if args.quick:
        global SHOTS
        SHOTS = (1, 2)
        args.seeds = 1
    parts = set(args.parts.split(","))
    sets = [blood(args)] + ([] if args.skip_synthetic or args.quick else [synthetic()])
    results = []
    for ds in sets:
        r: dict = {"name": ds["name"]}  # type: ignore[type-arg]
        for part, fn in (("fewshot", few_shot), ("grid", full_grid), ("knn", knn)):
            if part in parts:
                r[part] = fn(ds, args)
                print(ds["name"], part, r[part], flush=True)
        if "curve" in parts and "data" in ds:
            r["curve"] = curve(ds, args)
            print(ds["name"], "curve", r["curve"], flush=True)
        results.append(r)
    _write_section(Path(args.out), args.label, report(args, results))


def report(args: argparse.Namespace, results: list[dict]) -> str:  # type: ignore[type-arg]
    import torch

    device = "cuda" if (args.device != "cpu" and torch.cuda.is_available()) else "cpu"
    gpu = f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""
    cmd = " ".join(["python bench/bench_probe.py", *sys.argv[1:]])
    lines = [
        f"<!-- bench:{args.label}:start -->",
        f"## Probing (`bench/bench_probe.py`, {args.label})",
        "",
        f"- command: `{re.sub(r' +', ' ', cmd)}`",
        f"- machine: {_cpu_name()}, {os.cpu_count()} cores, device `{device}`{gpu}; Python {platform.python_version()}",
        f"- software: torch {torch.__version__}; every figure below comes from this one run, side by side; "
        f"scikit-learn runs in a fresh process with {SK_THREADS} BLAS/OpenMP thread(s) (BENCH_SK_THREADS; 1 is its "
        "fastest setting here: its default threading ran the few-shot loop about 7x slower)",
        f"- date: {time.strftime('%Y-%m-%d')}; few-shot sweep: shots {', '.join(map(str, SHOTS))} "
        f"x {args.seeds} seeds, CV grid 1e-4..1e4 (9 C)",
        "",
        "| features | measurement | probe | scikit-learn | speed-up | agreement |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "fewshot" in r:
            f = r["fewshot"]
            lines.append(
                f"| {r['name']} | few-shot sweep ({f['fits']} supports, CV + refit) | {f['ours']:.1f} s f64, "
                f"{f['ours32']:.1f} s f32 | {f['sk']:.1f} s ({f['sk_measured']} timed) "
                f"| {f['sk'] / f['ours']:.1f}x f64, {f['sk'] / f['ours32']:.1f}x f32 "
                f"| mean test acc {100 * f['acc_ours']:.2f} % vs {100 * f['acc_sk']:.2f} %; "
                f"per support mean abs diff {100 * f['mean_abs_diff']:.2f} pp, max {100 * f['max_abs_diff']:.2f} pp |"
            )
        if "grid" in r:
            g = r["grid"]
            lines.append(
                f"| {r['name']} | full-data C grid ({g['fits']} fits) | {g['ours']:.1f} s f64, {g['ours32']:.1f} s f32 "
                f"| {g['sk']:.1f} s | {g['sk'] / g['ours']:.1f}x f64, {g['sk'] / g['ours32']:.1f}x f32 "
                f"| C {g['C_ours']:g} vs {g['C_sk']:g}; "
                f"test acc {100 * g['acc_ours']:.2f} % vs {100 * g['acc_sk']:.2f} %; "
                f"objective rel. gap {g['objective_gap']:.1e} |"
            )
        for label, k in r.get("knn", {}).items():
            lines.append(
                f"| {r['name']} | kNN {label} (fit + predict) | {k['ours']:.2f} s | {k['sk']:.2f} s "
                f"| {k['sk'] / k['ours']:.1f}x | {k['differ']} of {k['n']} predictions differ |"
            )
        if "curve" in r:
            c = r["curve"]
            heads = ", ".join(f"{h} {s:.1f} s" for h, s in c["per_head"].items())
            lines.append(
                f"| {r['name']} | whole curve: 3 heads x shots 1..64 + all x 5 seeds, bootstrap CIs | "
                f"{c['wall']:.1f} s | — | — | {c['rows']} rows; fit+predict per head: {heads} |"
            )
    lines.append(f"<!-- bench:{args.label}:end -->")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
