"""The `eval:` and `significance:` sections of a compare config (grid.py): how every model of a grid is encoded,
and how the report tests differences between systems. Plain validated settings; no torch at import time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StrictSection(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignificanceSection(StrictSection):
    method: Literal["bootstrap", "randomization"] = "bootstrap"
    n_resamples: int = Field(10000, ge=100)
    level: float = Field(0.05, gt=0, lt=1)
    seed: int = Field(0, ge=0)
    unit: Literal["group", "query"] = Field("group", description="resample parallel groups (a question with "
                                            "all its translations) or single queries (experiments/grouping.py)")
    equivalence_margin: float = Field(0.005, ge=0, description="a tie holds when its interval is inside it (mAP)")
    rank_distance_margin: float = Field(0.02, ge=0, description="the same for rank distance, as a share of "
                                        "the two systems' mean rank distance")
    parallel_benchmarks: list[str] = Field(default_factory=list, description="generic-layout benchmarks whose "
                                           "query ids are `lang:<id shared by translations>`")


class GridEvalSection(StrictSection):
    batch_size: int = Field(64, ge=1)
    max_seq_length: int | None = Field(None, ge=8, description="for every model alike; None = each its own")
    fast: str | None = Field(None, description="encoding path for every text model alike (retrieval/fast_encode "
                             "KINDS: onnx, onnx-int8, bf16, auto, ...); None = fp32 torch")

    @field_validator("fast")
    @classmethod
    def _known_fast_kind(cls, value: str | None) -> str | None:
        from hybridbatch.retrieval.fast_encode import KINDS

        if value is not None and value not in KINDS:
            raise ValueError(f"unknown fast-path kind {value!r}; expected one of {', '.join(KINDS)}")
        return value
