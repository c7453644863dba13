"""Stores on object storage, against a real S3 server on loopback (moto in server mode: `s3_server` in conftest).

The server checks signatures (``INITIAL_NO_AUTH_ACTION_COUNT``): the fixture creates a user whose keys
the tests pass through the standard ``AWS_*`` variables, so wrong credentials are refused as on AWS.
"""

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
from fsspec.implementations.local import LocalFileSystem
from typer.testing import CliRunner

from cli.main import app
from probe.errors import StoreError
from probe.store import list_stores, open_store
from tests.conftest import BUCKET, drop_s3_filesystems, free_port, write_image_folder

pytest.importorskip("moto")
pytest.importorskip("s3fs")
# s3fs filesystems dropped from its instance cache (the tests change AWS_* variables) close their aiohttp
# session at garbage collection, which Python reports as an "unraisable" exception; it is not an error here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

REPO = Path(__file__).resolve().parents[1]
POOLINGS = ("cls", "mean")
runner = CliRunner()


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
    drop_s3_filesystems()
    with pytest.raises(
        StoreError, match="refused the credentials .* check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    ):
        list_stores(f"s3://{BUCKET}/x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    drop_s3_filesystems()
    t0 = time.monotonic()
    with pytest.raises(StoreError, match=r"cannot reach http://127.0.0.1:\d+ for .* check AWS_ENDPOINT_URL"):
        open_store(f"s3://{BUCKET}/x/a.zarr")
    assert time.monotonic() - t0 < 30  # bounded retries, no hang


@pytest.mark.parametrize("where", ["s3", pytest.param("folder", marks=pytest.mark.slow)])
def test_two_shards_at_once_one_killed_resume_equal_local_and_probe_from_the_bucket(
    aws: dict[str, str], tmp_path: Path, where: str
) -> None:
    # S3 is slow enough for 72 rows (9 chunks: shard 1 owns 1, 3, 5, 7); a folder needs more to be caught mid-run
    data = write_image_folder(tmp_path / "imgs", per_class=12 if where == "s3" else 60)
    root = f"s3://{BUCKET}/emb-{tmp_path.name}" if where == "s3" else str(tmp_path / "shared")
    env = {**os.environ, **aws, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "cli", *args], env=env, cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    import s3fs

    fs, base = (s3fs.S3FileSystem(), root[len("s3://") :]) if where == "s3" else (LocalFileSystem(), root)
    # the single-process reference runs beside the shards (same flags and thread count: the same bits)
    local = start(*_extract_args(data, str(tmp_path / "local")))
    shard0, shard1 = (start(*_extract_args(data, root, "--shard", shard)) for shard in ("0/2", "1/2"))
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
    out_local, err_local = local.communicate(timeout=300)
    assert local.returncode == 0, err_local[-2000:]

    resumed = _run(_extract_args(data, root, "--shard", "1/2"), aws, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    last = json.loads(resumed.stdout)
    assert (
        last["complete"]
        and last["store"] == first["store"]
        and 0 < last["rows_computed"] < (32 if where == "s3" else 180)
    )

    drop_s3_filesystems()
    a, b = open_store(json.loads(out_local)["store"]), open_store(last["store"])
    assert a.fingerprint == b.fingerprint
    for p in POOLINGS:
        np.testing.assert_array_equal(a.features(p), b.features(p))  # bit for bit
    assert [s.path for s in list_stores(root)] == [last["store"]]

    # the reading commands in this process (the AWS_* variables are set here too): no interpreter start each
    ls = runner.invoke(app, ["store", "ls", root, "--json"])
    assert ls.exit_code == 0 and last["store"] in ls.stdout, ls.output
    info = runner.invoke(app, ["store", "info", last["store"], "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["complete"] is True, info.output
    knn = runner.invoke(
        app,
        ["knn", f"folder:{data}", "--backbone", "timm:test_vit", "--store-root", root, "--no-save", "--json",
         "--bootstrap", "0", "--k", "3"],
    )  # fmt: skip
    assert knn.exit_code == 0, knn.output
    assert json.loads(knn.stdout)["results"]
