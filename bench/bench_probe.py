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
  (d) the whole curve: ``run_plan`` with the demo's plan (3 heads, shots 1..64 and all, ``--curve-seeds``
      seeds, 1000-resample bootstrap CIs) on the BloodMNIST store, each run in a fresh process; with
      ``--curve-baseline REV`` the ``probe/`` of git revision REV runs the same curve, alternated with this
      checkout ``--curve-repeats`` times: wall time (medians), fit+predict seconds per head, mean balanced
      accuracy per shot level, and the share of identical test predictions per head.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
import warnings
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
        "store": store.path,
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


# The child process of one whole-curve arm: ``probe`` is imported from argv[1] (this checkout, or an
# exported older revision), the plan runs on the store argv[2], and the rows' values, the per-head
# seconds and every evaluation's test predictions go to the .npz argv[5].
_CURVE_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import probe.evaluate.plan as plan_module
from probe.evaluate import PlanConfig, run_plan
from probe.evaluate.data import load_eval_data
from probe.store import open_store

src, store, seeds, quick, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
data = load_eval_data(open_store(store))
plan = PlanConfig(seeds=seeds, shots=(1, 2), bootstrap=0) if quick else PlanConfig(seeds=seeds)
preds = {}
score = plan_module.score
def keep(data, ev, **kw):
    preds[f"{ev.head}|{ev.task.draw.shots}|{ev.task.draw.seed}"] = ev.proba.argmax(1)
    return score(data, ev, **kw)
plan_module.score = keep
t0 = time.perf_counter()
rows = run_plan(data, plan)
wall = time.perf_counter() - t0
heads = {}
for r in rows:
    if r.metric == "accuracy":
        name = getattr(r, "head_name", None) or r.head  # results schema 3 renamed it; a baseline may be older
        heads[name] = heads.get(name, 0.0) + r.seconds
