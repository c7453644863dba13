"""Several writers on one store: torchrun ranks (a process group) and job-array shards (none).

Ownership is by chunk index: writer ``i`` of ``n`` owns the chunks ``c`` with ``c % n == i``. Chunks
hold whole batches and each chunk is its own set of objects (one file per array chunk, the ``done``
flag included), so two writers never write the same object, and a resumed run recomputes only the
unfinished chunks of whoever owns them, with the same batches an uninterrupted run would use.

Group-level writes are kept to two moments: the store is created once (rank 0; the first shard under
the store lock on a file system, shard 0 on object storage) and marked complete once every ``done``
flag is set (rank 0 after the final barrier; whichever shard sees no unfinished chunk after its own,
or a plain rerun). Marking complete is idempotent, so two shards finishing at the same moment
write the same attributes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

from probe.errors import ConfigError, ProbeError

T = TypeVar("T")
TeamKind = Literal["solo", "shard", "ranks"]
#: torchrun's environment variables (set for every rank it starts).
RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Team:
    """This process's place among the writers of one store."""

    index: int = 0  # this writer's number, 0 <= index < count
    count: int = 1  # writers sharing the store
    kind: TeamKind = "solo"  # "solo" (one process), "shard" (--shard i/n), "ranks" (torchrun)
    local_rank: int = 0  # torchrun's LOCAL_RANK: the device index on this node

    def owns(self, chunk: int) -> bool:
        """Whether this writer computes ``chunk`` (``chunk % count == index``)."""
        return chunk % self.count == self.index

    def owned(self, chunks: list[int]) -> list[int]:
        """The chunks of ``chunks`` this writer computes, in order."""
        return [c for c in chunks if self.owns(c)]

    @property
    def label(self) -> str:
        """``"i/n"`` for shards and ranks, ``""`` for one process."""
        return "" if self.kind == "solo" else f"{self.index}/{self.count}"


def parse_shard(text: str, *, owner: str = "ExtractConfig") -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)``.

    Raises:
        ConfigError: not two whole numbers with ``0 <= i < n``.
    """
    head, slash, tail = str(text).strip().partition("/")
    if slash and head.isdigit() and tail.isdigit() and int(head) < int(tail):
        return int(head), int(tail)
    raise ConfigError(f"{owner}(shard={text!r}) is invalid; use i/n with 0 <= i < n, e.g. 0/4")


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    if not value.strip().isdigit():
        raise ConfigError(f"environment variable {name}={value!r} is not a whole number; start ranks with torchrun")
    return int(value)


def find_team(shard: str | None) -> Team:
    """The writer team of this process: torchrun's ranks when ``WORLD_SIZE`` > 1, else ``shard``, else one.

    Raises:
        ConfigError: a malformed shard, or a shard given to a torchrun rank.
    """
    world = _env_int("WORLD_SIZE") if "WORLD_SIZE" in os.environ else 1
    if world > 1:
        if shard is not None:
            raise ConfigError(
                f"ExtractConfig(shard={shard!r}) cannot be combined with {world} torchrun ranks; the ranks already "
                "share the chunks: drop the shard or run one process per shard"
            )
        rank, local = _env_int("RANK"), _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0
        return Team(index=rank, count=world, kind="ranks", local_rank=local)
    if shard is None:
        return Team()
    index, count = parse_shard(shard)
    return Team(index=index, count=count, kind="shard")


def rank_device(device: str, team: Team) -> str:
    """The device of a torchrun rank: ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` when CUDA is present."""
    if team.kind != "ranks" or device.strip().lower() not in ("auto", "cuda"):
        return device
    import torch

    return f"cuda:{team.local_rank}" if torch.cuda.is_available() else device


class RankError(ProbeError):
    """Another rank failed; its message is repeated on every rank so no rank waits forever."""


class RankGroup:
    """The torchrun process group of one extraction: barriers that carry each rank's error."""

    def __init__(self, team: Team) -> None:
        self.team = team

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order (a barrier)."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.team.count
        dist.all_gather_object(out, value)
        return out

    def step(self, fn: Callable[[], T], *, ranks: tuple[int, ...] | None = None) -> T | None:
        """Run ``fn`` on ``ranks`` (all: None), then wait for every rank; any rank's error is raised on all.

        Raises:
            ProbeError: this rank's own error (re-raised), or :class:`RankError` naming another rank's.
        """
        result: T | None = None
        error: BaseException | None = None
        if ranks is None or self.team.index in ranks:
            try:
                result = fn()
            except BaseException as exc:  # every rank must reach the barrier below
                error = exc
        errors = self.gather(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        for rank, message in enumerate(errors):
            if message is not None:
                raise RankError(f"rank {rank} of {self.team.count} failed ({message}); fix it and rerun every rank")
        return result

    def agree(self, value: str, *, what: str, fix: str) -> None:
        """Raise on every rank unless all ranks hold the same ``value``."""
        values = self.gather(value)
        for rank, other in enumerate(values):
            if other != values[0]:
                raise RankError(
                    f"torchrun ranks disagree on the {what}: rank 0 has {values[0][:16]}, rank {rank} has "
                    f"{other[:16]}; {fix}"
                )


@contextmanager
def rank_group(team: Team, *, device_type: str, timeout_s: float = 1800.0) -> Iterator[RankGroup]:
    """Join torchrun's process group (``nccl`` on CUDA, ``gloo`` on CPU) for the duration of a run.

    A group already initialised by the caller is used as it is and left open.
    """
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            import torch

            torch.cuda.set_device(team.local_rank)  # all_gather_object stages through the current device
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    try:
        yield RankGroup(team)
    finally:
        if owned:
            dist.destroy_process_group()
