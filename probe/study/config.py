"""A study file: datasets × backbones × a plan × report settings, in TOML, checked key by key.

Example (``probe run study.toml``)::

    name = "screen"                       # outputs go to <out>/<name>/ (default: the file's stem)
    datasets = ["medmnist:breastmnist", "medmnist:pneumoniamnist"]
    data_root = "../shared/data/medmnist"

    [[backbones]]
    name = "efficientnet_lite0"
    image_size = 64

    [plan]
    heads = ["knn", "linear", "prototype"]
    shots = [1, 4, 16, "all"]
    seeds = 5

    [report]
    metrics = ["balanced_accuracy", "macro_auroc"]

Unknown keys are errors that name the key, its section and the keys that section accepts.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from probe.backbones.request import BackboneRequest
from probe.errors import ConfigError
from probe.evaluate.config import KNNConfig, PlanConfig
from probe.evaluate.defaults import DEFAULT_METRICS, DEFAULT_SEEDS, DEFAULT_SHOTS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class StudyBackbone:
    """One backbone of a study (``[[backbones]]``)."""

    name: str  # registry alias, timm:<model>, hf:<repo> or open_clip:<arch>@<tag>
    image_size: int | None = None  # model input side (None: the backbone's own)
    pooling: str | None = None  # stored pooling to probe (None: the backbone's first)
    weights: str | None = None  # local weights file (air-gapped sites)
    pretrained: bool = True  # False: seeded random weights (smoke studies)
    resolution: str = "resize"  # "resize" or "pad"

    def request(self) -> BackboneRequest:
        return BackboneRequest(
            self.name,
            weights=self.weights,
            image_size=self.image_size,
            resolution=self.resolution,
            pretrained=self.pretrained,
        )


@dataclass(frozen=True)
class StudyPlan:
    """The evaluation plan of every cell (``[plan]``)."""

    heads: tuple[str, ...] = ("knn", "linear", "prototype")  # registered heads
    shots: tuple[int | str, ...] = DEFAULT_SHOTS  # labels per class; "all" = the whole train split
    fractions: tuple[float, ...] = ()  # stratified label fractions
    seeds: int = DEFAULT_SEEDS  # draws per level
    seed: int = 0  # first seed
    metrics: tuple[str, ...] = DEFAULT_METRICS  # scored metrics (qwk added for ordinal sets)
    bootstrap: int = 1000  # bootstrap resamples per row
    k: tuple[int, ...] = (20,)  # kNN neighbours
    device: str = "auto"  # extraction and heads

    def plan(self) -> PlanConfig:
        return PlanConfig(
            heads=self.heads,
            shots=self.shots,
            fractions=self.fractions,
            seeds=self.seeds,
            seed=self.seed,
            metrics=self.metrics,
            bootstrap=self.bootstrap,
            device=self.device,
            knn=KNNConfig(k=self.k),
        )


@dataclass(frozen=True)
class StudyReport:
    """What the study's report shows (``[report]``)."""

    metrics: tuple[str, ...] = ("balanced_accuracy",)  # one report section per metric, the first is the main one
    title: str = ""  # report title (default: "probe study: <name>")
    formats: tuple[str, ...] = ("png", "svg")  # figure formats


@dataclass(frozen=True)
class StudyConfig:
    """A whole study, as read from its file."""

    name: str  # the run folder's name
    datasets: tuple[str, ...]  # source specifications
    backbones: tuple[StudyBackbone, ...]
    plan: StudyPlan = field(default_factory=StudyPlan)
    report: StudyReport = field(default_factory=StudyReport)
    out: str = "runs"  # parent folder of <name>/
    store_root: str = "embeddings"  # where stores are looked up and written
    data_root: str | None = None  # folder holding dataset files (MedMNIST .npz)
    eval_split: str = "test"  # scored split

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _keys(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _check_keys(table: Mapping[str, Any], cls: type, where: str) -> None:
    unknown = sorted(set(table) - set(_keys(cls)))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; this section accepts {', '.join(_keys(cls))}")


def _tuples(table: Mapping[str, Any], cls: type, where: str) -> dict[str, Any]:
    """Lists become tuples where the field is a tuple; scalars where a tuple is expected are wrapped."""
    out: dict[str, Any] = {}
    tuple_fields = {f.name for f in fields(cls) if str(f.type).startswith("tuple")}
    for key, value in table.items():
        if key in tuple_fields:
            out[key] = tuple(value) if isinstance(value, list | tuple) else (value,)
        elif isinstance(value, list | dict):
            raise ConfigError(f"{where}: {key} = {value!r} must be a single value, not a {type(value).__name__}")
        else:
            out[key] = value
    return out


def _build(cls: type, table: Mapping[str, Any], where: str) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table of key = value lines")
    _check_keys(table, cls, where)
    try:
        return cls(**_tuples(table, cls, where))
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_study(data: Mapping[str, Any], *, default_name: str) -> StudyConfig:
    """A :class:`StudyConfig` from parsed TOML.

    Raises:
        ConfigError: an unknown key (named with its section and the keys it accepts), a missing
            ``datasets`` or ``backbones``, or a value of the wrong shape.
    """
    _check_keys(data, StudyConfig, "study file")
    top = {k: v for k, v in data.items() if k not in ("plan", "report", "backbones", "datasets")}
    datasets = data.get("datasets")
    if isinstance(datasets, str):
        datasets = [datasets]
    if not datasets or not all(isinstance(d, str) for d in datasets):
        raise ConfigError('study file: datasets = ["medmnist:breastmnist", ...] is required (a list of sources)')
    raw = data.get("backbones")
    if not raw or not isinstance(raw, list):
        raise ConfigError('study file: give at least one [[backbones]] table with name = "efficientnet_lite0"')
    backbones = tuple(_build(StudyBackbone, b, f"[[backbones]] #{i + 1}") for i, b in enumerate(raw))
    plan = _build(StudyPlan, data.get("plan", {}), "[plan]")
    report = _build(StudyReport, data.get("report", {}), "[report]")
    plan.plan()  # the plan's own checks (heads, shots, metrics) before anything runs
    return StudyConfig(
        name=str(top.pop("name", default_name)),
        datasets=tuple(datasets),
        backbones=backbones,
        plan=plan,
        report=report,
        **top,
    )


def read_study(path: str | Path) -> StudyConfig:
    """Read and check a study file (TOML).

    Raises:
        ConfigError: the file is missing, is not TOML, or fails :func:`parse_study`.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"study file {p} not found; write one (see `probe run --help`) or fix the path")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML ({exc})") from None
    return parse_study(data, default_name=p.stem)
