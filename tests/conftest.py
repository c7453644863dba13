"""Shared fixtures: the real MedMNIST folder, synthetic image folders, tiny weights files and a loopback S3 server."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# Tests never download: huggingface_hub reads this once, at import, so it is set before anything
# imports timm or transformers.
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MEDMNIST = Path(os.environ.get("PROBE_DATA_ROOT") or REPO.parent / "shared" / "data" / "medmnist")
BUCKET = "probe-test"  # the bucket the s3_server fixture creates


def cli_ok(args: list[str]) -> str:
    """Run the ``probe`` CLI in-process with ``args``; its output, after asserting it exited 0."""
    from typer.testing import CliRunner

    from cli.main import app

    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture
def medmnist_root() -> Path:
    """The official MedMNIST files beside the repo; tests using it skip cleanly when absent."""
    if not (MEDMNIST / "breastmnist.npz").is_file():
        pytest.skip(f"MedMNIST files not found in {MEDMNIST}")
    return MEDMNIST


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test downloads, touches the user's cache, or reads a caller's data root by accident."""
    monkeypatch.setenv("PROBE_OFFLINE", "1")
    monkeypatch.setenv("PROBE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBE_DATA_ROOT", raising=False)
    monkeypatch.delenv("PROBE_STORE_ROOT", raising=False)


@pytest.fixture(autouse=True)
def _cpu_only_unless_gpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests not marked ``gpu`` see no CUDA (torch and FAISS), so the default suite runs the same on a GPU box."""
    if request.node.get_closest_marker("gpu") is not None:
        return
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # subprocesses (CLI runs) start without CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    import faiss

    if hasattr(faiss, "get_num_gpus"):
        monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)


def write_image_folder(root: Path, *, per_class: int = 6, size: int = 24, splits: bool = True, seed: int = 0) -> Path:
    """ImageFolder of two classes whose mean brightness differs (so features carry signal)."""
    rng = np.random.default_rng(seed)
    split_names = ("train", "val", "test") if splits else ("",)
    for split in split_names:
        for ci, cls in enumerate(("cyst", "normal")):
            d = root / split / cls if split else root / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                base = 60 + 120 * ci
                a = np.clip(rng.normal(base, 20, size=(size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{cls}_{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "imgs")


@pytest.fixture(scope="session")
def tiny_vit_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dict for timm's ``test_vit`` saved as .safetensors (the air-gapped --weights path)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = timm.create_model("test_vit", pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "test_vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def write_feature_store(
    root: Path,
    features: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    *,
    dataset: str = "synth",
    backbone: str = "toy",
    classes: list[str] | None = None,
    task: str = "multiclass",
    groups: list[str] | None = None,
    valid: np.ndarray | None = None,
    spec: str | None = None,
) -> str:
    """A complete probe store holding given features (no model): what extraction would have written."""
    from probe.store import StoreLayout, StoreWriter, store_path

    n, dim = features.shape
    n_classes = int(labels.max()) + 1
    fingerprint = hashlib.sha256(f"{dataset}|{backbone}".encode() + features.tobytes()).hexdigest()
    path = store_path(root, dataset=dataset, backbone=backbone, fingerprint=fingerprint)
    chunk = 64
    w = StoreWriter.create(
        path,
        layout=StoreLayout(n_rows=n, poolings={"gap": dim}, chunk_rows=chunk),
        labels=labels,
        splits=splits,
        ids=[f"{dataset}/{i:05d}" for i in range(n)],
        groups=groups,
        attrs={
            "fingerprint": fingerprint,
            "source": {
                "spec": spec or f"medmnist:{dataset}@28",
                "name": dataset,
                "task": task,
                "classes": classes or [f"c{i}" for i in range(n_classes)],
            },
            "backbone": {"name": backbone, "preprocess": {"image_size": 224}},
            "command": f"probe extract {dataset} --backbone {backbone}",
        },
    )
    ok = np.ones(n, bool) if valid is None else valid
    for c in w.pending_chunks():
        lo, hi = w.chunk_bounds(c)
        w.write_chunk(c, {"gap": features[lo:hi]}, ok[lo:hi])
    w.finish({"runs": []})
    return path


def gaussian_features(
    n_per_class: dict[str, int], *, n_classes: int = 4, dim: int = 16, sep: float = 2.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded class-clustered features with train/val/test split codes (0/1/2)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, sep, size=(n_classes, dim))
    X, y, s = [], [], []
    for code, split in enumerate(("train", "val", "test")):
        for c in range(n_classes):
            m = n_per_class[split]
            X.append(centres[c] + rng.normal(size=(m, dim)))
            y += [c] * m
            s += [code] * m
    return np.concatenate(X).astype(np.float32), np.array(y, np.int64), np.array(s, np.int8)


@pytest.fixture
def synth_store(tmp_path: Path) -> str:
    """A store of 4 Gaussian classes: 40 train, 10 val, 25 test per class, 16-d features."""
    X, y, s = gaussian_features({"train": 40, "val": 10, "test": 25})
    return write_feature_store(tmp_path / "embeddings", X, y, s)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with one bucket; yields the AWS_* variables of a user allowed everything."""
    import boto3

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},  # the 3 IAM calls below; then signatures count
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        kw = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **kw)
        iam.create_user(UserName="probe")
        key = iam.create_access_key(UserName="probe")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="probe", PolicyName="all", PolicyDocument=json.dumps(policy))
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        s3 = boto3.client(
            "s3", aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], **kw
        )
        s3.create_bucket(Bucket=BUCKET)
        yield env
    finally:
        server.kill()
        server.wait()


def drop_s3_filesystems() -> None:
    """Close and forget every cached s3fs filesystem (they outlive a test's AWS_* variables otherwise)."""
    import s3fs

    for fs in list(s3fs.S3FileSystem._cache.values()):
        if getattr(fs, "_s3", None) is not None:
            s3fs.S3FileSystem.close_session(fs.loop, fs._s3)
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def aws(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The server's variables in this process (s3fs caches filesystems per arguments, not per environment).

    Sessions left open are collected here, in this module's teardown (where their "unraisable" close
    is ignored), never later inside another module's test.
    """
    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    drop_s3_filesystems()
    yield s3_server
    drop_s3_filesystems()
    gc.collect()
