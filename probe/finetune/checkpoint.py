"""Per-epoch checkpoints of a fine-tuning run, keyed by everything that changes its result.

A run's folder is named by a hash of the data fingerprint, the backbone weights, the preprocessing,
the recipe, the training draw and the seed, so a resumed run only ever continues the same
computation: a changed setting starts a new folder instead of continuing a stale one. Files are
written to a temporary name and renamed, so a kill during a save leaves the previous epoch intact.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe.errors import StoreError
from probe.provenance import canonical_hash

DEFAULT_DIR = "checkpoints"
STATE_FILE = "last.pt"
BEST_FILE = "best.pt"
DONE_FILE = "done.json"


def run_key(inputs: dict[str, Any]) -> str:
    """Short hex key of a run's inputs (data, weights, preprocessing, recipe, draw, seed)."""
    return canonical_hash(inputs)[:20]


def run_dir(root: str | os.PathLike[str], *, name: str, key: str) -> Path:
    """``<root>/<name>-<key>``."""
    return Path(root) / f"{name}-{key}"


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """Global CPU RNG states (python, numpy, torch) in a form ``torch.load(weights_only=True)`` reads.

    CUDA generators are not saved: every epoch reseeds them (``train.py``), and their states are one
    per visible GPU, which would tie a checkpoint to the machine's GPU count.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    return {
        "python": [int(version), [int(v) for v in internal], gauss],
        "numpy": [str(name), np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (a ``cuda`` entry of an older checkpoint is ignored)."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((str(name), np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters and every buffer (frozen weights are rebuilt from the backbone)."""
    keep = {n for n, p in model.named_parameters() if p.requires_grad}
    keep |= {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in keep}


def save_epoch(folder: Path, state: dict[str, Any]) -> None:
    """Write the state of a finished epoch (model, optimiser, scheduler, RNG, history)."""
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_save(state, folder / STATE_FILE)


def save_best(folder: Path, model_state: dict[str, torch.Tensor], *, epoch: int) -> None:
    """Write the weights of the best epoch so far (early stopping), tagged with its epoch."""
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_save({"epoch": epoch, "model": model_state}, folder / BEST_FILE)


def remove_states(folder: Path) -> None:
    """Delete the weight files of a finished run (``done.json`` stays)."""
    for name in (STATE_FILE, BEST_FILE):
        (folder / name).unlink(missing_ok=True)


#: Keys every file must hold (a file without them is another program's, or a half-written one).
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    STATE_FILE: (
        "epoch",
        "model",
        "optimizer",
        "scheduler",
        "rng",
        "best",
        "best_epoch",
        "bad",
        "history",
        "lp",
        "steps",
    ),
    BEST_FILE: ("epoch", "model"),
}


def load(folder: Path, name: str = STATE_FILE) -> Any | None:
    """A saved state, or None when the file does not exist.

    Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a
    crafted checkpoint cannot run code.

    Raises:
        StoreError: the file exists but cannot be read or lacks a key (one line naming the file and
            saying to delete its folder, which restarts that draw).
    """
    path = folder / name
    if not path.exists():
        return None
    fix = f"delete the folder {folder} to train this draw from scratch"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreError(f"checkpoint {path} cannot be read ({reason}); {fix}") from None
    missing = [k for k in REQUIRED_KEYS.get(name, ()) if not isinstance(state, dict) or k not in state]
    if missing:
        raise StoreError(f"checkpoint {path} is not a probe checkpoint (no {missing[0]!r}); {fix}")
    return state


def write_done(folder: Path, payload: dict[str, Any]) -> None:
    """Mark a run finished, with what its rows need (probabilities and params)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (DONE_FILE + ".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, folder / DONE_FILE)


def read_done(folder: Path) -> dict[str, Any] | None:
    """The payload of a finished run, or None."""
    path = folder / DONE_FILE
    if not path.exists():
        return None
    out: dict[str, Any] = json.loads(path.read_text())
    return out
