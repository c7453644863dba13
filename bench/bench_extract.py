"""Extraction benchmark: model-only forward vs the whole pipeline, write share and peak RSS.

Run from the repository root (figures go to docs/benchmarks.md, between the extract markers):

    .venv/bin/python bench/bench_extract.py --data-root ../shared/data/medmnist

In one run, for the same model, batch size and precision:
  * model-only: forward passes on synthetic (batch, 3, S, S) tensors, after one warm-up batch;
  * pipeline: decode -> preprocess -> forward -> store of the first N BloodMNIST images into a
    fresh store (DataLoader workers, background writer), wall clock of the whole call;
  * write share: seconds the writer thread spent writing / pipeline wall clock;
  * peak RSS of a separate process extracting N and 4N images (should not grow with N).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _shared import REPO
from _shared import cpu_name as _cpu_name
from _shared import write_section as _write_section


def _subset(data: str, data_root: str | None, n: int):  # type: ignore[no-untyped-def]
    from probe.sources import SubsetSource, open_source

    src = open_source(data, data_root=data_root)
    return SubsetSource(src, list(range(min(n, len(src)))), label=f"bench{n}")


def model_only(backbone, batch: int, batches: int, precision: str, device: str) -> float:  # type: ignore[no-untyped-def]
    """Images per second of the pooler alone on synthetic input."""
    import torch

    from probe.runtime import autocast

    dev = torch.device(device)
    model = backbone.pooler.to(dev)
    if backbone.channels_last:
        model = model.to(memory_format=torch.channels_last)
    s = backbone.preprocess.image_size
    x = torch.randn(batch, 3, s, s, device=dev)
    if backbone.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(precision, dev):
        model(x)  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(batches):
            out = model(x)
            {k: v.float().cpu() for k, v in out.items()}  # same device->host copy as the pipeline
        if dev.type == "cuda":
            torch.cuda.synchronize()
    return batch * batches / (time.perf_counter() - t0)


def pipeline(backbone, source, batch: int, precision: str, device: str, workers: int | None) -> dict:  # type: ignore[no-untyped-def]
    """Whole extraction of ``source`` into a fresh temporary store."""
    from probe.extraction import ExtractConfig, extract_embeddings

    with tempfile.TemporaryDirectory() as tmp:
        cfg = ExtractConfig(
            batch_size=batch, precision=precision, device=device, store_root=tmp, num_workers=workers, progress=False
        )
        t0 = time.perf_counter()
        res = extract_embeddings(source, backbone, cfg)
        wall = time.perf_counter() - t0
    return {
        "images_per_second": res.rows_computed / wall,
        "wall": wall,
        "write_seconds": res.write_seconds,
        "rows": res.rows_computed,
    }


def child_rss(args: argparse.Namespace, n: int) -> float:
    """Peak RSS (MiB) of a fresh process extracting the first ``n`` images."""
    cmd = [
        sys.executable,
        __file__,
        "--child-rss",
        str(n),
        "--data",
        args.data,
        "--batch-size",
        str(args.batch_size),
        "--precision",
        args.precisions.split(",")[0],
        "--device",
        args.device,
    ]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="medmnist:bloodmnist")
    ap.add_argument("--data-root", default=os.environ.get("PROBE_DATA_ROOT"))
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--images", type=int, default=640, help="pipeline images (a multiple of the batch size)")
    ap.add_argument("--precisions", default="auto", help="comma list; auto = bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--repeats", type=int, default=3, help="alternating model-only / pipeline measurements")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--num-workers", type=int, default=None)
    ap.add_argument("--rss-images", type=int, default=256, help="RSS is measured at this N and 4N")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--label", default="extract", help="section of the output file to (re)write")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument("--child-rss", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny run (tests: the script runs; figures mean nothing): timm:test_vit with random weights at "
        "32 px, 16 images, batch 8, one repeat, no RSS processes",
    )
    args = ap.parse_args()
    if args.quick:
        args.backbone, args.images, args.batch_size, args.repeats, args.skip_rss = "timm:test_vit", 16, 8, 1, True

    from probe.backbones import load_backbone
    from probe.runtime import resolve_device, resolve_precision

    dev = resolve_device(args.device)
    device = str(dev)
    precisions = [resolve_precision(p, dev) for p in args.precisions.split(",")]
    backbone = (
        load_backbone(args.backbone, pretrained=False, image_size=32) if args.quick else load_backbone(args.backbone)
    )
    if args.child_rss is not None:
        source = _subset(args.data, args.data_root, args.child_rss)
        pipeline(backbone, source, args.batch_size, args.precision, device, None)
        print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return

    source = _subset(args.data, args.data_root, args.images)
    rows = []
    for precision in precisions:
        ms, ps = [], []
        for _ in range(args.repeats):  # alternate, so drift on a shared machine hits both alike
            ms.append(model_only(backbone, args.batch_size, max(1, args.images // args.batch_size), precision, device))
            ps.append(pipeline(backbone, source, args.batch_size, precision, device, args.num_workers))
        p = sorted(ps, key=lambda r: r["images_per_second"])[len(ps) // 2]
        rows.append((precision, statistics.median(ms), p, ms, [r["images_per_second"] for r in ps]))
        print(
            f"{precision}: model-only {[round(v, 1) for v in ms]} img/s, pipeline "
            f"{[round(r['images_per_second'], 1) for r in ps]} img/s",
            flush=True,
        )
    rss = None
    if not args.skip_rss:
        args.precisions = precisions[0]
        rss = (child_rss(args, args.rss_images), child_rss(args, 4 * args.rss_images))
        print(f"peak RSS: {rss[0]:.0f} MiB at {args.rss_images} images, {rss[1]:.0f} MiB at {4 * args.rss_images}")
    _write_section(Path(args.out), args.label, _report(args, device, backbone, len(source), rows, rss))


def _report(args, device, backbone, n_images, rows, rss) -> str:  # type: ignore[no-untyped-def]
    import torch

    gpu = f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else ""
    lines = [
        f"<!-- bench:{args.label}:start -->",
        f"## Extraction (`bench/bench_extract.py`, {args.label})",
        "",
        f"- command: `python bench/bench_extract.py {' '.join(sys.argv[1:])}`",
        f"- machine: {_cpu_name()}, {os.cpu_count()} cores, device `{device}`{gpu}",
        f"- software: torch {torch.__version__}, Python {platform.python_version()}",
        f"- data: first {n_images} images of `{args.data}`; backbone `{args.backbone}` at "
        f"{backbone.preprocess.image_size} px; batch {args.batch_size}",
        f"- date: {time.strftime('%Y-%m-%d')}; medians of {args.repeats} alternating measurements",
        "",
        "| precision | model-only img/s | pipeline img/s | pipeline / model | write / wall | runs: model / pipeline |",
        "|---|---|---|---|---|---|",
    ]
    for precision, m, p, ms, ps in rows:
        lines.append(
            f"| {precision} | {m:.1f} | {p['images_per_second']:.1f} | {p['images_per_second'] / m:.2f} | "
            f"{100 * p['write_seconds'] / p['wall']:.2f} % | {', '.join(f'{v:.1f}' for v in ms)} / "
            f"{', '.join(f'{v:.1f}' for v in ps)} |"
        )
    if rss is not None:
        lines += [
            "",
            f"Peak RSS of a whole extraction process ({rows[0][0]}): {rss[0]:.0f} MiB for {args.rss_images} "
            f"images, {rss[1]:.0f} MiB for {4 * args.rss_images} images (ratio {rss[1] / rss[0]:.2f}).",
        ]
    lines.append(f"<!-- bench:{args.label}:end -->")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