values = [[getattr(r, "head_name", None) or r.head, str(r.shots), r.seed, r.metric, r.value] for r in rows]
meta = {"wall": wall, "heads": heads, "rows": len(rows), "values": values}
np.savez(out, meta=json.dumps(meta), **{k: v for k, v in preds.items()})
"""


def _curve_arm(src: Path, store: str, seeds: int, quick: bool) -> dict:  # type: ignore[type-arg]
    """One whole-curve run in a fresh process with ``probe`` from ``src``: wall, per-head s, values, predictions."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "arm.npz"
        cmd = [sys.executable, "-c", _CURVE_CHILD, str(src), store, str(seeds), "1" if quick else "0", str(out)]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        subprocess.run(cmd, check=True, cwd=REPO)
        with np.load(out) as z:
            meta = json.loads(str(z["meta"]))
            meta["load"] = (load, os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"))
            meta["preds"] = {k: z[k] for k in z.files if k != "meta"}
    return meta  # type: ignore[no-any-return]


def _export(rev: str) -> Path:
    """``probe/`` of git revision ``rev`` exported to a temporary folder (the baseline arm imports it)."""
    import subprocess
    import tempfile

    dest = Path(tempfile.mkdtemp(prefix="bench-probe-base-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "probe"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def curve(ds: dict, args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    """The whole curve (the demo's plan at ``--curve-seeds`` seeds), this checkout and optionally a baseline
    revision, alternated ``--curve-repeats`` times in fresh processes; medians and agreement."""
    seeds = 1 if args.quick else args.curve_seeds
    arms = {"new": REPO} | ({"baseline": _export(args.curve_baseline)} if args.curve_baseline else {})
    runs: dict[str, list[dict]] = {a: [] for a in arms}  # type: ignore[type-arg]
    for _ in range(args.curve_repeats):
        for arm in sorted(arms):  # baseline first, then new
            runs[arm].append(_curve_arm(arms[arm], ds["store"], seeds, args.quick))
            print(f"curve {arm}: {runs[arm][-1]['wall']:.1f} s, {runs[arm][-1]['heads']}", flush=True)
    out = {"seeds": seeds, "arms": {}}
    for arm, rs in runs.items():
        heads = {h: float(np.median([r["heads"][h] for r in rs])) for h in rs[0]["heads"]}
        levels: dict[str, dict[str, list[float]]] = {}
        for head, shots, _seed, metric, value in rs[0]["values"]:
            if metric == "balanced_accuracy":
                levels.setdefault(head, {}).setdefault(shots, []).append(value)
        out["arms"][arm] = {
            "wall": float(np.median([r["wall"] for r in rs])),
            "walls": [r["wall"] for r in rs],
            "loads": [r["load"] for r in rs],
            "heads": heads,
            "rows": rs[0]["rows"],
            "levels": {h: {s: float(np.mean(v)) for s, v in lv.items()} for h, lv in levels.items()},
            "preds": rs[0]["preds"],
        }
    if "baseline" in out["arms"]:
        new, base = out["arms"]["new"], out["arms"]["baseline"]
        same = {}
        for head in new["levels"]:
            keys = [k for k in new["preds"] if k.startswith(head + "|")]
            same[head] = float(np.mean([np.mean(new["preds"][k] == base["preds"][k]) for k in keys]))
        out["agreement"] = same
    for a in out["arms"].values():
        del a["preds"]
    return out


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
    ap.add_argument("--curve-seeds", type=int, default=10, help="seeds of the whole curve (the demo's plan)")
    ap.add_argument("--curve-repeats", type=int, default=1, help="alternated runs of each curve arm (medians)")
    ap.add_argument(
        "--curve-baseline",
        default=None,
        help="git revision whose probe/ runs the same curve beside this checkout (before/after in one run)",
    )
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
    sk_parts = any(part in r for r in results for part in ("fewshot", "grid", "knn"))
    lines = [
        f"<!-- bench:{args.label}:start -->",
        f"## Probing (`bench/bench_probe.py`, {args.label})",
        "",
        f"- command: `{re.sub(r' +', ' ', cmd)}`",
        f"- machine: {_cpu_name()}, {os.cpu_count()} cores, device `{device}`{gpu}; Python {platform.python_version()}",
        f"- software: torch {torch.__version__}; every figure below comes from this one run, side by side"
        + (
            f"; scikit-learn runs in a fresh process with {SK_THREADS} BLAS/OpenMP thread(s) (BENCH_SK_THREADS; 1 is "
            "its fastest setting here: its default threading ran the few-shot loop about 7x slower)"
            if sk_parts
            else ""
        ),
        f"- date: {time.strftime('%Y-%m-%d')}"
        + (
            f"; few-shot sweep: shots {', '.join(map(str, SHOTS))} x {args.seeds} seeds, CV grid 1e-4..1e4 (9 C)"
            if sk_parts
            else ""
        )
        + (f"; load average (1 min) at the end: {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""),
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
            for arm in sorted(c["arms"]):
                a = c["arms"][arm]
                heads = ", ".join(f"{h} {s:.1f} s" for h, s in a["heads"].items())
                scoring = a["wall"] - sum(a["heads"].values())
                pairs = zip(a["walls"], a["loads"], strict=True)
                runs = ", ".join(f"{w:.1f} (load {l0:.1f}-{l1:.1f})" for w, (l0, l1) in pairs)
                lines.append(
                    f"| {r['name']} | whole curve ({arm}): 3 heads x shots 1..64 + all x {c['seeds']} seeds, "
                    f"bootstrap CIs | {a['wall']:.1f} s (runs {runs}) | — | — | {a['rows']} rows; fit+predict per "
                    f"head: {heads}; scoring and the rest {scoring:.1f} s |"
                )
    lines += _curve_levels(results)
    lines.append(f"<!-- bench:{args.label}:end -->")
    return "\n".join(lines)


def _curve_levels(results: list[dict]) -> list[str]:  # type: ignore[type-arg]
    """Mean balanced accuracy per head and shot level of each curve arm (and the prediction agreement)."""
    lines: list[str] = []
    for r in results:
        c = r.get("curve")
        if not c:
            continue
        arms = sorted(c["arms"])
        first = c["arms"][arms[0]]["levels"]
        shots = list(next(iter(first.values())))
        lines += ["", f"Whole curve, {r['name']}: mean balanced accuracy % over seeds per shot level", ""]
        lines += ["| head | arm | " + " | ".join(shots) + " |", "|---|---|" + "---|" * len(shots)]
        for head in first:
            for arm in arms:
                lv = c["arms"][arm]["levels"][head]
                lines.append(f"| {head} | {arm} | " + " | ".join(f"{100 * lv[s]:.2f}" for s in shots) + " |")
        if "agreement" in c:
            same = ", ".join(f"{h} {100 * v:.2f} %" for h, v in c["agreement"].items())
            lines += ["", f"Identical test predictions, new vs baseline (mean over evaluations): {same}."]
        lines.append("")
    return lines


if __name__ == "__main__":
    main()
