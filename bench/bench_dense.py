"""Dense probing benchmark on a real brain MRI: probe's batched seg-linear fit vs a DINOv2-style torch loop.

Run from the repository root (figures go to docs/benchmarks.md, between the dense markers):

    .venv/bin/python bench/bench_dense.py

Data: the MNI152 2009 T1 template that the ``nilearn`` wheel ships, with its grey- and white-matter
probability maps turned into a 3-class tissue map (background / grey matter / white matter: the
larger probability where it is at least 0.5, else background). Axial slices with brain in them are
2D samples, split by blocks of 8 consecutive slices (block mod 5: 0-2 train, 3 val, 4 test), so a
test slice never sits next to a train slice of its block. It is one template brain: a real-image
smoke test of the dense path, not a benchmark of any backbone's quality. Nothing is committed: the
slices are written under the probe cache.

In one run (alternating repeats, medians):
  (a) extraction with --pooling patch-s4 (efficientnet_lite0, real weights): the store's bytes per
      image, and pipeline (decode, preprocess, forward, store) vs model-only images/s;
  (b) seg-linear over labelled slices 1, 2, 4, 8, 16 and all x 5 seeds: ``fit_seg_linear_batch`` (every
      draw in one batched soft-label solve) vs a straightforward torch loop per draw (a linear layer on
      the patch tokens, bilinear upsampling to the mask, cross-entropy, AdamW, fixed epochs) — wall time
      of the whole sweep and mean foreground Dice per level on the test slices for both.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _shared import REPO
from _shared import cpu_name as _cpu_name
from _shared import write_section as _write_section

LEVELS: tuple[int | str, ...] = (1, 2, 4, 8, 16, "all")
BLOCK = 8  # consecutive slices per split block


def tissue_manifest(folder: Path, *, step: int = 1) -> Path:
    """Write the template's axial slices (every ``step``-th with brain) as PNG image/mask pairs and a seg: manifest."""
    import nibabel as nib
    import nilearn
    from PIL import Image

    data = Path(nilearn.__file__).parent / "datasets" / "data"
    load = lambda n: np.asarray(  # noqa: E731
        nib.as_closest_canonical(nib.load(data / f"mni_icbm152_{n}_tal_nlin_sym_09a_converted.nii.gz")).dataobj
    )
    t1, gm, wm = load("t1"), load("gm").astype(np.float32) / 255, load("wm").astype(np.float32) / 255
    tissue = np.where(np.maximum(gm, wm) >= 0.5, np.where(wm > gm, 2, 1), 0).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for z in range(0, t1.shape[2], step):
        if (tissue[:, :, z] > 0).sum() < 200:  # no brain in this slice
            continue
        block = z // BLOCK
        split = ("train", "train", "train", "val", "test")[block % 5]
        Image.fromarray(np.rot90(t1[:, :, z]).astype(np.uint8)).save(folder / f"z{z:03d}.png")
        Image.fromarray(np.rot90(tissue[:, :, z])).save(folder / f"z{z:03d}_tissue.png")
        rows.append({"image": f"z{z:03d}.png", "mask": f"z{z:03d}_tissue.png", "split": split, "group": f"b{block}"})
    (folder / "classes.txt").write_text("background\ngrey matter\nwhite matter\n")
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mask", "split", "group"])
        w.writeheader()
        w.writerows(rows)
    return manifest


