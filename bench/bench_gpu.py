"""GPU benchmark: extraction throughput and FLOP efficiency, a whole curve on GPU vs CPU, a LoRA step.

Run from the repository root on a CUDA machine (``bash bench/gpu.sh`` runs the ``gpu`` tests first);
the figures replace the ``gpu`` section of docs/benchmarks.md:

    .venv/bin/python bench/bench_gpu.py --data-root ../shared/data/medmnist

Measured, in bf16 autocast:
  * extraction of efficientnet_lite0 and of a ViT-B/14 built from its config (timm
    ``vit_base_patch14_dinov2``, random weights, 224 px): model-only img/s on synthetic batches,
    pipeline img/s (decode -> preprocess -> forward -> store of the first N BloodMNIST images), their
    ratio (target >= 0.85), and the model's FLOP/s as a fraction of the GPU's dense bf16 peak
    (target >= 35 % for the ViT; FLOPs counted by ``torch.utils.flop_counter`` on one image);
  * the whole BloodMNIST curve (efficientnet_lite0 extraction + kNN, linear and prototype heads over
    the default shots x seeds) with everything on the GPU, then everything on the CPU;
  * a LoRA fine-tuning step of the ViT-B/14 (batch 32, 224 px): images/s and peak memory.

On a machine without CUDA it stops at once with "no CUDA device" (exit code 1).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VIT = "timm:vit_base_patch14_dinov2"
CNN = "efficientnet_lite0"
#: Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets), matched against the device name in order.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("H200", 989.4),
    ("H20", 148.0),
    ("GH200", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.1),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("A6000", 154.8),
)


class NoCudaError(SystemExit):
    """Raised (as exit code 1) where the benchmark cannot run."""


def use_repo_imports() -> None:
    """``python bench/bench_gpu.py`` puts bench/ first on sys.path, where bench/probe.py would shadow the package."""
    bench = (REPO / "bench").resolve()
    sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != bench and p != str(REPO)]


def require_cuda() -> str:
    """The CUDA device's name, or exit 1 with "no CUDA device"."""
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA device: bench/gpu.sh and bench/bench_gpu.py need a CUDA GPU", file=sys.stderr)
        raise NoCudaError(1)
    return str(torch.cuda.get_device_name(0))


def bf16_peak_tflops(name: str, override: float | None = None) -> float | None:
    """The dense bf16 peak of a GPU by its name (None when unknown and not given)."""
    if override:
        return override
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="medmnist:bloodmnist")
    ap.add_argument("--data-root", default=None, help="folder of the MedMNIST files (default: probe's lookup)")
    ap.add_argument("--images", type=int, default=4096, help="pipeline images per backbone")
    ap.add_argument("--batch-size", type=int, default=256, help="extraction batch size")
    ap.add_argument("--batches", type=int, default=20, help="model-only batches after a warm-up")
    ap.add_argument("--lora-batch", type=int, default=32)
    ap.add_argument("--lora-steps", type=int, default=20)
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak if not in the table")
    ap.add_argument("--skip-curve", action="store_true", help="skip the GPU-vs-CPU curve")
    ap.add_argument("--skip-cpu-curve", action="store_true", help="time the curve on the GPU only")
    ap.add_argument("--label", default="gpu", help="section of the output file to (re)write")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument("--check-cuda", action="store_true", help="only check that a CUDA device is present")
    return ap.parse_args(argv)


