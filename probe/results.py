"""Result rows and the append-only results table (JSON Lines) that every report reads.

One row per (dataset, backbone, pooling, head, protocol, shots or fraction, seed, metric). Rows are
only ever appended: a file is locked, one line per row is written and flushed, and nothing is
rewritten, so a crash loses at most the rows of the evaluation in flight.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.errors import ResultsError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_DIR = "results"
RESULTS_FILE = "results.jsonl"
SCHEMA = "probe.results/1"


_IDENTITY = {"key": "identity"}  # what was evaluated: a curve point of one configuration, seed and metric
_PROVENANCE = {"key": "provenance"}  # on what exactly: rows equal on every key field are reruns of each other


@dataclass(frozen=True)
class ResultRow:
    """One evaluated number with everything needed to reproduce and compare it."""

    dataset: str = field(metadata=_IDENTITY)  # source name, e.g. "bloodmnist_28"
    backbone: str = field(metadata=_IDENTITY)  # backbone name as registered (or timm:/hf: spec)
    pooling: str = field(metadata=_IDENTITY)  # which stored features, e.g. "gap", "cls"
    head: str = field(metadata=_IDENTITY)  # "knn", "linear", "prototype", "finetune-<mode>"
    protocol: str = field(metadata=_IDENTITY)  # "full", "shots", "fraction" or "episodes"
    shots: int | str | None = field(
        metadata=_IDENTITY
    )  # labels per class, "all" for the whole train split, None for fractions
    fraction: float | None = field(metadata=_IDENTITY)  # label fraction for the "fraction" protocol
    seed: int = field(metadata=_IDENTITY)  # seed of the draw (and of every other random step of this row)
    metric: str = field(metadata=_IDENTITY)  # metric name from probe.metrics
    value: float  # the metric on the evaluation split
    ci_low: float | None  # 95 % bootstrap CI over the evaluation split (None when not computed)
    ci_high: float | None
    ci_method: str  # e.g. "bootstrap-1000" or "none"
    n_train: int  # labelled training samples the head saw
    n_test: int  # evaluation samples
    n_classes: int
    labels_per_class: float  # n_train / n_classes: the x position of "all" and fraction rows
    params: Mapping[str, Any]  # chosen hyper-parameters (C, k, temperature, selection rule, caps, ...)
    split: str = field(metadata=_PROVENANCE)  # evaluation split ("test")
    store_fingerprint: str = field(metadata=_PROVENANCE)  # fingerprint of the embedding store the features came from
    sample_digest: str = field(
        metadata=_PROVENANCE
    )  # digest of the training sample ids: equal digests = identical draws
    seconds: float  # fit + predict wall time of this evaluation
    versions: Mapping[str, str] = field(default_factory=dict)  # probe, numpy, torch, faiss, sklearn ...
    run_id: str = ""  # one id per command invocation
    time: str = ""  # ISO-8601 UTC time the row was produced
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``)."""
        out = asdict(self)
        for key in ("value", "ci_low", "ci_high", "fraction"):
            v = out[key]
            if isinstance(v, float) and not math.isfinite(v):
                out[key] = None
        out["params"] = _jsonable(dict(self.params))
        out["versions"] = dict(self.versions)
        return out