def extraction(args: argparse.Namespace, manifest: Path, store_root: Path) -> dict[str, Any]:
    """Pipeline vs model-only images/s (alternating, medians) and the store's bytes per image."""
    from bench_extract import model_only

    from probe.backbones import BackboneRequest
    from probe.extraction import ExtractConfig, extract_embeddings
    from probe.sources import open_source
    from probe.store import describe_store

    source = open_source(f"seg:{manifest}")
    backbone = BackboneRequest(args.backbone, image_size=args.image_size, pretrained=not args.random).load()
    pipe, model = [], []
    store = ""
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = ExtractConfig(poolings=(args.pooling,), batch_size=args.batch_size, store_root=tmp, progress=False)
            t0 = time.perf_counter()
            res = extract_embeddings(source, backbone, cfg)
            pipe.append(res.rows_computed / (time.perf_counter() - t0))
        batches = max(1, len(source) // args.batch_size)
        model.append(model_only(backbone, args.batch_size, batches, "fp32", "cpu"))
        del r
    cfg = ExtractConfig(poolings=(args.pooling,), batch_size=args.batch_size, store_root=str(store_root),
                        progress=False)  # fmt: skip
    store = extract_embeddings(source, backbone, cfg).store
    info = describe_store(store)
    return {
        "store": store,
        "rows": len(source),
        "grid": info["grids"][args.pooling],
        "bytes_per_row": info["bytes_per_row"],
        "pipeline": statistics.median(pipe),
        "model": statistics.median(model),
        "pairs": list(zip(pipe, model, strict=True)),
    }


def _draws(data: Any, seeds: int) -> list[tuple[int | str, int, np.ndarray]]:
    from probe.evaluate import PlanConfig
    from probe.evaluate.tasks import build_tasks

    plan = PlanConfig(heads=("seg-linear",), shots=LEVELS, seeds=seeds)
    return [(t.draw.shots, t.draw.seed, t.draw.rows) for t in build_tasks(data, plan)]  # type: ignore[misc]


def probe_sweep(data: Any, draws: list[tuple[int | str, int, np.ndarray]], C: float) -> tuple[float, list[float]]:
    """Wall time of the batched fit of every draw (standardisation included) and each draw's test Dice."""
    from probe.heads import fit_seg_linear_batch, pool_statistics
    from probe.metrics.segmentation import compute_seg_metrics

    t0 = time.perf_counter()
    mean, std = pool_statistics(data.train.X)
    Xtr = ((data.train.X.astype(np.float32) - mean) / std).astype(np.float32)
    Xte = ((data.test.X.astype(np.float32) - mean) / std).astype(np.float32)
    from probe.evaluate.config import SegConfig

    cfg = SegConfig()  # the runner's solver settings
    probes = fit_seg_linear_batch(
        Xtr, data.train.y, [d[2] for d in draws], [C] * len(draws), n_classes=data.n_classes,
        max_iter=cfg.max_iter, tol=cfg.tol, precision=cfg.precision,
    )  # fmt: skip
    maps = [p.predict(Xte) for p in probes]
    seconds = time.perf_counter() - t0
    kw = {"n_classes": data.n_classes, "classes": data.classes, "metrics": "dice"}
    return seconds, [compute_seg_metrics(data.test.y, m, **kw)["dice"] for m in maps]  # type: ignore[arg-type]


def torch_loop(data: Any, draws: list[tuple[int | str, int, np.ndarray]], epochs: int) -> tuple[float, list[float]]:
    """The usual linear segmentation training, draw by draw: Linear on tokens, upsample, CE, AdamW."""
    import torch
    import torch.nn.functional as F

    from probe.metrics.segmentation import compute_seg_metrics

    t0 = time.perf_counter()
    mean = data.train.X.reshape(-1, data.train.X.shape[-1]).astype(np.float32).mean(0)
    std = data.train.X.reshape(-1, data.train.X.shape[-1]).astype(np.float32).std(0) + 1e-6
    Xtr = torch.from_numpy((data.train.X.astype(np.float32) - mean) / std)
    Xte = torch.from_numpy((data.test.X.astype(np.float32) - mean) / std)
    ytr = torch.from_numpy(data.train.y.astype(np.int64))
    size = data.train.y.shape[1:]
    dices = []
    for _, seed, rows in draws:
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = torch.nn.Linear(Xtr.shape[-1], data.n_classes)
        opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-4)
        idx = torch.from_numpy(rows)
        for _ in range(epochs):
            for b in idx[torch.randperm(idx.numel(), generator=gen)].split(8):
                logits = F.interpolate(head(Xtr[b]).permute(0, 3, 1, 2), size=size, mode="bilinear")
                loss = F.cross_entropy(logits, ytr[b], ignore_index=255)
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            pred = [
                F.interpolate(head(x).permute(0, 3, 1, 2), size=size, mode="bilinear").argmax(1) for x in Xte.split(16)
            ]
        m = torch.cat(pred).numpy().astype(np.uint8)
        dices.append(compute_seg_metrics(data.test.y, m, n_classes=data.n_classes, classes=data.classes,
                                         metrics="dice")["dice"])  # fmt: skip
    return time.perf_counter() - t0, dices