def flops_per_image(backbone: Any, device: Any) -> float:
    """Forward FLOPs of one image (matmuls and convolutions, as torch's flop counter counts them)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    s = backbone.preprocess.image_size
    model = backbone.pooler.to(device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, s, s, device=device))
    return float(counter.get_total_flops())


def model_only(backbone: Any, *, batch: int, batches: int, device: Any) -> float:
    """Images per second of the pooler alone on synthetic input (bf16 autocast, outputs copied to the host)."""
    import torch

    from probe.runtime import autocast

    model = backbone.pooler.to(device)
    if backbone.channels_last:
        model = model.to(memory_format=torch.channels_last)
    s = backbone.preprocess.image_size
    x = torch.randn(batch, 3, s, s, device=device)
    if backbone.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast("bf16", device):
        for _ in range(2):  # warm-up (cuDNN autotuning, allocator)
            model(x)
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            out = model(x)
            {k: v.float().to("cpu", non_blocking=True) for k, v in out.items()}
        torch.cuda.synchronize(device)
    return batch * batches / (time.perf_counter() - t0)


def pipeline(backbone: Any, source: Any, *, batch: int, device: str) -> float:
    """Images per second of the whole extraction of ``source`` into a fresh store."""
    from probe.extraction import ExtractConfig, extract_embeddings

    with tempfile.TemporaryDirectory() as tmp:
        cfg = ExtractConfig(batch_size=batch, precision="bf16", device=device, store_root=tmp, progress=False)
        t0 = time.perf_counter()
        res = extract_embeddings(source, backbone, cfg)
        return res.images_computed / (time.perf_counter() - t0)


def bench_extraction(args: argparse.Namespace, peak: float | None) -> list[dict[str, Any]]:
    import torch

    from probe.backbones import load_backbone
    from probe.sources import SubsetSource, open_source

    device = torch.device("cuda", 0)
    full = open_source(args.data, data_root=args.data_root)
    n = min(args.images, len(full))
    source = SubsetSource(full, list(range(n)), label=f"gpubench{n}")
    rows = []
    for name in (CNN, VIT):
        bb = load_backbone(name, pretrained=name == CNN, image_size=224)
        flops = flops_per_image(bb, device)
        model_ips = model_only(bb, batch=args.batch_size, batches=args.batches, device=device)
        pipe_ips = pipeline(bb, source, batch=args.batch_size, device="cuda:0")
        achieved = flops * model_ips / 1e12
        rows.append(
            {
                "backbone": name,
                "model_ips": model_ips,
                "pipeline_ips": pipe_ips,
                "ratio": pipe_ips / model_ips,
                "gflops_per_image": flops / 1e9,
                "tflops": achieved,
                "peak_fraction": achieved / peak if peak else None,
                "images": n,
            }
        )
        print(rows[-1], flush=True)
    return rows


def bench_curve(args: argparse.Namespace, device: str) -> float:
    """Seconds for the whole curve (extraction + every head) with everything on ``device``."""
    from probe.evaluate import PlanConfig, StoreChoice, run_curve
    from probe.extraction import ExtractConfig
    from probe.sources import SourceRequest

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_curve(
            SourceRequest(spec=args.data, data_root=args.data_root),
            backbones=[CNN],
            plan=PlanConfig(device=device),
            choice=StoreChoice(store_root=tmp),
            results_dir=None,
            extract_config=ExtractConfig(device=device, batch_size=args.batch_size if device != "cpu" else 64),
        )
        return time.perf_counter() - t0


def bench_lora(args: argparse.Namespace) -> dict[str, float]:
    """A LoRA step of the ViT-B/14 at 224 px in bf16: images/s and peak memory."""
    import torch

    from probe.backbones import load_backbone
    from probe.finetune import FinetuneConfig
    from probe.finetune.model import build_classifier, param_groups

    device = torch.device("cuda", 0)
    bb = load_backbone(VIT, pretrained=False, image_size=224)
    cfg = FinetuneConfig(mode="lora")
    pooling = bb.default_poolings[0]
    torch.manual_seed(0)
    model = build_classifier(bb.pooler, dim=bb.poolings[pooling], n_classes=8, config=cfg, pooling=pooling, seed=0)
    model.to(device).train()
    opt = torch.optim.AdamW(param_groups(model, cfg))
    x = torch.randn(args.lora_batch, 1, 3, 224, 224, device=device)
    y = torch.randint(0, 8, (args.lora_batch,), device=device)
    present = torch.ones(args.lora_batch, 1, dtype=torch.bool, device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x, present).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.lora_steps):
        step()
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    return {
        "images_per_second": args.lora_batch * args.lora_steps / seconds,
        "step_ms": 1000 * seconds / args.lora_steps,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30,
    }


def report(
    gpu: str, peak: float | None, extraction: list[dict[str, Any]], curve: dict[str, float], lora: dict[str, float]
) -> str:
    import torch

    lines = [
        "<!-- bench:{label}:start -->",
        "## GPU (bench/bench_gpu.py)",
        "",
        f"{gpu}, PyTorch {torch.__version__}, CUDA {torch.version.cuda}, Python {platform.python_version()}; "
        f"bf16 autocast; dense bf16 peak {peak if peak else 'unknown'} TFLOP/s.",
        "",
        "| backbone (224 px) | model-only img/s | pipeline img/s | pipeline / model | GFLOP/img | TFLOP/s "
        "| of bf16 peak |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in extraction:
        frac = f"{100 * r['peak_fraction']:.1f} %" if r["peak_fraction"] is not None else "n/a"
        lines.append(
            f"| {r['backbone']} | {r['model_ips']:.0f} | {r['pipeline_ips']:.0f} | {r['ratio']:.2f} | "
            f"{r['gflops_per_image']:.2f} | {r['tflops']:.1f} | {frac} |"
        )
    lines += [
        "",
        f"Pipeline: the first {extraction[0]['images'] if extraction else 0} images of the data, fresh store.",
    ]
    if curve:
        cells = ", ".join(f"{k}: {v:.0f} s" for k, v in curve.items())
        lines += ["", f"Whole BloodMNIST curve (efficientnet_lite0, kNN + linear + prototype, default plan): {cells}."]
    if lora:
        lines += [
            "",
            f"LoRA step, ViT-B/14 224 px, batch {int(lora.get('batch', 0))}: {lora['images_per_second']:.0f} img/s, "
            f"{lora['step_ms']:.0f} ms/step, peak {lora['peak_memory_gib']:.1f} GiB.",
        ]
    lines.append("<!-- bench:{label}:end -->")
    return "\n".join(lines)


def write_section(path: Path, label: str, section: str) -> None:
    """Replace (or append) the ``<!-- bench:<label>:start/end -->`` section of ``path``."""
    section = section.replace("{label}", label)
    start, end = f"<!-- bench:{label}:start -->", f"<!-- bench:{label}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    use_repo_imports()
    gpu = require_cuda()
    if args.check_cuda:
        print(f"CUDA device: {gpu}")
        return
    peak = bf16_peak_tflops(gpu, args.peak_tflops)
    extraction = bench_extraction(args, peak)
    curve: dict[str, float] = {}
    if not args.skip_curve:
        curve["GPU"] = bench_curve(args, "cuda:0")
        if not args.skip_cpu_curve:
            curve["CPU"] = bench_curve(args, "cpu")
    lora = {**bench_lora(args), "batch": float(args.lora_batch)}
    write_section(Path(args.out), args.label, report(gpu, peak, extraction, curve, lora))


if __name__ == "__main__":
    main()
