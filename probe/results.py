"""Result rows and the append-only results table (JSON Lines) that every report reads.

One row per (dataset, backbone, pooling, head_name, protocol, shots or fraction, seed, metric). Rows are
only ever appended: a file is locked, one line per row is written and flushed, and nothing is
rewritten, so a crash loses at most the rows of the evaluation in flight. A line torn by a killed
writer is moved to ``results.jsonl.torn`` by the next append (never deleted), so later rows are never
glued onto it. A results folder at an fsspec URL (``s3://bucket/results``) has no append and no lock:
each append is a new object ``results-<UTC time>-<random>.jsonl`` written in one PUT.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.errors import ResultsError
from probe.setups import label_setups
from probe.store_url import first_line, is_url

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_DIR = "results"
RESULTS_FILE = "results.jsonl"
TORN_SUFFIX = ".torn"  # side file keeping the torn tails of a results file
SCHEMA = "probe.results/3"  # 2: rows carry ``setup`` (schema 1 loads with an empty one); 3: ``head`` → ``head_name``
#: Fields renamed by a schema version: old name → new name (rows of older versions load under the new name).
RENAMED = {"head": "head_name"}  # schema 3: a ``head`` column clashed with ``DataFrame.head``


_IDENTITY = {"key": "identity"}  # what was evaluated: a curve point of one configuration, seed and metric
_PROVENANCE = {"key": "provenance"}  # on what exactly: rows equal on every key field are reruns of each other


class ResultsWarning(UserWarning):
    """A results file needed care: a torn tail was set aside, or bad lines were skipped."""


@dataclass(frozen=True)
class ResultRow:
    """One evaluated number with everything needed to reproduce and compare it."""

    dataset: str = field(metadata=_IDENTITY)  # source name, e.g. "bloodmnist_28"
    backbone: str = field(metadata=_IDENTITY)  # backbone name as registered (or timm:/hf: spec)
    pooling: str = field(metadata=_IDENTITY)  # which stored features, e.g. "gap", "cls"
    head_name: str = field(metadata=_IDENTITY)  # "knn-k20", "linear", "prototype", "finetune-<mode>" (was "head")
    protocol: str = field(metadata=_IDENTITY)  # "full", "shots", "fraction" or "episodes"
    shots: int | str | None = field(metadata=_IDENTITY)  # labels per class; "all": whole train split; None: fraction
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
    sample_digest: str = field(metadata=_PROVENANCE)  # digest of the drawn ids: equal digests = identical draws
    seconds: float  # fit + predict wall time of this evaluation
    versions: Mapping[str, str] = field(default_factory=dict)  # probe, numpy, torch, faiss, sklearn ...
    run_id: str = ""  # one id per command invocation
    command: str = ""  # the command line that produced the row ("" from Python calls without one)
    time: str = ""  # ISO-8601 UTC time the row was produced
    dataset_fingerprint: str = ""  # the source's content fingerprint: the dataset's identity ("" in older rows)
    dataset_spec: str = ""  # the source specification, e.g. "folder:/data/a/base" (names same-named datasets apart)
    # everything that makes this row's curve its own (see SETUP_FIELDS): store fingerprint, source resolution,
    # image size, resolution policy, weights, pooling, fusion, feature preprocessing, the head's settings
    # ({} in rows of schema 1: such rows are grouped and labelled as "no setup")
    setup: Mapping[str, Any] = field(default_factory=dict)
    flags: Sequence[str] = ()  # warnings about this row, e.g. "degenerate-features" (near-constant features)
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``)."""
        out = asdict(self)
        for key in ("value", "ci_low", "ci_high", "fraction"):
            v = out[key]
            if isinstance(v, float) and not math.isfinite(v):
                out[key] = None
        out["params"] = _jsonable(dict(self.params))
        out["setup"] = _jsonable(dict(self.setup))
        out["flags"] = list(self.flags)
        out["versions"] = dict(self.versions)
        return out


