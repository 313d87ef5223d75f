"""What a sampler decides for one step: which groups, in which languages, with which hard negatives.

A `PlannedBatch` is the GLOBAL batch of a step. Every process computes the same plan from the same seed,
so the batch type and the languages agree across processes by construction; `shard` hands each process
its contiguous slice. The plan holds indices and language tags only, never text: the trainer looks the
texts up in the group list, and `batches.jsonl` makes the realized mix observable.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hybridbatch.io import atomic_write

if TYPE_CHECKING:
    from hybridbatch.data.parallel import ParallelGroup

BATCH_TYPES = ("mono", "cross", "mixed-same", "en-en")


@dataclass(frozen=True)
class PlannedBatch:
    """One global batch; example i is (group `groups[i]`, query in `query_langs[i]`, passage in `doc_langs[i]`).

    `step` is the index of the batch within its epoch (so `sampler.batch_at(b.epoch, b.step) == b`) and
    `global_step` its index since the start of training. `negatives[i]` are indices into
    `group.negatives[doc_langs[i]]` (possibly empty).
    """

    step: int
    epoch: int
    type: str
    groups: tuple[int, ...]
    query_langs: tuple[str, ...]
    doc_langs: tuple[str, ...]
    negatives: tuple[tuple[int, ...], ...]
    global_step: int

    def __len__(self) -> int:
        return len(self.groups)

    def to_log(self, groups: Sequence[ParallelGroup]) -> dict[str, Any]:
        """The `batches.jsonl` line: step (global), type, languages and group ids, one entry per example; with hard
        negatives also their indices into each example's `group.negatives[doc_lang]`."""
        line = {
            "step": self.global_step,
            "type": self.type,
            "query_langs": list(self.query_langs),
            "doc_langs": list(self.doc_langs),
            "groups": [str(groups[i].id) for i in self.groups],
            "epoch": self.epoch,
            "epoch_step": self.step,
        }
        if any(self.negatives):
            line["negatives"] = [list(n) for n in self.negatives]
        return line


def shard(batch: PlannedBatch, rank: int, world_size: int) -> PlannedBatch:
    """The contiguous slice of `batch` that process `rank` of `world_size` encodes."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    if len(batch) % world_size:
        raise ValueError(f"batch size {len(batch)} is not divisible by world size {world_size}; "
                         "choose a global batch size that is a multiple of the number of processes")
    per = len(batch) // world_size
    part = slice(rank * per, (rank + 1) * per)
    return PlannedBatch(batch.step, batch.epoch, batch.type, batch.groups[part], batch.query_langs[part],
                        batch.doc_langs[part], batch.negatives[part], batch.global_step)


class PlanSource(Protocol):
    """What `write_batch_log` needs of a sampler (`samplers.BatchSampler` is one; this module does not import
    it: samplers import plans, not the other way round)."""

    def iter_batches(self, start_epoch: int = 0, start_step: int = 0,
                     total_steps: int | None = None) -> Iterator[PlannedBatch]: ...


def write_batch_log(path: str | Path, sampler: PlanSource, groups: Sequence[ParallelGroup],
                    total_steps: int,
                    line: Callable[[PlannedBatch, Sequence[ParallelGroup]], dict[str, Any]] | None = None
                    ) -> dict[str, Any]:
    """Write the first `total_steps` batches of `sampler` to `path` (JSONL), atomically.

    This is what a dry run writes, so a batch composition can be checked before any model is loaded.
    `line` makes a batch's JSON object (default `PlannedBatch.to_log`; image-text runs log both captions'
    languages). Returns `mix_summary` of the written batches, for the caller to log.
    """
    to_line = line or (lambda batch, groups: batch.to_log(groups))
    if total_steps < 0:
        raise ValueError(f"total_steps must be >= 0, got {total_steps}")
    with atomic_write(path) as handle:

        def written() -> Iterator[PlannedBatch]:
            for batch in sampler.iter_batches(total_steps=total_steps):
                handle.write(json.dumps(to_line(batch, groups), ensure_ascii=False) + "\n")
                yield batch

        return mix_summary(written())


def mix_summary(batches: Iterable[PlannedBatch]) -> dict[str, Any]:
    """Realized mix: batches per type, examples per query language, per passage language and per pair."""
    types: Counter[str] = Counter()
    query: Counter[str] = Counter()
    doc: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    n = 0
    for batch in batches:
        n += 1
        types[batch.type] += 1
        query.update(batch.query_langs)
        doc.update(batch.doc_langs)
        pairs.update(f"{q}-{d}" for q, d in zip(batch.query_langs, batch.doc_langs, strict=True))
    return {"batches": n, "types": dict(sorted(types.items())), "query_langs": dict(sorted(query.items())),
            "doc_langs": dict(sorted(doc.items())), "pairs": dict(sorted(pairs.items()))}
