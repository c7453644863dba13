"""Feature preprocessing for the few-shot linear head: the evidence behind ``PlanConfig(preprocessing=...)``.

Run from the repository root on stores extracted once (efficientnet_lite0 at 128 px):

    .venv/bin/python bench/bench_preprocessing.py --store-root embeddings

For each of the four shared 2D MedMNIST sets (blood, breast, pneumonia, retina) it runs the linear
head under every policy of :data:`probe.evaluate.preprocessing.POLICIES` (``support``: z-score with
the support's own statistics, the former default; ``pool-standardise``; ``pool-centre-l2``: both with
statistics of the train split's features only; ``auto``, the default, is not a run of its own but
the rule of ``resolve_policy`` applied to these columns) and the prototype head (SimpleShot as published, and
the former cosine rule), shots 1..64 (5 seeds, the same draws for every head) and all (1 draw), and
reports the test balanced accuracy (%). Acceptance for a new default: at 1 and 2 shots the linear
head within 1 pp of the best prototype rule or above it on average over the sets, and at no shot
level more than 1 pp below ``support`` on any set. The table goes to docs/benchmarks.md and README.md
(between the ``bench:preprocessing`` markers). ``--quick`` runs one store, shots 1,2 and 2 seeds.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from _shared import REPO
from _shared import cpu_name as _cpu_name
from _shared import write_section as _write_section

DATASETS = ("bloodmnist", "breastmnist", "pneumoniamnist", "retinamnist")
SHOTS: tuple[int | str, ...] = (1, 2, 4, 8, 16, 32, 64, "all")
TOLERANCE = 1.0  # pp
MEASURED = ("support", "pool-standardise", "pool-centre-l2")  # "auto" = pool-centre-l2 few-shot, support for all


def _with_auto(scores: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """Add the ``auto`` column: the rule of :func:`probe.evaluate.preprocessing.resolve_policy` on the measured ones."""
    from probe.evaluate.preprocessing import resolve_policy

    levels = {s for _, s in scores}
    picked = {s: resolve_policy("auto", shots=s if s == "all" else int(s)) for s in levels}
    return {**scores, **{("linear auto", s): scores[(f"linear {picked[s]}", s)] for s in levels}}


def _scores(data, shots, seeds: int) -> dict[tuple[str, str], float]:  # type: ignore[no-untyped-def]
    """(column, shots) -> mean balanced accuracy % over seeds, for every policy and prototype rule."""
    from probe.evaluate import PlanConfig, PrototypeConfig, run_plan

    out: dict[tuple[str, str], float] = {}
    few = tuple(s for s in shots if s != "all")
    levels = [(few, seeds)] + ([(("all",), 1)] if "all" in shots else [])
    metrics = ("balanced_accuracy",)
    for level, n_seeds in levels:
        if not level:
            continue
        for policy in MEASURED:
            plan = PlanConfig(heads=("linear",), shots=level, seeds=n_seeds, bootstrap=0, metrics=metrics,
                              preprocessing=policy)  # fmt: skip
            _collect(out, f"linear {policy}", run_plan(data, plan))
        for method in ("simpleshot", "cosine"):
            plan = PlanConfig(heads=("prototype",), shots=level, seeds=n_seeds, bootstrap=0, metrics=metrics,
                              prototype=PrototypeConfig(method=method))  # fmt: skip
            _collect(out, f"prototype {method}", run_plan(data, plan))
    return out


def _collect(out: dict[tuple[str, str], float], column: str, rows: list) -> None:  # type: ignore[type-arg]
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(str(r.shots), []).append(100 * r.value)
    out.update({(column, s): float(np.mean(v)) for s, v in by.items()})


def _table(results: dict[str, dict[tuple[str, str], float]], shots) -> tuple[str, dict[str, bool]]:  # type: ignore[no-untyped-def]
    results = {name: _with_auto(r) for name, r in results.items()}
    policies = (*MEASURED, "auto")
    columns = [f"linear {p}" for p in policies] + ["prototype simpleshot", "prototype cosine"]
    names = list(results)
    lines = ["| shots | set | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for s in map(str, shots):
        for name in [*names, "mean"]:
            if name == "mean":
                vals = [np.mean([results[n][(c, s)] for n in names]) for c in columns]
            else:
                vals = [results[name][(c, s)] for c in columns]
            cells = " | ".join(f"{v:.1f}" for v in vals)
            lines.append(f"| {s} | {name.removesuffix('mnist') if name != 'mean' else '**mean**'} | {cells} |")
    verdict = {}
    for p in policies[1:]:
        col = f"linear {p}"
        few_ok = all(
            np.mean([results[n][(col, s)] for n in names])
            >= max(np.mean([results[n][(f"prototype {m}", s)] for n in names]) for m in ("simpleshot", "cosine"))
            - TOLERANCE
            for s in ("1", "2")
            if all((col, s) in results[n] for n in names)
        )
        no_loss = all(
            results[n][(col, str(s))] >= results[n][("linear support", str(s))] - TOLERANCE
            for n in names
            for s in shots
        )
        verdict[p] = few_ok and no_loss
    return "\n".join(lines), verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store-root", default=str(REPO / "embeddings"), help="folder holding the stores")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma list of medmnist names")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--store", default=None, help="one explicit store (with --quick)")
    ap.add_argument("--quick", action="store_true", help="shots 1,2; 2 seeds (a smoke run)")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument("--readme", default=None, help="also write the section here (default: README.md, not in --quick)")
    args = ap.parse_args()

    from probe.evaluate import find_store, load_eval_data
    from probe.store import open_store

    shots: tuple[int | str, ...] = (1, 2) if args.quick else SHOTS
    seeds = 2 if args.quick else args.seeds
    stores = (
        {"store": open_store(args.store)}
        if args.store
        else {
            d: find_store(f"medmnist:{d}", backbone=args.backbone, root=args.store_root, image_size=args.image_size)
            for d in args.datasets.split(",")
        }
    )
    t0 = time.perf_counter()
    results = {}
    for name, store in stores.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # capped classes at 64 shots (breast, retina) are expected
            results[name] = _scores(load_eval_data(store), shots, seeds)
        print(f"{name}: done at {time.perf_counter() - t0:.0f} s", flush=True)
    table, verdict = _table(results, shots)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    section = (
        "<!-- bench:preprocessing:start -->\n"
        "## Few-shot feature preprocessing (`bench/bench_preprocessing.py`, preprocessing)\n\n"
        f"`python bench/bench_preprocessing.py --store-root embeddings` ({args.backbone} at {args.image_size} px, "
        f"{seeds} seeds per shot level, 1 draw for all; test balanced accuracy %; {_cpu_name()}, load average "
        f"{' '.join(load)} at the end, {time.perf_counter() - t0:.0f} s).\n\n"
        f"{table}\n\n"
        "Acceptance (1 and 2 shots: mean within 1 pp of the best prototype rule or above; no set and shot "
        "level more than 1 pp below `support`): "
        + ", ".join(f"`{p}` {'passes' if ok else 'fails'}" for p, ok in verdict.items())
        + ".\n<!-- bench:preprocessing:end -->"
    )
    print(section)
    _write_section(Path(args.out), "preprocessing", section)
    readme = args.readme or (None if args.quick else str(REPO / "README.md"))
    if readme:
        _write_section(Path(readme), "preprocessing", section)


if __name__ == "__main__":
    main()