#: Every row field, in schema order (the DataFrame columns of :func:`load_results`).
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow))
#: Fields every row has (the ``--json`` schema of the evaluating commands).
REQUIRED_FIELDS = frozenset(f.name for f in fields(ResultRow) if f.default is MISSING and f.default_factory is MISSING)
#: Fields that say what was evaluated (dataset, backbone, pooling, head_name, protocol, level, seed, metric).
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


def append_results(rows: Iterable[ResultRow], path: str | os.PathLike[str] = DEFAULT_DIR) -> Path | str:
    """Append rows to the results table, creating it when missing.

    The rows go out as whole lines in one write, under an exclusive lock. A file that does not end
    with a newline (a writer was killed mid-line) first has its torn tail moved to
    ``<file>.torn`` (with a :class:`ResultsWarning`), so the new rows start on a line of their own.

    A folder at an fsspec URL (``s3://bucket/results``) has no append and no lock: each call writes
    its rows as a new object ``results-<UTC time>-<random>.jsonl`` in one PUT, which is whole or absent,
    so concurrent writers never interleave and a killed one leaves nothing torn. :func:`read_rows`
    reads every ``*.jsonl`` of the folder in name (time) order.

    Args:
        rows: result rows.
        path: a results folder (``results/``) or a ``.jsonl`` file; on object storage a folder URL.

    Returns:
        The file (or object URL) written to.

    Raises:
        ResultsError: a ``.jsonl`` object URL (objects cannot be appended to), or the object cannot be written.
    """
    data = "".join(json.dumps(r.to_dict(), sort_keys=True, allow_nan=False) + "\n" for r in rows).encode()
    if is_url(str(path)):
        return _put_results(str(path), data)
    target = results_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "ab+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # concurrent runs append whole lines, never interleaved
        try:
            _set_aside_torn_tail(f, target)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    return target


def check_results_location(path: str | os.PathLike[str]) -> None:
    """Refuse a results location that cannot take rows, before any work is done.

    Local folders are created when rows arrive. At a URL the folder's bucket must be reachable and the
    URL must name a folder (objects cannot be appended to).

    Raises:
        ResultsError: a ``.jsonl`` object URL, or a bucket that is missing, refuses the credentials or
            cannot be reached.
    """
    url = str(path)
    if not is_url(url):
        return
    _refuse_object_url(url)
    from probe.errors import StoreError
    from probe.store_url import check_url

    try:
        check_url(url, owner="the results folder (--results")
    except StoreError as exc:
        raise ResultsError(str(exc)) from None


def results_location(path: str | os.PathLike[str], written: Path | str) -> str:
    """What to name when rows went to ``path``: the file written locally, the folder at a URL (where every
    append is its own object, so the folder holds the run's rows)."""
    return str(path).rstrip("/") if is_url(str(path)) else str(written)


def _refuse_object_url(url: str) -> None:
    if url.endswith(".jsonl"):
        raise ResultsError(
            f"{url} is one object, and objects cannot be appended to; pass the folder URL "
            f"({url.rsplit('/', 1)[0]}/): each run then writes its own results-<time>.jsonl there"
        )


def _put_results(url: str, data: bytes) -> str:
    """Write ``data`` as a new object in the results folder at ``url`` (one PUT); its URL."""
    from probe.store_url import url_fs  # fsspec only when results live on object storage

    _refuse_object_url(url)
    if not data:
        return url  # no rows: nothing to write
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    try:
        fs, root = url_fs(url)
        name = f"{root.rstrip('/')}/results-{stamp}-{uuid.uuid4().hex[:8]}.jsonl"
        fs.pipe_file(name, data)
    except Exception as exc:  # botocore/aiohttp connection errors are not OSError; a missing fsspec protocol
        raise ResultsError(f"cannot write results to {url} ({first_line(exc)}); {_URL_FIX}") from None
    return f"{url.split('://', 1)[0]}://{name}"


#: What to check when a results folder URL cannot be reached.
_URL_FIX = "check the bucket exists and AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"


