"""The training config: one validated object, loaded from YAML plus `key=value` overrides.

Everything a run does is decided here and written to `RUN/config.yaml`, so a run folder says how it was
made and `--resume` can check that it continues the same run. Unknown keys and wrong types are errors
naming the key and the file, raised before any data or model is loaded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hybridbatch.batching.samplers import SAMPLERS, WEIGHTINGS


class ConfigError(ValueError):
    """A config that cannot be run; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    source: str = Field(description="'xquad-r:train' (LAReQA, article-disjoint half) or a parallel JSONL path")
    languages: list[str] = Field(min_length=1)
    hard_negatives: int = Field(0, ge=0)
    data_dir: str | None = Field(None, description="LAReQA folder; default $HYBRIDBATCH_LAREQA_DIR / cache")

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, value: list[str]) -> list[str]:
        """Normalized (`pt_BR` -> `pt-BR`); a malformed or unknown code, or one listed twice, is refused."""
        from hybridbatch.data.languages import normalize_lang

        codes = [normalize_lang(code) for code in value]
        twice = sorted({c for c in codes if codes.count(c) > 1})
        if twice:
            raise ValueError(f"lists {twice} twice (after normalization): {value}")
        return codes


class SamplerConfig(_Section):
    name: str = "hybrid"
    alpha: float = 0.5
    language_weighting: str = "uniform"

    @field_validator("name")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        if value not in SAMPLERS:
            raise ValueError(f"unknown sampler {value!r}; expected one of {sorted(SAMPLERS)}")
        return value

    @field_validator("alpha")
    @classmethod
    def _alpha_in_range(cls, value: float) -> float:
        if math.isnan(value) or not 0 <= value <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {value}")
        return value

    @field_validator("language_weighting")
    @classmethod
    def _known_weighting(cls, value: str) -> str:
        if value not in WEIGHTINGS:
            raise ValueError(f"unknown language_weighting {value!r}; expected one of {list(WEIGHTINGS)}")
        return value


class EvalConfig(_Section):
    every: int = Field(0, ge=0, description="evaluate every N optimizer steps; 0 = only at the end")
    benchmarks: list[str] = Field(default_factory=list, description="e.g. ['xquad-r:test']")
    final: bool = True
    batch_size: int = Field(64, ge=1)


class EarlyStoppingConfig(_Section):
    patience: int = Field(0, ge=0, description="stop after this many validations without improvement; 0 = off")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="groups held out for the validation loss")
    every: int = Field(0, ge=0, description="validation loss every N steps; 0 = use eval.every")
    min_delta: float = Field(0.0, ge=0.0)


class CheckpointConfig(_Section):
    every: int = Field(0, ge=0, description="checkpoint every N optimizer steps; 0 = never")
    keep_last: int = Field(2, ge=1)


class TrainConfig(_Section):
    """A whole run. `steps` counts optimizer updates; each consumes `grad_accum` sampler batches."""

    model: str = Field(description="registry name, a sentence-transformers folder, or 'tiny' (see models)")
    data: DataConfig
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    batch_size: int = Field(ge=1)
    steps: int = Field(ge=1)
    lr: float = Field(3e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(0, ge=0)
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(None, gt=0, description="clip the gradient norm; None = no clipping")
    temperature: float = Field(0.05, gt=0)
    symmetric: bool = False
    mask_same_group: bool = Field(False, description="drop from a query's softmax other copies of its own answer "
                                  "text (shared answer sentences, other groups' hard negatives)")
    freeze_word_embeddings: bool = False
    max_seq_length: int | None = Field(None, ge=8)
    encode_chunk_size: int = Field(16, ge=0, description="texts per length-sorted forward chunk; 0 = one")
    seed: int = Field(0, ge=0)
    output_dir: str
    eval: EvalConfig = Field(default_factory=EvalConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    nonfinite_loss: Literal["stop", "skip"] = "stop"
    log_every: int = Field(1, ge=1, description="progress-bar refresh; metrics.jsonl gets every step")
    precision: Literal["fp32", "bf16", "auto"] = Field("fp32", description="bf16: forward under bf16 autocast, "
                                                       "fp32 weights/optimizer; auto: bf16 on native-bf16 CPUs")

    @model_validator(mode="after")
    def _combinations(self) -> TrainConfig:
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) is larger than steps ({self.steps})")
        stop = self.early_stopping
        if stop.patience and not stop.val_fraction:
            raise ValueError("early_stopping.patience needs early_stopping.val_fraction > 0 (held-out groups)")
        if stop.patience and not self.validation_every:
            raise ValueError("early_stopping.patience needs early_stopping.every or eval.every > 0")
        if len(set(self.data.languages)) != len(self.data.languages):
            raise ValueError(f"data.languages lists a language twice: {self.data.languages}")
        if self.sampler.name in ("cross", "hybrid") and len(self.data.languages) < 2:
            raise ValueError(f"sampler {self.sampler.name!r} needs at least 2 data.languages")
        if self.sampler.name == "en-en" and "en" not in self.data.languages:
            raise ValueError("sampler 'en-en' needs 'en' in data.languages")
        return self

    @property
    def validation_every(self) -> int:
        return self.early_stopping.every or self.eval.every

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[list[str], Any]:
    """`sampler.alpha=0.3` -> (['sampler', 'alpha'], 0.3); the value is read as a YAML scalar/list."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise ConfigError(f"bad override {text!r}; expected dotted.key=value, e.g. sampler.alpha=0.3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return [p.strip() for p in parts], value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of `raw` with each override set (nested sections created as needed)."""
    out = yaml.safe_load(yaml.safe_dump(raw))  # deep copy through plain YAML types
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{'.'.join(parts[:depth + 1])}' is not a section")
            node = child
        node[parts[-1]] = value
    return out


def config_from_dict(raw: Any, source: str = "<config>") -> TrainConfig:
    """Validate a plain dict; errors list every bad key as `source: key: problem`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(raw).__name__}")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid config\n" + _describe(exc)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read YAML at `path`, apply `key=value` overrides, validate."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    source = str(path) + (f" (with overrides {' '.join(overrides)})" if overrides else "")
    return config_from_dict(apply_overrides(raw or {}, list(overrides or [])), source)


def save_config(config: TrainConfig, run_dir: str | Path) -> Path:
    from hybridbatch.io import atomic_write

    target = Path(run_dir) / "config.yaml"
    with atomic_write(target) as handle:
        handle.write(config.to_yaml())
    return target


def config_differences(a: TrainConfig, b: TrainConfig) -> list[str]:
    """Dotted keys whose values differ (used to refuse resuming a run with another config)."""
    flat_a, flat_b = _flatten(a.model_dump(mode="json")), _flatten(b.model_dump(mode="json"))
    return sorted(k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k) != flat_b.get(k))


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] not in ("value_error",):
                message += f" (got {err['input']!r})"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)
