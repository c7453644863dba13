"""Error hierarchy: every user mistake raises a :class:`ProbeError` subclass.

Each message names the bad value and says how to fix it; the CLI prints it as one line and exits
with code 1, without a traceback.
"""

from __future__ import annotations


class ProbeError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(ProbeError, ValueError):
    """An option or argument has an invalid value (batch size, pooling, device, ...)."""


class SourceError(ProbeError):
    """A data source cannot be parsed, found, verified or decoded."""


class UnknownSourceError(SourceError, KeyError):
    """The source specification names a prefix that no source is registered under."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0]) if self.args else ""


class DataFileError(SourceError, FileNotFoundError):
    """A data file is missing, or its checksum does not match the official one."""


class ImageDecodeError(SourceError):
    """One sample's image is missing, corrupt or of an unsupported kind."""


class BackboneError(ProbeError):
    """A backbone cannot be resolved, built or loaded."""


class UnknownBackboneError(BackboneError, KeyError):
    """The backbone name is not registered (the message suggests close names)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WeightsError(BackboneError):
    """Pretrained weights cannot be downloaded or do not fit the architecture."""


class StoreError(ProbeError):
    """An embedding store is missing, incomplete, locked, stale or unwritable."""


class StoreLockedError(StoreError):
    """Another process is writing to the same store."""


class DeviceError(ConfigError):
    """The requested device (for example CUDA) is not available."""


class RegistryError(ProbeError):
    """A registry key is registered twice."""


class HeadError(ConfigError):
    """A head got an invalid parameter or input (k larger than the training set, NaN features, ...)."""


class NotFittedError(HeadError):
    """``predict`` or ``predict_proba`` was called before ``fit``."""


class UnknownHeadError(HeadError, KeyError):
    """The head name is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MetricError(ConfigError):
    """A metric name is unknown, or the labels cannot support it (one class only, ...)."""


class ProtocolError(ConfigError):
    """An evaluation plan cannot be run as asked (a split with one class, more shots than examples, ...)."""


class ResultsError(ProbeError):
    """A results table is missing, empty or unreadable."""