def _file_order(name: str) -> tuple[bool, str]:
    """Read order of a folder's files: other ``*.jsonl`` (e.g. a synced ``results.jsonl``) first, then the
    time-stamped ``results-<UTC time>-…`` objects by time, so a later run's rows come later."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith("results-"), base


def _set_aside_torn_tail(f: Any, target: Path) -> None:
    """Move an unterminated last line of the open (locked) file ``f`` to ``<target>.torn``."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return
    f.seek(size - 1)
    if f.read(1) == b"\n":
        return
    block = 1 << 16
    end = size
    while end > 0:  # find the last newline, reading backwards
        start = max(0, end - block)
        f.seek(start)
        cut = f.read(end - start).rfind(b"\n")
        if cut >= 0:
            start += cut + 1
            break
        end = start
    else:
        start = 0
    f.seek(start)
    tail = f.read()
    if _parse_row(tail.decode("utf-8", errors="replace"))[0] is None:  # a whole row that lacks only its newline
        f.write(b"\n")
        return
    torn = target.with_name(target.name + TORN_SUFFIX)
    with open(torn, "ab") as side:
        side.write(tail + b"\n")
        side.flush()
        os.fsync(side.fileno())
    f.truncate(start)
    warnings.warn(
        f"{target} ended with a torn line (a writer was killed mid-write); its {len(tail)} bytes were moved to "
        f"{torn} and the new rows start on a fresh line",
        ResultsWarning,
        stacklevel=3,
    )


def read_rows(path: str | os.PathLike[str], *, skip_bad_lines: bool = False) -> list[dict[str, Any]]:
    """All rows of a results folder or file, in the order written (every ``*.jsonl`` of a folder).

    An unterminated last line (a writer killed mid-line) is ignored. Any other line that is not a
    result row is an error naming the file and line, unless ``skip_bad_lines``.

    Args:
        path: a results folder or ``.jsonl`` file.
        skip_bad_lines: skip unreadable lines (with a :class:`ResultsWarning` naming them) instead of
            raising.

    Raises:
        ResultsError: nothing there, an unreadable file, or a line that is not a result row.
    """
    rows: list[dict[str, Any]] = []
    if is_url(str(path)):
        for name, text in _url_texts(str(path)):
            rows += _parse_text(text, name, skip_bad_lines=skip_bad_lines)
    else:
        p = Path(path)
        found = sorted(p.glob("*.jsonl"), key=lambda f: _file_order(f.name)) if p.is_dir() else [p]
        files = [f for f in found if f.is_file()]
        for file in files:
            rows += _read_file(file, skip_bad_lines=skip_bad_lines)
    if not rows:
        raise ResultsError(
            f"no result rows in {path}; run `probe curve`, `probe linear`, `probe knn` or `probe fewshot` first "
            "(they append to results/ by default), or pass the folder they wrote to"
        )
    return rows


def _url_texts(url: str) -> list[tuple[str, str]]:
    """(URL, text) of the results object at ``url``, or of every ``*.jsonl`` in the folder there, by name."""
    from probe.store_url import url_fs

    scheme = url.split("://", 1)[0]
    try:
        fs, root = url_fs(url)
        fs.invalidate_cache(root)  # listings are cached per filesystem: see objects other machines wrote since
        one = root.endswith(".jsonl") and fs.isfile(root)
        names = [root] if one else sorted(fs.glob(f"{root.rstrip('/')}/*.jsonl"), key=_file_order)
        return [(f"{scheme}://{n}", fs.cat_file(n).decode("utf-8", errors="replace")) for n in names]
    except Exception as exc:  # as in _put_results: connection errors are not OSError
        raise ResultsError(f"cannot read results at {url} ({first_line(exc)}); {_URL_FIX}") from None


def _read_file(file: Path, *, skip_bad_lines: bool) -> list[dict[str, Any]]:
    try:
        text = file.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ResultsError(f"cannot read {file} ({exc.strerror or exc}); check the path and its permissions") from None
    return _parse_text(text, str(file), skip_bad_lines=skip_bad_lines)