#: Every row field, in schema order (the DataFrame columns of :func:`load_results`).
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow))
#: Fields every row has (the ``--json`` schema of the evaluating commands).
REQUIRED_FIELDS = frozenset(f.name for f in fields(ResultRow) if f.default is MISSING and f.default_factory is MISSING)
#: Fields that say what was evaluated (dataset, backbone, pooling, head, protocol, level, seed, metric).
IDENTITY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow) if f.metadata.get("key") == "identity")
#: Float-valued fields (NaN-able in a DataFrame).
NUMERIC_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow) if str(f.type).startswith("float"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def results_file(path: str | os.PathLike[str]) -> Path:
    """The JSON Lines file of a results location (a folder holds ``results.jsonl``)."""
    p = Path(path)
    return p if p.suffix == ".jsonl" else p / RESULTS_FILE


def append_results(rows: Iterable[ResultRow], path: str | os.PathLike[str] = DEFAULT_DIR) -> Path:
    """Append rows to the results table, creating it when missing.

    Args:
        rows: result rows.
        path: a results folder (``results/``) or a ``.jsonl`` file.

    Returns:
        The file written to.
    """
    target = results_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r.to_dict(), sort_keys=True, allow_nan=False) + "\n" for r in rows]
    with open(target, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # concurrent runs append whole lines, never interleaved
        try:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    return target


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All rows of a results folder or file, in the order written (every ``*.jsonl`` of a folder).

    Raises:
        ResultsError: nothing there, or a line that is not a result row.
    """
    p = Path(path)
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else ([p] if p.is_file() else [])
    rows: list[dict[str, Any]] = []
    for file in files:
        with open(file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    if n == _count_lines(file):  # a torn last line from a killed writer: skip it
                        continue
                    raise ResultsError(f"{file}:{n} is not JSON ({exc}); fix or remove that line") from exc
                if not isinstance(row, dict) or "metric" not in row:
                    raise ResultsError(f"{file}:{n} is not a probe result row")
                rows.append(row)
    if not rows:
        raise ResultsError(
            f"no result rows in {p}; run `probe curve`, `probe linear`, `probe knn` or `probe fewshot` first "
            "(they append to results/ by default), or pass the folder they wrote to"
        )
    return rows


def _count_lines(file: Path) -> int:
    with open(file, encoding="utf-8") as f:
        return sum(1 for _ in f)


def rows_to_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A pandas DataFrame with one column per row field (``shots`` keeps ints and ``"all"``)."""
    import pandas as pd

    frame = pd.DataFrame([dict(r) for r in rows])
    for col in NUMERIC_FIELDS:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    if "shots" in frame:
        frame["shots"] = frame["shots"].astype(object)
    return frame


#: Columns that identify one evaluated number; rows equal on all of them are reruns of each other.
KEY_COLUMNS: tuple[str, ...] = (*(f.name for f in fields(ResultRow) if f.metadata.get("key")), "params_key")


def latest_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop rows superseded by a later rerun of the same evaluation (same :data:`KEY_COLUMNS`)."""
    import pandas as pd

    frame = frame.copy()
    frame["params_key"] = [json.dumps(p, sort_keys=True, default=str) for p in frame.get("params", [{}] * len(frame))]
    cols = [c for c in KEY_COLUMNS if c in frame]
    keys = pd.Series(["|".join(map(str, values)) for values in zip(*(frame[c] for c in cols), strict=True)])
    return frame[~keys.duplicated(keep="last").to_numpy()].drop(columns="params_key").reset_index(drop=True)


def load_results(path: str | os.PathLike[str] = DEFAULT_DIR, *, latest: bool = True, **filters: Any) -> pd.DataFrame:
    """Load a results folder or file as a DataFrame, optionally filtered by column values.

    Args:
        path: results folder or ``.jsonl`` file.
        latest: keep only the last of rows that repeat the same evaluation (the file itself keeps
            every row ever written).
        **filters: column → value or list of values to keep, e.g. ``dataset="bloodmnist_28"``,
            ``head=["knn", "linear"]``.

    Returns:
        DataFrame with the :class:`ResultRow` columns.

    Raises:
        ResultsError: no rows, an unknown filter column, or filters that keep nothing.
    """
    frame = rows_to_frame(read_rows(path))
    if latest:
        frame = latest_rows(frame)
    for col, want in filters.items():
        if want is None:
            continue
        if col not in frame:
            raise ResultsError(f"unknown results column {col!r}; columns: {', '.join(frame.columns)}")
        values = list(want) if isinstance(want, (list, tuple, set)) else [want]
        wanted = {str(v) for v in values}
        keep = [str(v) in wanted for v in frame[col]]
        frame = frame[keep]
    if frame.empty:
        raise ResultsError(f"no rows in {path} match {filters}; run `probe results {path}` to see what is there")
    return frame.reset_index(drop=True)
