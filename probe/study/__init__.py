"""Studies as files: a TOML matrix of datasets × backbones × plan, run resumably into one folder."""

from probe.study.config import StudyBackbone, StudyConfig, StudyPlan, StudyReport, parse_study, read_study
from probe.study.run import Cell, StudyRun, describe_cells, plan_cells, run_study

__all__ = [
    "Cell",
    "StudyBackbone",
    "StudyConfig",
    "StudyPlan",
    "StudyReport",
    "StudyRun",
    "describe_cells",
    "parse_study",
    "plan_cells",
    "read_study",
    "run_study",
]