def _parse_text(text: str, file: str, *, skip_bad_lines: bool) -> list[dict[str, Any]]:
    """The rows of one results file's text (``file`` names it in errors and warnings)."""
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with a newline; else a line a killed writer left unfinished
    rows: list[dict[str, Any]] = []
    bad: list[int] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        problem, row = _parse_row(line)
        if problem is None:
            rows.append(row)
            continue
        if not skip_bad_lines:
            raise ResultsError(
                f"{file}:{n} {problem}; load_results(skip_bad_lines=True) reads the other rows, "
                "or fix or remove that line"
            )
        bad.append(n)
    if torn.strip() and _parse_row(torn)[0] is None:  # complete JSON, only the newline is missing
        rows.append(_parse_row(torn)[1])
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        warnings.warn(f"{file}: skipped {len(bad)} unreadable line(s): {shown}", ResultsWarning, stacklevel=3)
    return rows


def _parse_row(line: str) -> tuple[str | None, dict[str, Any]]:
    """(None, row) for a result row, else (what is wrong, {})."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"is not JSON ({exc})", {}
    if not isinstance(row, dict) or "metric" not in row:
        return "is not a probe result row", {}
    return None, upgrade_row(row)


def upgrade_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of any schema version with today's field names (see :data:`RENAMED`); edits ``row`` in place."""
    for old, new in RENAMED.items():
        if old in row and new not in row:
            row[new] = row.pop(old)
    return row


