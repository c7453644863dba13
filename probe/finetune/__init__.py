"""Fine-tuning for comparison: full, LoRA, BitFit and LP-FT on the probes' own draws, writing the same rows."""

from probe.finetune.config import MODES, AugmentConfig, FinetuneConfig, LoraSettings
from probe.finetune.run import FinetunePlan, FinetuneRun, parse_targets, run_finetune

__all__ = [
    "MODES",
    "AugmentConfig",
    "FinetuneConfig",
    "FinetunePlan",
    "FinetuneRun",
    "LoraSettings",
    "parse_targets",
    "run_finetune",
]
