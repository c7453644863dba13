"""Several writers on one store: shard specs, --shard i/n job arrays and torchrun ranks (gloo, 2 CPUs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from probe.backbones import load_backbone
from probe.distributed import Team, find_team, parse_shard
from probe.errors import ConfigError
from probe.extraction import ExtractConfig, extract_embeddings
from probe.sources import open_source
from probe.store import open_store
from tests.conftest import write_image_folder

REPO = Path(__file__).resolve().parents[1]
POOLINGS = ("cls", "mean")


def _cfg(root: Path, **kw: object) -> ExtractConfig:
    base: dict[str, object] = {"store_root": str(root), "batch_size": 4, "chunk_rows": 8, "num_workers": 0}
    return ExtractConfig(**{**base, "progress": False, "poolings": POOLINGS, **kw})  # type: ignore[arg-type]


def _same_features(a: str, b: str) -> None:
    sa, sb = open_store(a), open_store(b)
    assert sa.fingerprint == sb.fingerprint
    for p in POOLINGS:
        np.testing.assert_array_equal(sa.features(p), sb.features(p))  # bit for bit
    np.testing.assert_array_equal(sa.valid, sb.valid)


@pytest.mark.parametrize("spec", ["3/2", "a/b", "2/2", "1", "-1/2", "1/0"])
def test_bad_shard_specs_are_one_line_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match=rf"ExtractConfig\(shard='{spec}'\) is invalid; use i/n with 0 <= i < n"):
        ExtractConfig(shard=spec)
    assert parse_shard(" 1/4 ") == (1, 4)


def test_a_shard_never_replaces_or_repairs() -> None:
    with pytest.raises(ConfigError, match="cannot replace or repair a store other shards write"):
        ExtractConfig(shard="0/2", overwrite=True)


def test_team_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_team(None) == Team()
    assert find_team("1/3") == Team(index=1, count=3, kind="shard")
    assert Team(index=1, count=3).owned(list(range(8))) == [1, 4, 7]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert find_team(None) == Team(index=1, count=2, kind="ranks", local_rank=1)
    with pytest.raises(ConfigError, match="cannot be combined with 2 torchrun ranks"):
        find_team("0/2")


def test_two_shards_fill_one_store_identical_to_one_process(image_folder: Path, tmp_path: Path) -> None:
    src = open_source(f"folder:{image_folder}")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    solo = extract_embeddings(src, bb, _cfg(tmp_path / "solo"))
    first = extract_embeddings(src, bb, _cfg(tmp_path / "shards", shard="1/2"))
    assert not first.complete and first.pending == 3 and first.writer == "1/2"  # 36 rows: chunks 0..4, 1 and 3 here
    assert first.rows_computed == 16
    store = open_store(first.store, require_complete=False)
    assert not store.complete and store.array("done").tolist() == [False, True, False, True, False]
    last = extract_embeddings(src, bb, _cfg(tmp_path / "shards", shard="0/2"))
    assert last.complete and last.rows_computed == 20 and last.pending == 0
    _same_features(solo.store, last.store)
    assert open_store(last.store).attrs["runs"][-1]["writer"] == "shard 0/2"
    again = extract_embeddings(src, bb, _cfg(tmp_path / "shards", shard="1/2"))
    assert again.noop and again.complete


def _extract_args(data: Path, root: Path) -> list[str]:
    return [
        "extract", f"folder:{data}", "--backbone", "timm:test_vit", "--random-weights", "--image-size", "32",
        "--pooling", ",".join(POOLINGS), "--batch-size", "4", "--chunk-rows", "8", "--num-workers", "0",
        "--store-root", str(root), "--json", "--no-progress",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]


def test_two_torchrun_ranks_write_one_store_identical_to_one_process(image_folder: Path, tmp_path: Path) -> None:
    solo = subprocess.run(
        [sys.executable, "-m", "cli", *_extract_args(image_folder, tmp_path / "solo")],
        env=_env(), capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    ranks = subprocess.run(
        _torchrun("-m", "cli", *_extract_args(image_folder, tmp_path / "ranks")),
        env=_env(), capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert ranks.returncode == 0, ranks.stderr[-2000:]
    outs = [json.loads(line) for line in ranks.stdout.splitlines() if line.startswith("{")]
    assert sorted(o["writer"] for o in outs) == ["0/2", "1/2"]
    assert sum(o["rows_computed"] for o in outs) == 36 and all(o["complete"] for o in outs)
    _same_features(json.loads(solo.stdout)["store"], outs[0]["store"])


@pytest.mark.slow
def test_torchrun_ranks_that_see_different_data_refuse_in_one_line(image_folder: Path, tmp_path: Path) -> None:
    other = write_image_folder(tmp_path / "other", seed=1)  # rank 1 reads other pixels
    args = " ".join(_extract_args(image_folder, tmp_path / "ranks")).replace(f"folder:{image_folder}", "$DATA")
    pick = f'if [ "$RANK" = 1 ]; then DATA=folder:{other}; else DATA=folder:{image_folder}; fi'
    script = f"{pick}; exec {sys.executable} -m cli {args}"
    proc = subprocess.run(
        _torchrun("--no-python", "bash", "-c", script), env=_env(), capture_output=True, text=True, cwd=REPO,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "error: torchrun ranks disagree on the store fingerprint: rank 0 has" in proc.stderr
    assert not list((tmp_path / "ranks").glob("*/*.zarr"))  # nothing half-written


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (torchrun's ranks run in sessions of their own)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return sorted(out)


@pytest.mark.slow
def test_torchrun_killed_then_resumed_gives_identical_features(tmp_path: Path) -> None:
    image_folder = write_image_folder(tmp_path / "imgs", per_class=30)  # 180 rows, 23 chunks
    solo = subprocess.run(
        [sys.executable, "-m", "cli", *_extract_args(image_folder, tmp_path / "solo")],
        env=_env(), capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    root = tmp_path / "ranks"
    proc = subprocess.Popen(
        _torchrun("-m", "cli", *_extract_args(image_folder, root)), env=_env(), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not list(root.glob("*/*.zarr/done/c/*")):
        time.sleep(0.01)
    assert proc.poll() is None, "the ranks finished before they could be killed"
    os.kill(_children(proc.pid)[-1], signal.SIGKILL)  # one rank; torchrun's agent then stops the other
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    store = next(root.glob("*/*.zarr"))
    assert not open_store(str(store), require_complete=False).complete
    again = subprocess.run(
        _torchrun("-m", "cli", *_extract_args(image_folder, root)), env=_env(), capture_output=True, text=True,
        cwd=REPO, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    _same_features(json.loads(solo.stdout)["store"], str(store))
