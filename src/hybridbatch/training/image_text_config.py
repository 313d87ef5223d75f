"""The config of an image-text run (`hybridbatch train-vl CONFIG.yaml [key=value ...]`), validated up front.

Data sources: `emoji-cldr:train` / `emoji-cldr:test` (built from the Debian packages into the cache), or the
path of a caption JSONL file in the generic layout (`hybridbatch.data.captions`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from hybridbatch.training.config import ConfigError, SamplerConfig, _describe, _Section, apply_overrides


class CaptionDataConfig(_Section):
    source: str = Field(description="'emoji-cldr:train' or a caption JSONL path (generic layout)")
    languages: list[str] = Field(min_length=1, description="caption languages drawn by the sampler")


class ImageTextEvalConfig(_Section):
    benchmarks: list[str] = Field(default_factory=list, description="e.g. ['emoji-cldr:test']")
    languages: list[str] = Field(default_factory=list, description="caption languages evaluated; [] = all")
    batch_size: int = Field(64, ge=1)


class ImageTextConfig(_Section):
    text_model: str = Field("me5-small", description="registry name or sentence-transformers folder ('tiny')")
    image_tower: str = Field("efficientnet-lite0", description="see hybridbatch.models.image_towers")
    embed_dim: int = Field(256, ge=8)
    lock_image: bool = Field(True, description="LiT: the image tower stays frozen (its features are cached)")
    train_text_tower: bool = Field(True, description="False: only the projections and the scale are trained")
    freeze_word_embeddings: bool = True
    max_seq_length: int = Field(32, ge=8)
    data: CaptionDataConfig
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    batch_size: int = Field(64, ge=2)
    steps: int = Field(ge=1)
    lr: float = Field(2e-5, gt=0, description="text tower")
    head_lr: float = Field(1e-3, gt=0, description="projections and logit scale")
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(0, ge=0)
    text_text_weight: float = Field(0.0, ge=0, description="weight of the caption X <-> caption Y loss "
                                    "(pairs of the same image; cross batches only)")
    seed: int = Field(0, ge=0)
    precision: Literal["fp32", "bf16", "auto"] = Field("fp32", description="text tower under bf16 autocast")
    output_dir: str
    eval: ImageTextEvalConfig = Field(default_factory=ImageTextEvalConfig)

    @model_validator(mode="after")
    def _combinations(self) -> ImageTextConfig:
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) is larger than steps ({self.steps})")
        if len(set(self.data.languages)) != len(self.data.languages):
            raise ValueError(f"data.languages lists a language twice: {self.data.languages}")
        if self.sampler.name in ("cross", "hybrid") and len(self.data.languages) < 2:
            raise ValueError(f"sampler {self.sampler.name!r} needs at least 2 data.languages")
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
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(raw).__name__}")
    try:
        return ImageTextConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid config\n" + _describe(exc)) from None


def load_image_text_config(path: str | Path, overrides: list[str] | None = None) -> ImageTextConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    source = str(path) + (f" (with overrides {' '.join(overrides)})" if overrides else "")
    return image_text_config_from_dict(apply_overrides(raw or {}, list(overrides or [])), source)
