"""S3 failures at the command line: one ``error:`` line and exit code 1 (issue 13, clear errors).

A missing bucket, refused credentials and an unreachable endpoint, against the loopback moto server
of ``s3_server`` (conftest); the unreachable endpoint is a closed port on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import BUCKET, REPO, drop_s3_filesystems, free_port

pytest.importorskip("moto")
pytest.importorskip("s3fs")
# dropped s3fs filesystems close their aiohttp session at garbage collection ("unraisable"): not an error here
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

runner = CliRunner()
CASES = ("missing bucket", "wrong credentials", "no endpoint")


def _break(case: str, aws: dict[str, str]) -> tuple[dict[str, str], str, str]:
    """(AWS_* variables, store root, expected error line as a regex) of one failure."""
    root = "s3://no-such-bucket/emb" if case == "missing bucket" else f"s3://{BUCKET}/emb"
    env = dict(aws)
    if case == "wrong credentials":
        env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    if case == "no endpoint":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"  # loopback, nothing listening
    at, of = re.escape(env["AWS_ENDPOINT_URL"]), f"--store-root {re.escape(root)}"
    line = {
        "missing bucket": rf"error: bucket 'no-such-bucket' of {of} does not exist at {at}; create it first or "
        "fix the URL",
        "wrong credentials": rf"error: {at} refused the credentials for {of} \(.+\); check AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY",
        "no endpoint": rf"error: cannot reach {at} for {of} \(.+\); check AWS_ENDPOINT_URL and the network",
    }[case]
    return env, root, line


def _extract_args(data: Path, root: str) -> list[str]:
    return ["extract", f"folder:{data}", "--backbone", "timm:test_vit", "--random-weights", "--image-size", "32",
            "--num-workers", "0", "--no-progress", "--store-root", root]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_extract_and_store_ls_say_one_line_and_exit_1(
    case: str, aws: dict[str, str], image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, root, line = _break(case, aws)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # bounded retries are the library test's; here: the message
    drop_s3_filesystems()
    for args in (_extract_args(image_folder, root), ["store", "ls", root]):
        res = runner.invoke(app, args)
        assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (args[:2], res.output)
        assert re.fullmatch(line, res.stderr.strip()) and len(res.stderr.splitlines()) == 1, res.stderr
        assert res.stdout == ""
    for k, v in aws.items():
        monkeypatch.setenv(k, v)
    drop_s3_filesystems()
    ok = runner.invoke(app, ["store", "ls", f"s3://{BUCKET}/emb"])
    assert ok.exit_code == 0 and "no stores under" in ok.stdout, ok.output  # nothing was written


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_extract_process_prints_only_the_error_line(case: str, aws: dict[str, str], image_folder: Path) -> None:
    """The whole process: no traceback and no late warning (e.g. an unclosed session at exit) on stderr."""
    env, root, line = _break(case, aws)
    full = {**os.environ, **env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "cli", *_extract_args(image_folder, root)], env=full,
                          capture_output=True, text=True, cwd=REPO, timeout=180)  # fmt: skip
    assert proc.returncode == 1
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and re.fullmatch(line, lines[0]), proc.stderr[-2000:]
