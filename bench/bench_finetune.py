"""Fine-tuning benchmark: linear probe vs full fine-tuning vs LoRA on the same draws.

Run from the repository root (figures go to docs/benchmarks.md, between the finetune markers):

    .venv/bin/python bench/bench_finetune.py --data-root ../shared/data/medmnist

Per dataset (BreastMNIST, BloodMNIST by default) and in one run: the linear probe on
efficientnet_lite0 features (``probe curve --heads linear``, extracted at the same input size), then
``probe finetune --mode full`` and ``--mode lora`` on exactly the probe's draws (shots x seeds),
everything at one small input size on a CPU (64 px by default; say ``--image-size 224`` on a GPU).
Reported per (method, shots): test balanced accuracy and macro-AUROC, mean over seeds with a
Student-t 95 % CI, the paired difference to the linear probe, trainable parameters, training time
per draw and peak memory. The rows also go to a results folder, and ``probe report`` of it draws the
overlay figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from _shared import REPO
from _shared import cpu_name as _cpu_name
from _shared import write_section as _write_section

METRICS = ("balanced_accuracy", "macro_auroc")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="breastmnist,bloodmnist")
    ap.add_argument("--data-root", default=os.environ.get("PROBE_DATA_ROOT"))
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--shots", default="4,16,64")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--modes", default="full,lora")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work", default="bench/_finetune", help="stores, checkpoints, results and report")
    ap.add_argument("--label", default="finetune")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny run (tests: the script runs; figures mean nothing): timm:test_vit with random weights at "
        "32 px on the first 8 images per split, LoRA, 1 epoch, 1 seed",
    )
    args = ap.parse_args()
    if args.quick:
        args.backbone, args.image_size, args.shots, args.seeds = "timm:test_vit", 32, "2", 1
        args.modes, args.epochs = "lora", 1
    warnings.simplefilter("ignore")
    shots = tuple(int(s) if s != "all" else "all" for s in args.shots.split(","))
    results = {}
    for name in args.datasets.split(","):
        results[name] = run_dataset(name, shots, args)
    from probe.report import write_report
    from probe.results import load_results

    files = write_report(load_results(Path(args.work) / "results"), Path(args.work) / "report")
    figures = copy_figures(files.figures, Path(args.out).parent / "figures", label=args.label)
    _write_section(Path(args.out), args.label, report(args, results, files.markdown, figures))


def copy_figures(figures: list[Path], folder: Path, *, label: str) -> list[Path]:
    """The PNG overlay figures, copied beside docs/benchmarks.md as ``<label>-<dataset>.png``."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for fig in figures:
        if fig.suffix == ".png":
            out.append(folder / f"{label}-{fig.stem.split('-')[0]}.png")
            shutil.copyfile(fig, out[-1])
    return out


def run_dataset(name: str, shots: tuple[Any, ...], args: argparse.Namespace) -> dict[str, Any]:
    from probe.backbones import BackboneRequest
    from probe.evaluate import PlanConfig, StoreChoice, run_curve
    from probe.extraction import ExtractConfig
    from probe.finetune import FinetuneConfig, FinetunePlan, run_finetune
    from probe.sources import SourceRequest

    work = Path(args.work)
    data = f"medmnist:{name}"
    source = SourceRequest(data, data_root=args.data_root, limit=8 if args.quick else None)
    backbone = BackboneRequest(args.backbone, pretrained=not args.quick)  # --quick: random weights, 8 rows
    t0 = time.perf_counter()
    probe = run_curve(
        source,
        backbones=[BackboneRequest(args.backbone, image_size=args.image_size, pretrained=not args.quick)],
        plan=PlanConfig(heads=("linear",), shots=shots, seeds=args.seeds, bootstrap=0, device=args.device),
        choice=StoreChoice(store_root=str(work / "embeddings")),
        results_dir=work / "results",
        extract_config=ExtractConfig(progress=False, device=args.device),
    )
    timings = {"linear": time.perf_counter() - t0}
    rows = list(probe.rows)
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        run = run_finetune(
            source,
            backbone=backbone,
            config=FinetuneConfig(
                mode=mode,
                image_size=args.image_size,
                epochs=args.epochs,
                device=args.device,
                progress=False,
                **({"min_steps": 0} if args.quick else {}),
            ),
            plan=FinetunePlan(shots=shots, seeds=args.seeds, bootstrap=0),
            results_dir=work / "results",
            checkpoint_dir=work / "checkpoints",
        )
        timings[f"finetune-{mode}"] = time.perf_counter() - t0
        rows += run.rows
        print(name, mode, f"{timings[f'finetune-{mode}']:.0f} s", flush=True)
    return {"table": summarise(rows), "timings": timings}


