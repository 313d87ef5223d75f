"""The config of an image-text run (`hybridbatch train-vl CONFIG.yaml [key=value ...]`), validated up front.

Data sources: `emoji-cldr:train` / `emoji-cldr:test` (built from the Debian packages into the cache), or the
path of a caption JSONL file in the generic layout (`hybridbatch.data.captions`). Numbers, booleans, the
output folder and the YAML file itself are checked as for the text config (`hybridbatch.training.config`):
no NaN or infinite value, no boolean taken for a number, no empty or current-folder `output_dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, StrictBool, field_validator, model_validator

from hybridbatch.training.config import (
    MAX_SEED,
    CheckpointConfig,
    Float,
    Int,
    SamplerConfig,
    _Section,
    check_output_dir_value,
    load_typed_config,
    validate_config,
)


class CaptionDataConfig(_Section):
    source: str = Field(description="'emoji-cldr:train' or a caption JSONL path (generic layout)")
    languages: list[str] = Field(min_length=1, description="caption languages drawn by the sampler")


class ImageTextEvalConfig(_Section):
    benchmarks: list[str] = Field(default_factory=list, description="e.g. ['emoji-cldr:test']")
    languages: list[str] = Field(default_factory=list, description="caption languages evaluated; [] = all")
    batch_size: Int = Field(64, ge=1)


class ImageTextConfig(_Section):
    text_model: str = Field("me5-small", description="registry name or sentence-transformers folder ('tiny')")
    image_tower: str = Field("efficientnet-lite0", description="see hybridbatch.models.image_towers")
    embed_dim: Int = Field(256, ge=8)
    lock_image: StrictBool = Field(True, description="LiT: the image tower stays frozen (its features are cached)")
    train_text_tower: StrictBool = Field(True, description="False: only the projections and the scale are trained")
    freeze_word_embeddings: StrictBool = True
    max_seq_length: Int = Field(32, ge=8)
    data: CaptionDataConfig
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    batch_size: Int = Field(64, ge=2)
    steps: Int = Field(ge=1)
    lr: Float = Field(2e-5, gt=0, le=1, description="text tower")
    head_lr: Float = Field(1e-3, gt=0, le=1, description="projections and logit scale")
    weight_decay: Float = Field(0.01, ge=0, le=1)
    warmup_steps: Int = Field(0, ge=0)
    text_text_weight: Float = Field(1.0, ge=0, le=100, description="weight of the caption X <-> caption Y InfoNCE "
                                    "(two captions of the same image in languages X != Y; cross batches only, "
                                    "see training/image_text_batches.py)")
    image_second_caption_weight: Float = Field(1.0, ge=0, le=100, description="weight of caption Y <-> image "
                                               "beside caption X <-> image in cross batches (the two are averaged)")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    seed: Int = Field(0, ge=0, le=MAX_SEED)
    precision: Literal["fp32", "bf16", "auto"] = Field("fp32", description="text tower under bf16 autocast")
    output_dir: str = Field(description="the run folder; never the current folder")
    eval: ImageTextEvalConfig = Field(default_factory=ImageTextEvalConfig)

    @field_validator("output_dir")
    @classmethod
    def _output_folder(cls, value: str) -> str:
        return check_output_dir_value(value)

    @model_validator(mode="after")
    def _combinations(self) -> ImageTextConfig:
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) is larger than steps ({self.steps})")
        if len(set(self.data.languages)) != len(self.data.languages):
            raise ValueError(f"data.languages lists a language twice: {self.data.languages}")
        if self.sampler.name in ("cross", "hybrid") and len(self.data.languages) < 2:
            raise ValueError(f"sampler {self.sampler.name!r} needs at least 2 data.languages")
        if (self.sampler.name in ("cross", "hybrid") and self.text_text_weight == 0
                and self.image_second_caption_weight == 0 and not (self.sampler.name == "hybrid"
                                                                   and self.sampler.alpha == 1)):
            raise ValueError(f"sampler {self.sampler.name!r} with text_text_weight 0 and "
                             "image_second_caption_weight 0 trains no cross-lingual pair (its cross batches "
                             "would be mixed-language batches): use sampler 'mixed-same' for that")
        if self.sampler.name == "en-en" and "en" not in self.data.languages:
            raise ValueError("sampler 'en-en' needs 'en' in data.languages")
        if not self.lock_image and self.image_tower == "efficientnet-lite0":
            pass  # allowed: full fine-tuning of the image tower (slow on CPU)
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def image_text_config_from_dict(raw: Any, source: str = "<config>") -> ImageTextConfig:
    return validate_config(ImageTextConfig, raw, source)


def load_image_text_config(path: str | Path, overrides: list[str] | None = None) -> ImageTextConfig:
    return load_typed_config(ImageTextConfig, path, overrides)
