"""Golden outputs of the evaluation core: real BreastMNIST, multi-label and multi-modal synthetic curves,
one LoRA fine-tune draw and the report, produced through the CLI and reduced to what must never change
by a refactor (values, CIs, params, sample digests, the report's text without paths and times).

``python -m tests.evaluate.golden --write`` records ``tests/evaluate/golden.json`` (only when a change
of numbers is intended, and say so in the commit); ``test_golden.py`` compares against it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

GOLDEN = Path(__file__).with_name("golden.json")
# Row fields that identify and value a result; timings, run ids, times and versions may change.
KEPT = ("dataset", "backbone", "pooling", "head_name", "protocol", "shots", "fraction", "seed", "metric",
        "value", "ci_low", "ci_high", "ci_method", "n_train", "n_test", "n_classes", "labels_per_class",
        "params", "split", "sample_digest", "setup", "flags")  # fmt: skip
VOLATILE = ("index", "train_seconds", "peak_memory_mb")  # FAISS index class (GPU/CPU), timings, memory


def golden_weights(folder: Path) -> Path:
    """timm ``test_vit`` weights drawn by NumPy with a fixed seed (norm scales 1, biases 0).

    The record must not depend on a library's random initialisation: timm's own init of ``test_vit``
    changed between releases and moved every random-weights number (a weights file keeps them).
    """
    import numpy as np
    import timm
    import torch
    from safetensors.torch import save_file

    state = timm.create_model("test_vit", pretrained=False).state_dict()
    rng = np.random.default_rng(0)
    out = {}
    for name in sorted(state):
        t = state[name]
        if name.endswith("bias"):
            out[name] = torch.zeros_like(t)
        elif "norm" in name:
            out[name] = torch.ones_like(t)
        else:
            out[name] = torch.from_numpy(rng.normal(0.0, 0.02, tuple(t.shape)).astype(np.float32))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "test_vit_golden.safetensors"
    save_file(out, str(path))
    return path


def _invoke(args: list[str]) -> dict[str, Any]:
    from cli.main import app

    res = CliRunner().invoke(app, [*args, "--json"])
    if res.exit_code != 0:
        raise AssertionError(f"probe {' '.join(args)} failed:\n{res.output}")
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def _rows(out: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{k: r.get(k) for k in KEPT} for r in out["results"]]
    for r in rows:
        r["params"] = {k: v for k, v in r["params"].items() if k not in VOLATILE}
        r["setup"] = {k: v for k, v in (r["setup"] or {}).items() if k != "store"}  # the store hash holds versions
    ident = ("dataset", "backbone", "pooling", "head_name", "protocol", "shots", "fraction", "seed", "metric")
    return sorted(rows, key=lambda r: json.dumps([[r[k] for k in ident], r["params"].get("ablate")]))


def _report_text(path: Path, tmp: Path) -> list[str]:
    text = path.read_text().replace(str(tmp), "<tmp>").split("## Provenance")[0]  # stores, dates, versions vary
    text = re.sub(r"\d{4}-\d\d-\d\dT[\d:]+(\+00:00|Z)?", "<time>", text)
    volatile = ("versions", "probe 0.", "Embedding stores:")  # fingerprints hold tmp paths and versions
    return [ln for ln in text.splitlines() if not any(v in ln for v in volatile)]


def produce(tmp: Path, medmnist: Path) -> dict[str, Any]:
    """Every golden output, computed under ``tmp``."""
    from tests._views import write_multimodal_manifest
    from tests.cli.test_multilabel_cli import LABELS
    from tests.cli.test_multilabel_cli import _manifest as multilabel_manifest
    from tests.conftest import write_image_folder

    tiny = ["--backbone", "timm:test_vit", "--weights", str(golden_weights(tmp / "weights")), "--image-size", "32"]
    res = str(tmp / "results")
    emb = ["--store-root", str(tmp / "emb"), "--results", res]
    out: dict[str, Any] = {}
    breast = _invoke(["curve", "medmnist:breastmnist", "--data-root", str(medmnist), "--image-size", "64",
                      "--heads", "knn,linear,prototype,labelspread", "--shots", "1,4,16,all", "--seeds", "3",
                      *emb])  # fmt: skip
    out["breastmnist"] = _rows(breast)
    ml = multilabel_manifest(tmp / "ml")
    out["multilabel"] = _rows(_invoke(["curve", f"csv:{ml}", "--label-columns", ",".join(LABELS), *tiny,
                                       "--shots", "2,all", "--seeds", "2", "--bootstrap", "50", *emb]))  # fmt: skip
    mm = write_multimodal_manifest(tmp / "mm", per_class={"train": 16, "val": 4, "test": 16})
    out["multimodal"] = _rows(_invoke(["curve", f"csv:{mm}", *tiny, "--heads", "knn,linear,prototype",
                                       "--modality-dropout", "0.3", "--shots", "4,all", "--seeds", "2",
                                       "--bootstrap", "50", *emb]))  # fmt: skip
    folder = write_image_folder(tmp / "imgs", per_class=4)
    out["finetune"] = _rows(_invoke(["finetune", f"folder:{folder}", *tiny, "--results", res, "--mode", "lora",
                                     "--lora-rank", "4", "--shots", "2", "--seeds", "1", "--epochs", "1",
                                     "--min-steps", "0", "--bootstrap", "20",
                                     "--checkpoints", str(tmp / "ckpt")]))  # fmt: skip
    rep = _invoke(["report", res, "--out", str(tmp / "report")])
    out["report_md"] = _report_text(Path(rep["markdown"]), tmp)
    return out


def main() -> None:
    from tests.conftest import MEDMNIST

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="record golden.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        os.environ.update(PROBE_OFFLINE="1", PROBE_CACHE_DIR=str(Path(d) / "cache"))
        os.environ.pop("PROBE_STORE_ROOT", None)
        out = produce(Path(d), MEDMNIST)
    text = json.dumps(out, indent=1, sort_keys=True) + "\n"
    if args.write:
        GOLDEN.write_text(text)
        print(f"wrote {GOLDEN}")
    else:
        print(text)


if __name__ == "__main__":
    main()