def summarise(rows: list[Any]) -> dict[tuple[str, Any], dict[str, Any]]:
    """(head, shots) → metric means/CIs over seeds, paired differences to linear, params."""
    from probe.metrics import mean_ci

    by: dict[tuple[str, Any, str], dict[int, float]] = defaultdict(dict)
    params: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r.head_name, r.shots, r.metric][r.seed] = r.value
        if r.metric == METRICS[0]:
            params[r.head_name, r.shots].append(dict(r.params))
    out: dict[tuple[str, Any], dict[str, Any]] = {}
    for head, shots in params:
        entry: dict[str, Any] = {}
        for m in METRICS:
            vals = by[head, shots, m]
            seeds = sorted(vals)
            entry[m] = mean_ci(np.array([vals[s] for s in seeds]))
            base = by["linear", shots, m]
            if head != "linear" and all(s in base for s in seeds):
                entry[m + "_diff"] = mean_ci(np.array([vals[s] - base[s] for s in seeds]))
        p = params[head, shots]
        entry["trainable"] = p[0].get("trainable_params")
        entry["train_s"] = float(np.mean([q.get("train_seconds", np.nan) for q in p]))
        entry["peak_mb"] = max(q.get("peak_memory_mb", 0) for q in p)
        out[head, shots] = entry
    return out


def _ci(t: tuple[float, float, float]) -> str:
    mean, low, high = t
    if not np.isfinite(low):
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def report(args: argparse.Namespace, results: dict[str, Any], report_md: Path, figures: list[Path]) -> str:
    import torch

    device = "cuda" if (args.device != "cpu" and torch.cuda.is_available()) else "cpu"
    gpu = f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""
    cmd = " ".join(["python bench/bench_finetune.py", *sys.argv[1:]])
    lines = [
        f"<!-- bench:{args.label}:start -->",
        f"## Fine-tuning vs linear probe (`bench/bench_finetune.py`, {args.label})",
        "",
        f"- command: `{re.sub(r' +', ' ', cmd)}`",
        f"- machine: {_cpu_name()}, {os.cpu_count()} cores, device `{device}`{gpu}; "
        f"Python {platform.python_version()}; torch {torch.__version__}",
        f"- date: {time.strftime('%Y-%m-%d')}; backbone {args.backbone} (ImageNet weights) at {args.image_size} px; "
        f"shots {args.shots} x {args.seeds} seeds (the same draws for every method); fine-tuning: AdamW, "
        f"warm-up + cosine, {args.epochs} epochs (at least 50 steps), default augmentations, frozen BatchNorm "
        "statistics, fixed budget (n-shot never reads validation labels)",
        "- values: test balanced accuracy and macro-AUROC in %, mean over seeds [Student-t 95 % CI]; "
        "Δ = paired difference to the linear probe on the same draw",
        f"- report with the overlay figure: `{report_md}` (`probe report {Path(args.work) / 'results'}`)",
        "",
        "| dataset | method | shots | balanced acc | Δ bal. acc vs linear | macro-AUROC | trainable params "
        "| train s / draw | peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        table = res["table"]
        for (head, shots), e in sorted(table.items(), key=lambda kv: (str(kv[0][1]).zfill(4), kv[0][0])):
            diff = _ci(e["balanced_accuracy_diff"]) if "balanced_accuracy_diff" in e else "—"
            trainable = f"{e['trainable']:,}" if e["trainable"] else "— (probe)"
            train_s = f"{e['train_s']:.0f}" if np.isfinite(e["train_s"]) else "—"
            peak = f"{e['peak_mb']:.0f}" if e["peak_mb"] else "—"
            lines.append(
                f"| {name} | {head} | {shots} | {_ci(e['balanced_accuracy'])} | {diff} | {_ci(e['macro_auroc'])} "
                f"| {trainable} | {train_s} | {peak} |"
            )
        t = res["timings"]
        lines.append(f"| {name} | wall time | | " + ", ".join(f"{k} {v:.0f} s" for k, v in t.items()) + " | | | | | |")
    lines.append("")
    lines += [f"![{f.stem}](figures/{f.name})" for f in figures]
    lines.append(f"<!-- bench:{args.label}:end -->")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
