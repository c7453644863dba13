"""Library calls behind ``probe curve``, ``probe linear``, ``probe knn`` and ``probe fewshot``.

``run_probes`` reads an existing store only (never images, never a backbone). ``run_curve`` first
makes sure each backbone's store exists — extraction is a no-op for a complete store and resumes
an interrupted one — and then probes it: extract once, probe many.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from probe.backbones.request import BackboneRequest
from probe.evaluate.config import PlanConfig
from probe.evaluate.data import EvalData, find_store, load_eval_data
from probe.evaluate.examples import ExampleKeeper
from probe.evaluate.plan import run_plan
from probe.results import DEFAULT_DIR, ResultRow, append_results, check_results_location, results_location
from probe.sources import Source
from probe.sources.request import SourceRequest
from probe.store import DEFAULT_ROOT, EmbeddingStore, open_store
from probe.store_url import is_url

if TYPE_CHECKING:
    from probe.extraction import ExtractConfig


@dataclass(frozen=True)
class StoreChoice:
    """Which store to probe: an explicit path, or the one found for (data, backbone) under a root."""

    store: str | None = None  # explicit store path (wins over the lookup)
    store_root: str = DEFAULT_ROOT  # where stores are looked up / written
    image_size: int | None = None  # disambiguates stores of one backbone at several input sizes
    pooling: str | None = None  # which stored features (default: the store's first pooling)
    eval_split: str = "test"  # scored split


@dataclass(frozen=True)
class ProbeRun:
    """What a probing command did."""

    rows: list[ResultRow]
    stores: list[str]
    results_file: str | None  # the results file appended to (the folder for a URL; None with --no-save)
    run_id: str
    extractions: list[dict[str, Any]] = field(default_factory=list)  # probe extract --json objects


def _save(rows: list[ResultRow], results_dir: str | os.PathLike[str] | None) -> str | None:
    """Append the rows; the results file written (locally) or the results folder (at a URL)."""
    return None if results_dir is None else results_location(results_dir, append_results(rows, results_dir))


def _stamped(rows: list[ResultRow], command: str | None) -> list[ResultRow]:
    return rows if not command else [replace(r, command=command) for r in rows]


def _eval_data(store: EmbeddingStore, choice: StoreChoice, plan: PlanConfig) -> EvalData:
    return load_eval_data(store, pooling=choice.pooling, eval_split=choice.eval_split, fusion=plan.views.fusion)


def run_probes(
    source: str | SourceRequest,
    *,
    backbone: str | BackboneRequest,
    plan: PlanConfig,
    choice: StoreChoice = StoreChoice(),
    results_dir: str | os.PathLike[str] | None = DEFAULT_DIR,
    command: str | None = None,
    progress: bool = False,
) -> ProbeRun:
    """Probe the existing store of (``source``, ``backbone``) with ``plan`` and append the rows.

    Only the specification and the backbone name are used to find the store (``choice`` narrows it).

    Raises:
        StoreError: no such store (the message says how to extract it) or an incomplete one
            (says how to resume).
    """
    if results_dir is not None:
        check_results_location(results_dir)  # a bad results URL fails before any work
    store = (
        open_store(choice.store)
        if choice.store
        else find_store(
            SourceRequest.of(source).spec,
            backbone=BackboneRequest.of(backbone).name,
            root=choice.store_root,
            image_size=choice.image_size,
        )
    )
    run_id = uuid.uuid4().hex[:12]
    rows = _stamped(run_plan(_eval_data(store, choice, plan), plan, run_id=run_id, progress=progress), command)
    return ProbeRun(rows=rows, stores=[store.path], results_file=_save(rows, results_dir), run_id=run_id)


def run_curve(
    source: str | SourceRequest | Source,
    *,
    backbones: Sequence[str | BackboneRequest],
    plan: PlanConfig,
    choice: StoreChoice = StoreChoice(),
    results_dir: str | os.PathLike[str] | None = DEFAULT_DIR,
    extract_config: ExtractConfig | None = None,
    command: str | None = None,
    progress: bool = False,
    run_id: str | None = None,
) -> ProbeRun:
    """Extract (when needed) and probe ``source`` with every backbone, appending rows per backbone.

    Args:
        source: a specification, a :class:`~probe.sources.SourceRequest` with its data options, or an opened
            :class:`~probe.sources.Source` (opened once, checked, then extracted).
        backbones: names or :class:`~probe.backbones.BackboneRequest` s; each is extracted once into its
            fingerprinted store.
        plan: heads, shots, seeds, metrics.
        choice: store root, pooling and evaluation split (an explicit ``store`` is not allowed here).
        results_dir: results folder (None: do not save).
        extract_config: extraction options (device, batch size ...); its store root is ``choice.store_root``.
        command: the command line, recorded in the stores (resume hints) and in every row.
        progress: a progress bar over the probing draws on stderr.
        run_id: the invocation's id recorded in every row (default: a new one).
    """
    from probe.evaluate.preflight import check_source
    from probe.extraction import ExtractConfig, extract

    config = replace(extract_config or ExtractConfig(), store_root=choice.store_root)
    for backbone in backbones:  # names first: a typo fails before any data is read
        BackboneRequest.of(backbone).check()
    src = source if isinstance(source, Source) else SourceRequest.of(source).open()
    if src.task == "segmentation" and config.poolings is None:  # segmentation heads read patch grids
        config = replace(config, poolings=(choice.pooling or "patch",))
    check_source(src, plan, eval_split=choice.eval_split)  # before anything is embedded
    if results_dir is not None:
        check_results_location(results_dir)
    run_id = run_id or uuid.uuid4().hex[:12]
    rows: list[ResultRow] = []
    stores, extractions = [], []
    saved: str | None = None
    for backbone in backbones:
        result = extract(src, backbone=backbone, config=config, command=command)
        extractions.append(result.to_json())
        store = open_store(result.store)
        data = _eval_data(store, choice, plan)
        # example overlays are image files beside a local results folder (not kept for results on object storage)
        local = results_dir is not None and not is_url(str(results_dir))
        keeper = ExampleKeeper(data, seed=plan.seed) if data.task == "segmentation" and local else None
        new = _stamped(run_plan(data, plan, run_id=run_id, progress=progress, keep=keeper), command)
        if keeper is not None and results_dir is not None:
            keeper.save(results_dir, data, src, store.attrs.get("backbone", {}).get("preprocess", {}))
        saved = _save(new, results_dir) or saved  # per backbone: a later failure keeps earlier rows
        rows += new
        stores.append(store.path)
    return ProbeRun(rows=rows, stores=stores, results_file=saved, run_id=run_id, extractions=extractions)


def run_curves(
    sources: Sequence[str | SourceRequest],
    *,
    backbones: Sequence[str | BackboneRequest],
    plan: PlanConfig,
    choice: StoreChoice = StoreChoice(),
    results_dir: str | os.PathLike[str] | None = DEFAULT_DIR,
    extract_config: ExtractConfig | None = None,
    command: str | None = None,
    progress: bool = False,
) -> ProbeRun:
    """:func:`run_curve` for several data sources under one run id (every source checked before any is embedded)."""
    from probe.evaluate.preflight import check_source

    opened = [SourceRequest.of(source).open() for source in sources]  # each opened (and digested) once
    for src in opened:  # all checks first: a bad third dataset fails before the first is embedded
        check_source(src, plan, eval_split=choice.eval_split)
    run_id = uuid.uuid4().hex[:12]
    runs = [
        run_curve(
            src,
            backbones=backbones,
            plan=plan,
            choice=choice,
            results_dir=results_dir,
            extract_config=extract_config,
            command=command,
            progress=progress,
            run_id=run_id,
        )
        for src in opened
    ]
    return ProbeRun(
        rows=[r for run in runs for r in run.rows],
        stores=[s for run in runs for s in run.stores],
        results_file=next((run.results_file for run in reversed(runs) if run.results_file), None),
        run_id=run_id,
        extractions=[e for run in runs for e in run.extractions],
    )
