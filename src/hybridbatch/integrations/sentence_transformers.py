"""hybridbatch's batch plans in sentence-transformers' `SentenceTransformerTrainer` (6.2).

    plan = HybridBatches(groups, ["en", "de", "zh"], "hybrid", batch_size=64, max_steps=1000)
    args = SentenceTransformerTrainingArguments("out", max_steps=1000, batch_sampler=plan.batch_sampler,
                                                per_device_train_batch_size=64 // n_processes)
    trainer = SentenceTransformerTrainer(model, args, train_dataset=plan.dataset, loss=loss)

Why a dataset of plan slots. The trainer only takes a `datasets.Dataset`, tokenizes every column of a row
that is not a label, and reads the columns by position (anchor, positive, negatives). One row per (group,
query language, passage language) would hold |groups| x |languages|^2 rows and still not carry the hard
negatives a batch draws. So row `s` of `plan.dataset` is *slot* s of the planned run: example `s % B` of
global batch `s // B` (B the global batch size), i.e. of `make_sampler(...).batch_at(epoch, step)` for that
step. The Arrow table holds slot numbers only; a `with_transform` turns them into texts when rows are read
(as sentence-transformers' own `util.resolve_ids` does). Rows hold `anchor`, `positive`, `negative_1..k` and
nothing else: languages never reach the tokenizer, and a row is a pure function of (plan, slot) in every
process and dataloader worker.

Dealing to processes. The batch sampler yields, per step of the current epoch, the planned batch's slots.
Under N processes accelerate wraps it in `BatchSamplerShard` (`split_batches=False`, the default), which
gives sampler batch k to process k % N; so each planned global batch is yielded as N consecutive shards in
`hybridbatch.batching.shard` order, and process r gets shard r of the same planned batch: every process
sees the same batch type and languages at every step. With `MultipleNegativesRankingLoss(model,
gather_across_devices=True)` the gathered candidates are exactly the planned global batch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import Sampler, SequentialSampler

from hybridbatch.batching.plan import PlannedBatch, write_batch_log
from hybridbatch.batching.samplers import BatchSampler, make_sampler
from hybridbatch.data.languages import normalize_lang
from hybridbatch.data.parallel import ParallelGroup, language_sizes, load_groups_jsonl, restrict_languages

__all__ = ["PlannedBatchSampler", "HybridBatches", "PlanRows", "groups_from_columns", "to_groups"]

_FILL_STREAM = 0x66696C6C  # "fill": padding negatives do not share a random stream with the plan
_FIELDS = {"query": "queries", "positive": "positives", "negative": "negatives", "negatives": "negatives"}
_COLUMN = re.compile(r"^(query|positive|negatives?)_(.+)$")
_CACHED_BATCHES = 8
TrainingInput = Sequence[ParallelGroup] | str | Path | datasets.Dataset


# --------------------------------------------------------------------------------------------- input
def groups_from_columns(dataset: datasets.Dataset) -> list[ParallelGroup]:
    """Groups from a dataset with per-language columns: `query_<lang>`, `positive_<lang>`, optionally
    `negatives_<lang>` (a list of texts; `negative_<lang>`: one text) and `id` (else the row number).

    An empty or None cell means the group lacks that language (`restrict_languages` then drops the group).
    Any other column is an error, as in the JSONL form, so that a typo is not silently ignored.
    """
    spec: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for name in dataset.column_names:
        if name == "id":
            continue
        match = _COLUMN.match(name)
        if not match:
            raise ValueError(f"unexpected column {name!r}: expected id, query_<lang>, positive_<lang> "
                             "or negatives_<lang>")
        try:
            lang = normalize_lang(match.group(2))
        except ValueError as exc:
            raise ValueError(f"column {name!r}: {exc}") from exc
        field = _FIELDS[match.group(1)]
        if (field, lang) in seen:
            raise ValueError(f"column {name!r}: {field} in {lang!r} given twice")
        seen.add((field, lang))
        spec.append((name, field, lang))
    groups = []
    for index, row in enumerate(dataset):
        parts: dict[str, dict[str, Any]] = {"queries": {}, "positives": {}, "negatives": {}}
        for name, field, lang in spec:
            value = row[name]
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if field == "negatives":
                texts = tuple(t for t in ([value] if isinstance(value, str) else value) if t and t.strip())
                if texts:
                    parts[field][lang] = texts
            elif isinstance(value, str):
                parts[field][lang] = value
            else:
                raise ValueError(f"row {index}, column {name!r}: expected a text, got {type(value).__name__}")
        gid = str(row["id"]) if "id" in row else str(index)
        groups.append(ParallelGroup(gid, parts["queries"], parts["positives"], parts["negatives"]))
    return groups


def to_groups(data: TrainingInput) -> list[ParallelGroup]:
    """Training groups from a list of `ParallelGroup`, a parallel JSONL path, or a per-language dataset."""
    if isinstance(data, (str, Path)):
        return load_groups_jsonl(data)
    if isinstance(data, datasets.Dataset):
        return groups_from_columns(data)
    groups = list(data)
    for group in groups:
        if not isinstance(group, ParallelGroup):
            raise TypeError(f"expected ParallelGroup items, got {type(group).__name__}")
    return groups


# --------------------------------------------------------------------------------------------- rows
class PlanRows:
    """The dataset transform: slot numbers -> (anchor, positive, negative_1..k) texts of the plan.

    Every row gets exactly k negative columns (the trainer needs the same columns in every row): the plan's
    hard negatives first, then, where a group has fewer than k in the passage language, positives of groups
    *outside* the batch in that language (random negatives: no group's own positive comes back as a negative
    in its batch), drawn from a stream seeded by (seed, epoch, step). Resolved batches are cached.
    """

    def __init__(self, plan: BatchSampler, negatives: int):
        short = any(len(g.negatives.get(x, ())) < negatives for g in plan.groups for x in plan.languages)
        if short and len(plan.groups) - plan.batch_size < negatives:
            raise ValueError(f"some groups have fewer than {negatives} hard negatives and too few groups lie "
                             "outside a batch to pad them; lower hard_negatives or batch_size")
        self.plan = plan
        self.negatives = negatives
        self.columns = ["anchor", "positive", *(f"negative_{j}" for j in range(1, negatives + 1))]
        self._cache: dict[tuple[int, int], list[tuple[str, ...]]] = {}

    def __call__(self, batch: Mapping[str, Sequence[int]]) -> dict[str, list[str]]:
        rows = [self.row(int(slot)) for slot in batch["slot"]]
        return {name: [row[c] for row in rows] for c, name in enumerate(self.columns)}

    def row(self, slot: int) -> tuple[str, ...]:
        global_step, i = divmod(slot, self.plan.batch_size)
        epoch, step = self.plan.position(global_step)
        key = (epoch, step)
        if key not in self._cache:
            if len(self._cache) >= _CACHED_BATCHES:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self.resolve(self.plan.batch_at(epoch, step))
        return self._cache[key][i]

    def resolve(self, batch: PlannedBatch) -> list[tuple[str, ...]]:
        groups = self.plan.groups
        fillers = self._fillers(batch)
        rows = []
        for gi, q_lang, d_lang, neg, fill in zip(batch.groups, batch.query_langs, batch.doc_langs,
                                                 batch.negatives, fillers, strict=True):
            group = groups[gi]
            pool = group.negatives.get(d_lang, ())
            negatives = [pool[k] for k in neg] + [groups[f].positives[d_lang] for f in fill]
            rows.append((group.queries[q_lang], group.positives[d_lang], *negatives))
        return rows

    def _fillers(self, batch: PlannedBatch) -> list[list[int]]:
        missing = [self.negatives - len(neg) for neg in batch.negatives]
        if not any(missing):
            return [[] for _ in missing]
        order = self.plan.epoch_order(batch.epoch)
        start = batch.step * self.plan.batch_size
        outside = np.concatenate([order[:start], order[start + self.plan.batch_size:]])
        rng = np.random.default_rng([self.plan.seed, batch.epoch, batch.step, _FILL_STREAM])
        return [[int(outside[j]) for j in rng.choice(len(outside), size=m, replace=False)] if m else []
                for m in missing]


# --------------------------------------------------------------------------------------------- sampler
class PlannedBatchSampler(Sampler[list[int]]):
    """Slot indices of the current epoch's planned batches, each as `world_size` consecutive shards.

    `batch_size` is what one process receives (accelerate reads it); `__len__` counts yielded shards, so
    each of the N processes runs exactly `steps_per_epoch` steps. The trainer calls `set_epoch` before each
    epoch; epoch e is hybridbatch's epoch e (its own group permutation), for any number of processes.
    """

    drop_last = True  # an incomplete batch is never planned

    def __init__(self, plan: BatchSampler, epochs: int, world_size: int = 1):
        super().__init__()
        if world_size < 1 or plan.batch_size % world_size:
            raise ValueError(f"batch size {plan.batch_size} is not divisible into {world_size} processes")
        self.plan = plan
        self.epochs = epochs
        self.world_size = world_size
        self.batch_size = plan.batch_size // world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.plan.steps_per_epoch * self.world_size

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        if not 0 <= epoch < self.epochs:
            raise ValueError(f"epoch {epoch} is past the {self.epochs} planned epoch(s): give HybridBatches "
                             "a max_steps (or epochs) that covers the trainer's training length")
        for step in range(self.plan.steps_per_epoch):
            yield from self.shards(epoch, step)

    def shards(self, epoch: int, step: int) -> list[list[int]]:
        """The slots of batch (epoch, step), cut into `world_size` contiguous shards."""
        base = self.plan.global_step(epoch, step) * self.plan.batch_size
        size = self.batch_size
        return [list(range(base + r * size, base + (r + 1) * size)) for r in range(self.world_size)]


# --------------------------------------------------------------------------------------------- facade
class HybridBatches:
    """A hybridbatch plan packaged for `SentenceTransformerTrainer`: `dataset`, `batch_sampler`, `prompts`.

    `data` is a list of `ParallelGroup`, a parallel JSONL path, or a per-language `datasets.Dataset`
    (`groups_from_columns`); groups lacking one of `languages` are dropped (`n_dropped`), as in hybridbatch's
    own trainer. `batch_size` is the GLOBAL batch size (the trainer's per-device size times the number of
    processes). The plan is `make_sampler(sampler, groups, languages, batch_size, seed, ...)`: both trainers
    see identical batches for the same seed (the trainer's own `seed` argument does not change it).
    `max_steps` (batches the trainer consumes: optimizer steps x gradient accumulation) or `epochs` sizes
    the dataset in whole epochs; the trainer may not run past it.
    """

    def __init__(self, data: TrainingInput, languages: Sequence[str],
                 sampler: str = "hybrid", *, batch_size: int, seed: int = 0, alpha: float = 0.5,
                 hard_negatives: int = 0, max_steps: int | None = None, epochs: int | None = None,
                 language_weighting: str = "uniform", world_size: int | None = None):
        everything = to_groups(data)
        self.groups, self.n_dropped = restrict_languages(everything, languages)
        if not self.groups:
            raise ValueError(f"no group has a query and a positive in every one of {list(languages)}")
        self.plan = make_sampler(sampler, self.groups, languages, batch_size, seed, alpha=alpha,
                                 hard_negatives=hard_negatives, language_weighting=language_weighting,
                                 language_sizes=language_sizes(everything))
        self.epochs = _planned_epochs(max_steps, epochs, self.plan.steps_per_epoch)
        self.world_size = world_size
        self.rows = PlanRows(self.plan, hard_negatives)
        slots = np.arange(self.total_steps * batch_size, dtype=np.int64)
        self.dataset = datasets.Dataset.from_dict({"slot": slots}).with_transform(self.rows)

    @property
    def steps_per_epoch(self) -> int:
        return self.plan.steps_per_epoch

    @property
    def total_steps(self) -> int:
        """Global batches the dataset covers (`epochs` whole epochs)."""
        return self.epochs * self.plan.steps_per_epoch

    @property
    def columns(self) -> list[str]:
        return list(self.rows.columns)

    def is_plan_dataset(self, dataset: Any) -> bool:
        fmt = getattr(dataset, "format", None) or {}
        return fmt.get("format_kwargs", {}).get("transform") is self.rows

    def batch_sampler(self, dataset: Any, batch_size: int, drop_last: bool = True,
                      valid_label_columns: list[str] | None = None, generator: torch.Generator | None = None,
                      seed: int = 0) -> Sampler[list[int]]:
        """For `SentenceTransformerTrainingArguments(batch_sampler=plan.batch_sampler)`; the trainer calls it.

        `batch_size` is the per-device size; times the number of processes it must equal the plan's global
        batch size. The trainer also batches an `eval_dataset` through this argument: any dataset other than
        `self.dataset` gets plain sequential batches.
        """
        if not self.is_plan_dataset(dataset):
            from sentence_transformers.base.sampler import DefaultBatchSampler

            return DefaultBatchSampler(SequentialSampler(dataset), batch_size, drop_last, valid_label_columns,
                                       generator, seed)
        world = self.world_size or _world_size()
        if batch_size * world != self.plan.batch_size:
            raise ValueError(f"per-device batch size {batch_size} x {world} process(es) != the plan's global "
                             f"batch size {self.plan.batch_size}; set per_device_train_batch_size="
                             f"{self.plan.batch_size // world}")
        return PlannedBatchSampler(self.plan, self.epochs, world)

    def prompts(self, query_prefix: str = "", passage_prefix: str = "") -> dict[str, str]:
        """The trainer's `prompts` argument: `query_prefix` on anchors, `passage_prefix` on the rest (e5)."""
        prefixes = {name: passage_prefix for name in self.rows.columns[1:]}
        return {name: p for name, p in {"anchor": query_prefix, **prefixes}.items() if p}

    def write_batch_log(self, path: str | Path, total_steps: int | None = None) -> dict[str, Any]:
        """Write the plan's first `total_steps` batches (default: all) to `path` in hybridbatch's
        `batches.jsonl` format; returns the mix summary."""
        steps = self.total_steps if total_steps is None else total_steps
        return write_batch_log(path, self.plan, self.groups, steps)

    def batches_consumed(self, max_steps: int, grad_accum: int = 1) -> int:
        """Planned batches a trainer takes for `max_steps` optimizer steps: `grad_accum` per step, except
        that an epoch's last step takes only what is left of the epoch (transformers' rule)."""
        per_epoch = self.steps_per_epoch
        epochs, rest = divmod(max_steps, math.ceil(per_epoch / grad_accum))
        return min(self.total_steps, epochs * per_epoch + min(rest * grad_accum, per_epoch))

    def batch_log_callback(self, path: str | Path) -> Any:
        """A `TrainerCallback` that writes, on the main process when training starts, the batches the
        trainer is going to consume to `path` (`batches.jsonl`)."""
        from transformers import TrainerCallback

        plan = self

        class WriteBatchLog(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                if state.is_world_process_zero:
                    steps = plan.batches_consumed(state.max_steps, args.gradient_accumulation_steps)
                    plan.write_batch_log(path, steps)

        return WriteBatchLog()


def _planned_epochs(max_steps: int | None, epochs: int | None, steps_per_epoch: int) -> int:
    if max_steps is not None and epochs is not None:
        raise ValueError("give max_steps or epochs, not both")
    for name, value in (("max_steps", max_steps), ("epochs", epochs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return epochs or math.ceil((max_steps or 1) / steps_per_epoch)


def _world_size() -> int:
    """Processes the trainer's accelerator deals batches to (torch.distributed's world, else 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1
