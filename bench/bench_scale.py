"""Scale-out benchmark: torchrun ranks, a loopback S3 store, the fast JPEG path, the volume path.

Run from the repository root (figures go to docs/benchmarks.md, between the scale markers):

    .venv/bin/python bench/bench_scale.py --data-root ../shared/data/medmnist

In one run:
  * ranks: ``probe extract`` of the same data as 1 process x 2 threads and as 2 torchrun ranks
    (gloo) x 1 thread: bit-identical features, and the wall ratio (1 rank / 2 ranks; >= 0.9 wanted);
  * storage: the same extraction into a local folder and into a loopback S3 server (moto, started
    here): writer-thread share of the extraction wall, and ``open_store(...).features()`` MB/s;
  * decode: images/s on one core (torch and PIL single-threaded) of synthetic 2048x1536 JPEGs
    (quality 90) and 4000x3000 16-bit PNGs to 224 px, exact vs fast path;
  * accuracy: BloodMNIST 28-px images upsampled to 1024 px and saved as JPEG (a stand-in for
    high-resolution inputs), embedded through the exact and the fast path; logistic-regression test
    accuracy of each and its bootstrap standard error (the noise the difference is compared with);
  * volume: AdrenalMNIST3D slices at 64 px, pipeline images/s / model-only images/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from _shared import REPO
from _shared import cpu_name as _cpu_name
from _shared import write_section as _write_section


def _env(threads: int, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads), "PROBE_OFFLINE": "1", **extra}


def _extract_args(a: argparse.Namespace, data: str, root: str, *extra: str) -> list[str]:
    """``probe extract`` arguments; the ranks and storage runs (``data == a.data``) keep ``a.limit`` rows per split."""
    if data == a.data and a.limit:
        extra = (*extra, "--limit", str(a.limit))
    args = ["extract", data, "--backbone", a.backbone, "--image-size", str(a.image_size), "--batch-size",
            str(a.batch_size), "--num-workers", "0", "--store-root", root, "--json", "--no-progress",
            *extra]  # fmt: skip
    if a.random_weights:
        args.append("--random-weights")
    if a.data_root:
        args += ["--data-root", a.data_root]
    return args


def _run(cmd: list[str], env: dict[str, str]) -> tuple[list[dict[str, Any]], float]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")], wall


def _features_equal(a: str, b: str) -> tuple[bool, float]:
    from probe.store import open_store

    sa, sb = open_store(a), open_store(b)
    p = next(iter(sa.poolings))
    fa, fb = sa.features(p), sb.features(p)
    return bool(np.array_equal(fa, fb)), float(np.nanmax(np.abs(fa - fb)))


def bench_ranks(a: argparse.Namespace, data: str, tmp: Path) -> dict[str, Any]:
    one, wall1 = _run([sys.executable, "-m", "cli", *_extract_args(a, data, str(tmp / "one"))], _env(2))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "cli"]
    two, wall2 = _run([*torchrun, *_extract_args(a, data, str(tmp / "two"))], _env(1))
    ref1, _ = _run([sys.executable, "-m", "cli", *_extract_args(a, data, str(tmp / "one1"))], _env(1))
    equal, diff = _features_equal(ref1[0]["store"], two[0]["store"])
    equal2, diff2 = _features_equal(one[0]["store"], two[0]["store"])
    s1, s2 = one[0]["seconds"], max(o["seconds"] for o in two)
    return {"rows": one[0]["rows"], "wall_1x2": wall1, "wall_2x1": wall2, "extract_1x2": s1, "extract_2x1": s2,
            "identical_1thread": equal, "maxdiff_1thread": diff, "identical_2threads": equal2,
            "maxdiff_2threads": diff2}  # fmt: skip


def _moto() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    os.environ.update(env)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("bench")
    return server, env


def _read_mb_s(path: str, repeats: int) -> float:
    from probe.store import open_store

    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        store = open_store(path)
        feats = [store.features(p) for p in store.poolings]
        best = max(best, sum(f.nbytes for f in feats) / 1e6 / (time.perf_counter() - t0))
    return best


def bench_storage(a: argparse.Namespace, data: str, tmp: Path) -> dict[str, Any]:
    server, aws = _moto()
    try:
        out: dict[str, Any] = {}
        for name, root in (("local", str(tmp / "local")), ("s3", "s3://bench/emb")):
            res, _ = _run([sys.executable, "-m", "cli", *_extract_args(a, data, root)], _env(2, **aws))
            r = res[0]
            out[name] = {"write_share": r["write_seconds"] / r["seconds"], "seconds": r["seconds"],
                         "read_mb_s": _read_mb_s(r["store"], a.repeats)}  # fmt: skip
        return out
    finally:
        server.kill()
        server.wait()


def _synthetic_images(tmp: Path, quick: bool) -> dict[str, Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    jw, jh = (512, 384) if quick else (2048, 1536)
    pw, ph = (400, 300) if quick else (4000, 3000)
    yy, xx = np.mgrid[0:jh, 0:jw]
    base = np.stack([xx * 255 // jw, yy * 255 // jh, (xx ^ yy) & 255], axis=2)
    rgb = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    jpg = tmp / "photo.jpg"
    Image.fromarray(rgb).save(jpg, "JPEG", quality=90)
    yy, xx = np.mgrid[0:ph, 0:pw]
    gray = ((xx * 40000 // pw + yy * 20000 // ph) + rng.integers(0, 2000, (ph, pw))).astype(np.uint16)
    png = tmp / "mammo16.png"
    Image.fromarray(gray).save(png)  # mode I;16
    return {"JPEG 2048x1536 q90" if not quick else "JPEG 512x384 q90": jpg,
            "PNG 16-bit 4000x3000" if not quick else "PNG 16-bit 400x300": png}  # fmt: skip


def bench_decode(a: argparse.Namespace, tmp: Path) -> dict[str, dict[str, float]]:
    import torch

    from probe.backbones import PreprocessConfig, Preprocessor
    from probe.sources.images import read_image

    torch.set_num_threads(1)
    pre = Preprocessor(PreprocessConfig(image_size=224))
    out: dict[str, dict[str, float]] = {}
    for name, path in _synthetic_images(tmp, a.quick).items():
        out[name] = {}
        for mode, side in (("exact", None), ("fast", 224)):
            pre(read_image(path, fast_side=side))  # warm-up
            n, t0 = 0, time.perf_counter()
            while n < a.decode_images or time.perf_counter() - t0 < 0.5:
                pre(read_image(path, fast_side=side))
                n += 1
            out[name][mode] = n / (time.perf_counter() - t0)
    return out


def _upsampled_jpegs(a: argparse.Namespace, tmp: Path) -> str:
    from PIL import Image

    from probe.sources import open_source

    src = open_source("medmnist:bloodmnist", data_root=a.data_root)
    names = ("train", "val", "test")
    per = {"train": a.acc_train, "val": 0, "test": a.acc_test}
    rows = []
    for code, split in enumerate(names):
        idx = np.flatnonzero(src.splits == code)[: per[split]]
        rows += [(split, int(i)) for i in idx]
    side = a.acc_side
    lines = ["path,label,split"]
    for split, i in rows:
        f = tmp / "blood" / f"{split}-{i}.jpg"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(src.load_image(i)).resize((side, side), Image.Resampling.BICUBIC).save(f, "JPEG", quality=90)
        lines.append(f"{f},{src.classes[int(src.labels[i])]},{split}")
    manifest = tmp / "blood.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return f"csv:{manifest}"


def bench_accuracy(a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from probe.store import open_store

    data = _upsampled_jpegs(a, tmp)
    out: dict[str, Any] = {}
    for mode in ("exact", "fast"):
        res, _ = _run([sys.executable, "-m", "cli", *_extract_args(a, data, str(tmp / "acc"), "--decode", mode)],
                         _env(2))  # fmt: skip
        store = open_store(res[0]["store"])
        x = store.features(next(iter(store.poolings)))
        y, split = store.labels, store.split
        tr, te = split == 0, split == 2
        scaler = StandardScaler().fit(x[tr])
        clf = LogisticRegression(max_iter=2000, C=0.1).fit(scaler.transform(x[tr]), y[tr])
        hit = clf.predict(scaler.transform(x[te])) == y[te]
        rng = np.random.default_rng(0)
        boot = [hit[rng.integers(0, len(hit), len(hit))].mean() for _ in range(1000)]
        out[mode] = {"accuracy": float(hit.mean()), "se": float(np.std(boot)), "hit": hit,
                     "img_s": res[0]["images_per_second"]}  # fmt: skip
    both = out["exact"]["hit"].astype(int) - out["fast"]["hit"].astype(int)
    rng = np.random.default_rng(1)
    out["diff"] = float(both.mean())
    out["paired_se"] = float(np.std([both[rng.integers(0, len(both), len(both))].mean() for _ in range(1000)]))
    out["n_test"] = len(both)
    return out


def _volume_cpu(bb: Any, src: Any, a: argparse.Namespace) -> dict[str, float]:
    """Median over ``a.repeats`` runs, one torch thread: the process CPU seconds of the pipeline and the
    CPU seconds inside the model's forward calls of the same run (other jobs on the machine barely move
    CPU seconds, unlike wall-clock rates)."""
    import statistics

    import torch

    from probe.extraction import ExtractConfig, extract_embeddings

    torch.set_num_threads(1)
    inside = [0.0, 0.0]  # forward CPU seconds, start of the current forward

    def start(*_: Any) -> None:
        inside[1] = time.process_time()

    def stop(*_: Any) -> None:
        inside[0] += time.process_time() - inside[1]

    hooks = [bb.pooler.register_forward_pre_hook(start), bb.pooler.register_forward_hook(stop)]
    runs = []
    try:
        for _ in range(a.repeats):
            inside[0] = 0.0
            with tempfile.TemporaryDirectory() as tmp:
                cfg = ExtractConfig(
                    batch_size=a.batch_size, store_root=tmp, num_workers=0, progress=False, device="cpu"
                )
                c0 = time.process_time()
                extract_embeddings(src, bb, cfg)
                runs.append((time.process_time() - c0, inside[0]))
    finally:
        for h in hooks:
            h.remove()
        torch.set_num_threads(2)
    pipe, model = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    return {"cpu_pipeline_s": pipe, "cpu_model_s": model, "cpu_ratio": model / pipe}


def bench_volume(a: argparse.Namespace) -> dict[str, Any]:
    """``a.volume_repeats`` pairs of one pipeline run and one model-only run (the model-only loop is
    bench_extract's: same channels-last input, autocast context and host copy as the pipeline), the order
    alternating from pair to pair; each pair gives one ratio and the median ratio is reported (wall-clock
    rates on 2 cores swing by 10-20 % from run to run, so a best-of or a single pair misleads). Then the
    CPU-time split of the pipeline (:func:`_volume_cpu`)."""
    import statistics

    import torch
    from bench_extract import model_only

    from probe.backbones import BackboneRequest
    from probe.extraction import ExtractConfig, extract_embeddings
    from probe.sources import SubsetSource, open_source

    torch.set_num_threads(2)
    bb = BackboneRequest(a.backbone, image_size=64, pretrained=not a.random_weights).load()
    src = open_source("medmnist:adrenalmnist3d", data_root=a.data_root)
    src = SubsetSource(src, list(range(min(a.volumes, len(src)))), label=f"bench{a.volumes}")
    load = os.getloadavg()[0]

    def pipeline() -> tuple[float, int]:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = ExtractConfig(batch_size=a.batch_size, store_root=tmp, num_workers=0, progress=False, device="cpu")
            t0 = time.perf_counter()
            res = extract_embeddings(src, bb, cfg)
            return res.images_computed / (time.perf_counter() - t0), res.images_computed

    _, images = pipeline()  # warm-up: the first forward calls of each shape are slow on both sides
    batches = max(1, images // a.batch_size)
    pairs: list[tuple[float, float]] = []
    for i in range(a.volume_repeats):
        if i % 2:  # odd pairs run the model-only loop first
            only = model_only(bb, a.batch_size, batches, "fp32", "cpu")
            pipe, _ = pipeline()
        else:
            pipe, _ = pipeline()
            only = model_only(bb, a.batch_size, batches, "fp32", "cpu")
        pairs.append((pipe, only))
    ratios = [p / o for p, o in pairs]
    return {"pipeline": statistics.median(p for p, _ in pairs), "model_only": statistics.median(o for _, o in pairs),
            "ratio": statistics.median(ratios), "ratios": ratios, "images": images,
            "load": max(load, os.getloadavg()[0]), **_volume_cpu(bb, src, a)}  # fmt: skip


def _volume_in_child() -> dict[str, Any]:
    """:func:`bench_volume` in a fresh process with this run's arguments: the earlier parts leave threads,
    caches and imports behind in this one (an in-process run after them read a median ratio of 0.75 where
    standalone runs read 0.87-1.04 on the same quiet machine)."""
    res = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--volume-child"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    if res.returncode:
        raise SystemExit(f"the volume part failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def _same(equal: bool, diff: float) -> str:
    return "bit-identical" if equal else f"max |diff| {diff:.2e}"


def _section(a: argparse.Namespace, r: dict[str, Any]) -> str:
    rk, st, dec, acc, vol = r["ranks"], r["storage"], r["decode"], r.get("accuracy"), r.get("volume")
    lines = [
        "<!-- bench:scale:start -->",
        "## Scaling out (`bench/bench_scale.py`, scale)",
        "",
        f"Machine: {_cpu_name()}, {os.cpu_count()} cores, {platform.system()}; torch threads as stated. "
        f"Run {r['when']}, 1-min load average {r['load'][0]:.1f} at the start and {r['load'][1]:.1f} at the end "
        "(the run itself included); other jobs on the machine distort wall-clock figures (ratios are measured "
        "back to back in one run).",
        f"Command: `{' '.join(['python', 'bench/bench_scale.py', *sys.argv[1:]])}`"
        + (" (`--quick`: tiny sizes, figures mean nothing)" if a.quick else ""),
        "",
        f"**Ranks** ({a.data}, {rk['rows']} rows, `{a.backbone}` at {a.image_size} px, batch {a.batch_size}, CPU "
        "fp32, gloo):",
        "",
        "| run | extraction s | process wall s |",
        "|---|---|---|",
        f"| 1 process x 2 threads | {rk['extract_1x2']:.1f} | {rk['wall_1x2']:.1f} |",
        f"| 2 torchrun ranks x 1 thread | {rk['extract_2x1']:.1f} | {rk['wall_2x1']:.1f} |",
        "",
        f"Wall ratio (1 rank / 2 ranks, extraction): **{rk['extract_1x2'] / rk['extract_2x1']:.2f}** "
        f"(process wall {rk['wall_1x2'] / rk['wall_2x1']:.2f}). Features of 2 ranks vs 1 process with the same "
        f"thread count: {_same(rk['identical_1thread'], rk['maxdiff_1thread'])}; vs 1 process x 2 threads: "
        f"{_same(rk['identical_2threads'], rk['maxdiff_2threads'])}.",
        "",
        "**Storage** (same extraction, local folder vs moto's S3 server on 127.0.0.1):",
        "",
        "| store | extraction s | writer share of wall | `features()` read MB/s |",
        "|---|---|---|---|",
        *(
            f"| {k} | {v['seconds']:.1f} | {100 * v['write_share']:.1f} % | {v['read_mb_s']:.0f} |"
            for k, v in st.items()
        ),
        "",
        "**Decode + preprocess to 224 px, one core** (images/s/core):",
        "",
        "| input | exact | fast | fast / exact |",
        "|---|---|---|---|",
        *(f"| {k} | {v['exact']:.1f} | {v['fast']:.1f} | {v['fast'] / v['exact']:.1f}x |" for k, v in dec.items()),
        "",
        "The fast path only changes JPEGs; PNG/TIFF and 16-bit files are decoded once either way "
        "(one float32 copy, rescaled in place).",
    ]
    if acc:
        lines += [
            "",
            f"**Fast-path accuracy** (stand-in for high-resolution inputs: BloodMNIST 28-px images upsampled to "
            f"{a.acc_side} px and saved as JPEG q90; {a.acc_train} train / {acc['n_test']} test images; "
            f"`{a.backbone}` at {a.image_size} px; logistic regression, C = 0.1 on standardised features):",
            "",
            "| path | test accuracy | bootstrap SE | pipeline img/s |",
            "|---|---|---|---|",
            *(
                f"| {m} | {acc[m]['accuracy']:.3f} | {acc[m]['se']:.3f} | {acc[m]['img_s']:.1f} |"
                for m in ("exact", "fast")
            ),
            "",
            f"Paired difference exact - fast: {acc['diff']:+.3f} (paired bootstrap SE {acc['paired_se']:.3f}).",
        ]
    if vol:
        lines += [
            "",
            f"**Volume path** (AdrenalMNIST3D, first {a.volumes} volumes, every slice, `{a.backbone}` at 64 px, 2 "
            f"threads; each batch's slices resized as one tensor, one plane per grayscale slice; volume stores "
            f"chunked at about 4096 slices; load average {vol['load']:.1f} on {os.cpu_count()} cores). After one "
            f"warm-up extraction, {a.volume_repeats} pairs of a pipeline run and a model-only run, the order "
            f"alternating: medians pipeline {vol['pipeline']:.1f} img/s, model-only {vol['model_only']:.1f} img/s; "
            f"median paired ratio **{vol['ratio']:.2f}** ({vol['images']} slices; pairs: "
            f"{', '.join(f'{x:.2f}' for x in vol['ratios'])}). CPU seconds of the same extraction at one "
            f"thread (median of {a.repeats}; robust to other jobs): pipeline {vol['cpu_pipeline_s']:.2f} s, inside "
            f"the model {vol['cpu_model_s']:.2f} s, model share **{vol['cpu_ratio']:.2f}** (everything else: "
            f"{vol['cpu_pipeline_s'] - vol['cpu_model_s']:.2f} s).",
        ]
    lines.append("<!-- bench:scale:end -->")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="medmnist:bloodmnist", help="data of the ranks and storage runs")
    ap.add_argument("--data-root", default=os.environ.get("PROBE_DATA_ROOT"))
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--limit", type=int, default=128, help="rows per split of the ranks and storage runs (0: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode-images", type=int, default=20, help="decodes per measurement (at least 0.5 s)")
    ap.add_argument("--acc-train", type=int, default=400)
    ap.add_argument("--acc-test", type=int, default=400)
    ap.add_argument("--acc-side", type=int, default=1024)
    ap.add_argument("--volumes", type=int, default=240, help="AdrenalMNIST3D volumes of the volume part (28 slices)")
    ap.add_argument("--volume-repeats", type=int, default=7, help="pipeline / model-only pairs of the volume part")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-volume", action="store_true")
    ap.add_argument("--volume-child", action="store_true", help=argparse.SUPPRESS)  # the volume part, JSON on stdout
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny run (tests: the script runs; figures mean nothing): timm:test_vit with random weights at 32 px, "
        "the --data folder as given, small synthetic images, no accuracy or volume parts",
    )
    a = ap.parse_args()
    if a.volume_child:
        print(json.dumps(bench_volume(a)))
        return
    if a.quick:
        a.backbone, a.random_weights, a.image_size, a.batch_size, a.repeats = "timm:test_vit", True, 32, 4, 1
        a.limit = None
        a.decode_images, a.skip_accuracy, a.skip_volume = 2, True, True
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        load0 = os.getloadavg()[0]
        results["ranks"] = bench_ranks(a, a.data, tmp)
        results["storage"] = bench_storage(a, a.data, tmp)
        results["decode"] = bench_decode(a, tmp)
        if not a.skip_accuracy:
            results["accuracy"] = bench_accuracy(a, tmp)
        if not a.skip_volume:
            results["volume"] = _volume_in_child()
        results["load"] = (load0, os.getloadavg()[0])
    print(json.dumps({k: v for k, v in results.items() if k != "accuracy"}, indent=1, default=str))
    _write_section(Path(a.out), "scale", _section(a, results))


if __name__ == "__main__":
    main()