def _by_level(draws: list[tuple[int | str, int, np.ndarray]], dices: list[float]) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for (level, _, _), d in zip(draws, dices, strict=True):
        out.setdefault(str(level), []).append(d)
    return {k: float(np.mean(v)) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--random", action="store_true", help="random weights (tests)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--pooling", default="patch-s4", help="dense pooling (patch-s4: 112 ch at 1/16)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=40, help="torch loop epochs per draw")
    ap.add_argument("--C", type=float, default=1000.0, help="seg-linear C (probe's few-shot default, SegConfig.C)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating pipeline / model-only measurements")
    ap.add_argument("--step", type=int, default=1, help="keep every step-th axial slice")
    ap.add_argument("--quick", action="store_true", help="tiny run for tests (64 px, every 6th slice, 1 seed)")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    if args.quick:
        args.image_size, args.step, args.seeds, args.epochs, args.repeats = 64, 6, 1, 2, 1
    from probe.evaluate import load_eval_data
    from probe.sources._base import cache_root
    from probe.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        manifest = tissue_manifest(cache_root() / "nilearn-tissue" / f"step{args.step}", step=args.step)
        ext = extraction(args, manifest, Path(tmp))
        data = load_eval_data(open_store(ext["store"]), pooling=args.pooling)
        draws = _draws(data, args.seeds)
        runs: dict[str, list[float]] = {"probe": [], "torch": []}
        dices: dict[str, list[float]] = {}
        for _ in range(args.repeats):  # alternating, medians
            s, dices["probe"] = probe_sweep(data, draws, args.C)
            runs["probe"].append(s)
            s, dices["torch"] = torch_loop(data, draws, args.epochs)
            runs["torch"].append(s)
    text = _report(args, ext, data, draws, runs, dices)
    print(text)
    if not args.quick:
        _write_section(Path(args.out), "dense", text)


def _report(args: Any, ext: dict[str, Any], data: Any, draws: Any, runs: dict[str, list[float]],
            dices: dict[str, list[float]]) -> str:  # fmt: skip
    probe_s, torch_s = statistics.median(runs["probe"]), statistics.median(runs["torch"])
    lv_p, lv_t = _by_level(draws, dices["probe"]), _by_level(draws, dices["torch"])
    load = os.getloadavg()[0]
    lines = [
        "<!-- bench:dense:start -->",
        "## Dense probing (`bench/bench_dense.py`)",
        "",
        f"`{' '.join(['python', 'bench/bench_dense.py', *sys.argv[1:]])}` on {_cpu_name()} ({os.cpu_count()} "
        f"cores, CPU only; 1-min load average {load:.1f} at the end: other jobs distort both sides alike).",
        "",
        f"Data: the MNI152 2009 T1 template shipped by `nilearn`, background / grey / white matter, "
        f"{ext['rows']} axial slices (train {data.train.n}, val {data.val.n if data.val else 0}, "
        f"test {data.test.n}), split by blocks of {BLOCK} slices. One template brain: a real-image smoke test.",
        "",
        f"- Store: `{args.backbone}` at {args.image_size} px, `--pooling {args.pooling}`: grid "
        f"{ext['grid'][0]}x{ext['grid'][1]}, {ext['bytes_per_row'] / 1024:.1f} KiB per image (float16 grid + "
        "uint8 mask).",
        f"- Extraction, median of {args.repeats}: pipeline {ext['pipeline']:.1f} img/s vs model-only "
        f"{ext['model']:.1f} img/s, ratio {ext['pipeline'] / ext['model']:.2f} (pairs: "
        + ", ".join(f"{p:.1f}/{m:.1f}" for p, m in ext["pairs"])
        + ").",
        f"- seg-linear sweep, labelled slices {', '.join(map(str, LEVELS))} x {args.seeds} seeds "
        f"({len(draws)} draws), median of {args.repeats}: probe's batched soft-label fit {probe_s:.1f} s vs "
        f"torch loop ({args.epochs} epochs of AdamW per draw) {torch_s:.1f} s: **{torch_s / probe_s:.1f}x** "
        "(target >= 5x).",
        "",
        "| labelled slices | probe seg-linear Dice | torch loop Dice | difference (points) |",
        "|---|---|---|---|",
    ]
    for level in lv_p:
        diff = 100 * (lv_p[level] - lv_t[level])
        lines.append(f"| {level} | {lv_p[level]:.3f} | {lv_t[level]:.3f} | {diff:+.1f} |")
    mean_diff = 100 * (np.mean(list(lv_p.values())) - np.mean(list(lv_t.values())))
    lines += [
        "",
        f"Mean foreground Dice on the test slices, mean over seeds; over all levels probe minus torch = "
        f"{mean_diff:+.1f} points (target: the same Dice within 1 point).",
        "<!-- bench:dense:end -->",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
