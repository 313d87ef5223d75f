"""Batch composition: seeded samplers that decide, per step, the groups and their languages."""

from hybridbatch.batching.plan import BATCH_TYPES, PlannedBatch, mix_summary, shard, write_batch_log
from hybridbatch.batching.samplers import (
    SAMPLERS,
    BatchSampler,
    CrossSampler,
    EnEnSampler,
    HybridSampler,
    MixedSameSampler,
    MonoSampler,
    SamplerName,
    make_sampler,
)

__all__ = [
    "BATCH_TYPES",
    "SAMPLERS",
    "BatchSampler",
    "CrossSampler",
    "EnEnSampler",
    "HybridSampler",
    "MixedSameSampler",
    "MonoSampler",
    "PlannedBatch",
    "SamplerName",
    "make_sampler",
    "mix_summary",
    "shard",
    "write_batch_log",
]