def rows_to_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A pandas DataFrame with one column per row field (``shots`` keeps ints and ``"all"``)."""
    import pandas as pd

    frame = pd.DataFrame([upgrade_row(dict(r)) for r in rows])
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
    params = frame.get("params", [{}] * len(frame))
    setups = frame.get("setup", [{}] * len(frame))
    frame["params_key"] = [
        json.dumps([p, s if isinstance(s, Mapping) else {}], sort_keys=True, default=str)
        for p, s in zip(params, setups, strict=True)
    ]
    cols = [c for c in KEY_COLUMNS if c in frame]
    keys = pd.Series(["|".join(map(str, values)) for values in zip(*(frame[c] for c in cols), strict=True)])
    return frame[~keys.duplicated(keep="last").to_numpy()].drop(columns="params_key").reset_index(drop=True)


def dataset_identities(frame: pd.DataFrame) -> pd.Series:
    """The identity of each row's dataset: its ``dataset_fingerprint``.

    Rows written before that field existed carry none; they take the fingerprint of newer rows of the
    same name when only one fingerprint goes by that name (or of newer rows from the same store),
    and otherwise keep an identity of their own.
    """
    import pandas as pd

    names = frame["dataset"].astype(str)
    fps = frame.get("dataset_fingerprint", pd.Series([""] * len(frame), index=frame.index)).fillna("").astype(str)
    stores = frame.get("store_fingerprint", pd.Series([""] * len(frame), index=frame.index)).fillna("").astype(str)
    known = fps != ""
    by_store = dict(zip(stores[known], fps[known], strict=True))
    single = {n: f.iloc[0] for n, f in fps[known].groupby(names[known]) if f.nunique() == 1}
    inherited = [by_store.get(st) or single.get(n, "") for n, st in zip(names, stores, strict=True)]
    return fps.where(known, pd.Series(inherited, index=frame.index))


def unique_dataset_names(frame: pd.DataFrame) -> pd.Series:
    """Display names: a row's ``dataset``, made unique when different datasets (identities) share it.

    Same-named datasets get the trailing folders of their source paths until the names differ
    (``folder:/a/base`` and ``folder:/b/base`` become ``a/base`` and ``b/base``; two manifests of one
    folder become ``<folder>/<manifest.csv>``), then the spec options, then a fingerprint prefix.
    """
    names = frame["dataset"].astype(str)
    ids = dataset_identities(frame)
    specs = frame["dataset_spec"].fillna("").astype(str) if "dataset_spec" in frame else names.map(lambda _: "")
    out = names.copy()
    for name, rows in frame.groupby(names, sort=False).groups.items():
        idents = list(dict.fromkeys(ids[rows]))
        if len(idents) < 2:
            continue
        spec_of = {i: next((sp for sp in specs[rows][ids[rows] == i] if sp), "") for i in idents}
        labels = _distinct_labels(str(name), spec_of)
        out[rows] = [labels[i] for i in ids[rows]]
    return out


def _distinct_labels(name: str, spec_of: Mapping[str, str]) -> dict[str, str]:
    """One distinct label per identity of the datasets called ``name`` (see :func:`unique_dataset_names`)."""
    paths = {i: Path(sp.partition(":")[2].partition("?")[0]).parts for i, sp in spec_of.items()}
    depth = max((len(p) for p in paths.values()), default=0)
    candidates = [{i: "/".join(p[-d:]) if p else name for i, p in paths.items()} for d in range(2, depth + 1)]
    candidates.append({i: (sp.partition(":")[2] or name) for i, sp in spec_of.items()})
    # the shortest labels with the fewest clashes; a clash left (same path, other content) gets a fingerprint
    last = min(candidates, key=lambda labels: len(labels) - len(set(labels.values())))
    seen = list(last.values())
    tag = {i: f"@{i[:8]}" if i else " (no fingerprint)" for i in last}
    return {i: last[i] + tag[i] if seen.count(last[i]) > 1 else last[i] for i in last}


#: Display columns of :func:`load_results` → the column keeping the rows' own names.
_OWN_NAMES = {"dataset": "dataset_name", "backbone": "backbone_name", "head_name": "head_base"}


def load_results(
    path: str | os.PathLike[str] = DEFAULT_DIR, *, latest: bool = True, skip_bad_lines: bool = False, **filters: Any
) -> pd.DataFrame:
    """Load a results folder or file as a DataFrame, optionally filtered by column values.

    Args:
        path: results folder or ``.jsonl`` file.
        latest: keep only the last of rows that repeat the same evaluation (the file itself keeps
            every row ever written).
        skip_bad_lines: skip lines that are not result rows (with a warning naming them) instead of
            raising :class:`~probe.errors.ResultsError`.
        **filters: column → value or list of values to keep, e.g. ``dataset="bloodmnist_28"``,
            ``head_name=["knn", "linear"]``.

    Returns:
        DataFrame with the :class:`ResultRow` columns; ``dataset`` is the display name (unique per
        dataset identity, see :func:`unique_dataset_names`) and ``dataset_name`` the name in the rows;
        ``backbone`` and ``head_name`` name their setup where a name holds several
        (:func:`probe.setups.label_setups`; ``backbone_name``, ``head_base``, ``setup_id`` beside them).
        A filter on ``dataset``, ``backbone`` or ``head_name`` also matches the rows' own names. Rows of
        older schema versions load under today's column names (``head`` reads as ``head_name``).

    Raises:
        ResultsError: no rows, an unknown filter column, or filters that keep nothing.
    """
    frame = rows_to_frame(read_rows(path, skip_bad_lines=skip_bad_lines))
    if latest:
        frame = latest_rows(frame)
    frame["dataset_name"] = frame["dataset"]
    frame["dataset"] = unique_dataset_names(frame)
    frame = label_setups(frame)
    for col, want in filters.items():
        if want is None:
            continue
        if col not in frame:
            renamed = f" (renamed {RENAMED[col]!r} in results schema 3)" if col in RENAMED else ""
            raise ResultsError(f"unknown results column {col!r}{renamed}; columns: {', '.join(frame.columns)}")
        values = list(want) if isinstance(want, (list, tuple, set)) else [want]
        wanted = {str(v) for v in values}
        keep = [str(v) in wanted for v in frame[col]]
        if col in _OWN_NAMES:  # a row's own name selects it under a longer display name
            own = frame[_OWN_NAMES[col]]
            keep = [
                k or str(v) in wanted or (str(v).startswith("knn-") and "knn" in wanted)
                for k, v in zip(keep, own, strict=True)
            ]
        frame = frame[keep]
    if frame.empty:
        raise ResultsError(f"no rows in {path} match {filters}; run `probe results {path}` to see what is there")
    return frame.reset_index(drop=True)
