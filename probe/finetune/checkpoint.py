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
    """Global RNG states (python, numpy, torch CPU and CUDA)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


def load(folder: Path, name: str = STATE_FILE) -> Any | None:
    """A saved state, or None when the file does not exist.

    Raises:
        StoreError: the file exists but cannot be read (the message says how to start over).
    """
    path = folder / name
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise StoreError(
            f"checkpoint {path} cannot be read ({exc}); delete the folder {folder} to train this run from scratch"
        ) from None


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
