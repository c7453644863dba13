"""Stores on object storage, against a real S3 server on loopback (moto in server mode, started here).

The server checks signatures (``INITIAL_NO_AUTH_ACTION_COUNT``): the fixture creates a user whose keys
the tests pass through the standard ``AWS_*`` variables, so wrong credentials are refused as on AWS.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem

from probe.errors import StoreError
from probe.store import list_stores, open_store
from tests.conftest import write_image_folder

pytest.importorskip("moto")
pytest.importorskip("s3fs")
# s3fs filesystems dropped from its instance cache (the tests change AWS_* variables) close their aiohttp
# session at garbage collection, which Python reports as an "unraisable" exception; it is not an error here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

REPO = Path(__file__).resolve().parents[1]
POOLINGS = ("cls", "mean")
BUCKET = "probe-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with one bucket; yields the AWS_* variables of a user allowed everything."""
    import boto3

    port = _free_port()
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


def _drop_filesystems() -> None:
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
    _drop_filesystems()
    yield s3_server
    _drop_filesystems()
    gc.collect()


def _extract_args(data: Path, root: str, *extra: str) -> list[str]:
    return [
        "extract", f"folder:{data}", "--backbone", "timm:test_vit", "--random-weights", "--image-size", "32",
        "--pooling", ",".join(POOLINGS), "--batch-size", "4", "--chunk-rows", "8", "--num-workers", "0",
        "--store-root", root, "--json", "--no-progress", *extra,
    ]  # fmt: skip


def _run(args: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=full, capture_output=True, text=True, cwd=REPO, **kw
    )  # type: ignore[call-overload,no-any-return]


def test_missing_bucket_wrong_credentials_and_no_endpoint_are_one_line_errors(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:

    with pytest.raises(
        StoreError, match=r"bucket 'no-such-bucket' of StoreChoice\(store_root=s3://no-such-bucket/x\) does not exist"
    ):
        list_stores("s3://no-such-bucket/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    _drop_filesystems()
    with pytest.raises(
        StoreError, match="refused the credentials .* check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    ):
        list_stores(f"s3://{BUCKET}/x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    _drop_filesystems()
    t0 = time.monotonic()
    with pytest.raises(StoreError, match=r"cannot reach http://127.0.0.1:\d+ for .* check AWS_ENDPOINT_URL"):
        open_store(f"s3://{BUCKET}/x/a.zarr")
    assert time.monotonic() - t0 < 30  # bounded retries, no hang


@pytest.mark.slow
def test_cli_error_for_a_missing_bucket_is_one_line(aws: dict[str, str], image_folder: Path) -> None:
    proc = _run(_extract_args(image_folder, "s3://no-such-bucket/emb"), aws, timeout=120)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "error: bucket 'no-such-bucket' of --store-root s3://no-such-bucket/emb"
    )


@pytest.mark.parametrize("where", ["s3", pytest.param("folder", marks=pytest.mark.slow)])
def test_two_shards_at_once_one_killed_resume_equal_local_and_probe_from_the_bucket(
    aws: dict[str, str], tmp_path: Path, where: str
) -> None:
    # S3 is slow enough for 72 rows (9 chunks: shard 1 owns 1, 3, 5, 7); a folder needs more to be caught mid-run
    data = write_image_folder(tmp_path / "imgs", per_class=12 if where == "s3" else 60)
    local = _run(_extract_args(data, str(tmp_path / "local")), aws, timeout=300)
    assert local.returncode == 0, local.stderr[-2000:]
    root = f"s3://{BUCKET}/emb-{tmp_path.name}" if where == "s3" else str(tmp_path / "shared")
    env = {**os.environ, **aws, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    def start(shard: str) -> subprocess.Popen[str]:
        args = _extract_args(data, root, "--shard", shard)
        return subprocess.Popen([sys.executable, "-m", "cli", *args], env=env, cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    import s3fs

    fs, base = (s3fs.S3FileSystem(), root[len("s3://") :]) if where == "s3" else (LocalFileSystem(), root)
    shard0, shard1 = start("0/2"), start("1/2")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and shard1.poll() is None:
        done = fs.glob(f"{base}/*/*.zarr/done/c/*", **({"refresh": True} if where == "s3" else {}))
        if any(int(p.rsplit("/", 1)[1]) % 2 for p in done):  # shard 1 finished a chunk of its own
            break
        time.sleep(0.05)
    assert shard1.poll() is None, "shard 1 finished before it could be killed"
    shard1.send_signal(signal.SIGKILL)
    shard1.communicate()
    out0, err0 = shard0.communicate(timeout=300)
    assert shard0.returncode == 0, err0[-2000:]
    first = json.loads(out0)
    assert first["writer"] == "0/2" and not first["complete"] and first["pending"] > 0

    resumed = _run(_extract_args(data, root, "--shard", "1/2"), aws, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    last = json.loads(resumed.stdout)
    assert (
        last["complete"]
        and last["store"] == first["store"]
        and 0 < last["rows_computed"] < (32 if where == "s3" else 180)
    )

    _drop_filesystems()
    a, b = open_store(json.loads(local.stdout)["store"]), open_store(last["store"])
    assert a.fingerprint == b.fingerprint
    for p in POOLINGS:
        np.testing.assert_array_equal(a.features(p), b.features(p))  # bit for bit
    assert [s.path for s in list_stores(root)] == [last["store"]]

    ls = _run(["store", "ls", root, "--json"], aws, timeout=120)
    assert ls.returncode == 0 and last["store"] in ls.stdout
    info = _run(["store", "info", last["store"], "--json"], aws, timeout=120)
    assert info.returncode == 0 and json.loads(info.stdout)["complete"] is True, info.stderr[-2000:]
    knn = _run(
        ["knn", f"folder:{data}", "--backbone", "timm:test_vit", "--store-root", root, "--no-save", "--json",
         "--bootstrap", "0", "--k", "3"],
        aws, timeout=300,
    )  # fmt: skip
    assert knn.returncode == 0, knn.stderr[-2000:]
    assert json.loads(knn.stdout)["results"]
