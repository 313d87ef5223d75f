"""The training config: one validated object, loaded from YAML plus `key=value` overrides.

Everything a run does is decided here and written to `RUN/config.yaml`, so a run folder says how it was
made and `--resume` can check that it continues the same run. Unknown keys and wrong types are errors
naming the key and the file, raised before any data or model is loaded.

Numbers are checked as numbers: NaN and infinities are refused for every float (`lr: .inf` would train a
model of NaN weights), a YAML boolean is never an integer or a float (`steps: true` is not one step), and
the hyperparameters have sane ranges (`lr` and `weight_decay` at most 1, `temperature` in [1e-4, 10], `seed`
below 2**32, what numpy's seeding takes). A config file is read as UTF-8, at most `MAX_CONFIG_BYTES`, its
top level a mapping, and its YAML aliases may expand to at most `MAX_CONFIG_NODES` values (a 668-byte alias
bomb expands to millions). Error messages quote at most `QUOTE_CHARS` characters of any value.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from hybridbatch.batching.samplers import SAMPLERS, WEIGHTINGS

ModelT = TypeVar("ModelT", bound=BaseModel)
MAX_CONFIG_BYTES = 1 << 20  # a config file larger than this is refused unread
MAX_CONFIG_NODES = 100_000  # values after YAML aliases are expanded
QUOTE_CHARS = 200  # of an input value quoted in an error message
MAX_SEED = 2**32 - 1  # numpy's legacy seeding (accelerate's set_seed) takes no more


class ConfigError(ValueError):
    """A config that cannot be run; the message names the file and the key."""


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {value}")
    return value


Int = Annotated[int, Strict()]  # YAML `true` is not 1, `2.5` is not 2
Float = Annotated[float, BeforeValidator(_not_a_boolean)]  # ints and "3e-5" (PyYAML's string) accepted


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Section):
    source: str = Field(description="'xquad-r:train' (LAReQA, article-disjoint half) or a parallel JSONL path")
    languages: list[str] = Field(min_length=1)
    hard_negatives: Int = Field(0, ge=0)
    data_dir: str | None = Field(None, description="LAReQA folder; default $HYBRIDBATCH_LAREQA_DIR / cache")

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, value: list[str]) -> list[str]:
        """Normalized (`pt_BR` -> `pt-BR`); a malformed or unknown code, or one listed twice, is refused."""
        from hybridbatch.data.languages import normalize_lang

        codes = [normalize_lang(code) for code in value]
        twice = sorted(c for c, n in Counter(codes).items() if n > 1)  # linear: list.count was quadratic
        if twice:
            raise ValueError(f"lists {twice} twice (after normalization): {value}")
        return codes


class SamplerConfig(_Section):
    name: str = "hybrid"
    alpha: Float = Field(0.5, allow_inf_nan=True)  # NaN and inf: refused by _alpha_in_range
    language_weighting: str = "uniform"
    group_languages: Literal["all", "available"] = Field(
        "all", description="'all': groups in every configured language (others dropped); 'available': groups in "
        "two or more of them, each draw within its group's languages (partially parallel data such as MLQA-R)")

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
    every: Int = Field(0, ge=0, description="evaluate every N optimizer steps; 0 = only at the end")
    benchmarks: list[str] = Field(default_factory=list, description="e.g. ['xquad-r:test']")
    final: StrictBool = True
    batch_size: Int = Field(64, ge=1)


class EarlyStoppingConfig(_Section):
    patience: Int = Field(0, ge=0, description="stop after this many validations without improvement; 0 = off")
    val_fraction: Float = Field(0.0, ge=0.0, lt=1.0, description="groups held out for the validation loss")
    every: Int = Field(0, ge=0, description="validation loss every N steps; 0 = use eval.every")
    min_delta: Float = Field(0.0, ge=0.0)


class CheckpointConfig(_Section):
    every: Int = Field(0, ge=0, description="checkpoint every N optimizer steps; 0 = never")
    keep_last: Int = Field(2, ge=1)


class TrainConfig(_Section):
    """A whole run. `steps` counts optimizer updates; each consumes `grad_accum` sampler batches."""

    model: str = Field(description="registry name, a sentence-transformers folder, or 'tiny' (see models)")
    data: DataConfig
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    batch_size: Int = Field(ge=1)
    steps: Int = Field(ge=1)
    lr: Float = Field(3e-5, gt=0, le=1)
    weight_decay: Float = Field(0.01, ge=0, le=1)
    warmup_steps: Int = Field(0, ge=0)
    grad_accum: Int = Field(1, ge=1)
    max_grad_norm: Float | None = Field(None, gt=0, description="clip the gradient norm; None = no clipping")
    temperature: Float = Field(0.05, ge=1e-4, le=10)
    symmetric: StrictBool = False
    mask_same_group: StrictBool = Field(False, description="drop from a query's softmax other copies of its own "
                                        "answer text (shared answer sentences, other groups' hard negatives)")
    freeze_word_embeddings: StrictBool = False
    max_seq_length: Int | None = Field(None, ge=8)
    encode_chunk_size: Int = Field(16, ge=0, description="texts per length-sorted forward chunk; 0 = one")
    grad_cache_chunk: Int = Field(0, ge=0, description="gradient-cached step (GradCache): texts per "
                                  "mini-batch, encoded twice but only one mini-batch's activations kept; 0 = off")
    seed: Int = Field(0, ge=0, le=MAX_SEED)
    output_dir: str = Field(description="the run folder; never the current folder")
    eval: EvalConfig = Field(default_factory=EvalConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    nonfinite_loss: Literal["stop", "skip"] = "stop"
    log_every: Int = Field(1, ge=1, description="progress-bar refresh; metrics.jsonl gets every step")
    precision: Literal["fp32", "bf16", "auto"] = Field("fp32", description="bf16: forward under bf16 autocast, "
                                                       "fp32 weights/optimizer; auto: bf16 on native-bf16 CPUs")

    @field_validator("output_dir")
    @classmethod
    def _output_folder(cls, value: str) -> str:
        return check_output_dir_value(value)

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


def check_output_dir_value(value: str) -> str:
    """An output folder is a named folder: not empty, not `.` (see `rundir.check_output_folder` for the
    checks that need the file system: not the current folder, not a folder of other files)."""
    if not value.strip():
        raise ValueError("is empty; name a run folder (an empty output_dir would write into the current folder)")
    if Path(value) == Path("."):
        raise ValueError(f"{value!r} is the current folder; name a run folder")
    return value


# --------------------------------------------------------------------------------------------- loading
def shorten(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[:limit] + "…"


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """`repr(value)`, cut to `limit` characters with an ellipsis (error messages never echo a whole input)."""
    text = _short_repr(value, limit)
    return text if len(text) <= limit else text[:limit] + "…"


def _short_repr(value: Any, limit: int) -> str:
    if isinstance(value, (list, tuple, dict)):  # an expanded alias bomb: never build the whole repr
        if isinstance(value, dict):
            items = ((f"{quote(k, limit)}: {quote(v, limit)}") for k, v in value.items())
            opening, closing = "{", "}"
        else:
            items = (quote(v, limit) for v in value)
            opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
        parts, length = [], 0
        for item in items:
            parts.append(item)
            length += len(item) + 2
            if length > limit:
                return opening + ", ".join(parts) + ", …"
        return opening + ", ".join(parts) + closing
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit])
    return repr(value)


def check_expanded_size(raw: Any, source: str, limit: int = MAX_CONFIG_NODES) -> None:
    """`ConfigError` if `raw` (as loaded from YAML, where an alias shares its target) counts more than `limit`
    values once every alias is expanded, or refers to itself. Linear in the distinct objects."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(obj: Any) -> int:
        if not isinstance(obj, (dict, list)):
            return 1
        key = id(obj)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{source}: a YAML alias refers to the mapping or list that contains it")
        active.add(key)
        children = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else obj
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                raise ConfigError(f"{source}: the config expands to more than {limit} values (YAML aliases "
                                  "referring to aliases?); refused")
        active.discard(key)
        sizes[key] = total
        return total

    try:
        size(raw)
    except RecursionError:
        raise ConfigError(f"{source}: the config is nested too deeply") from None


def load_yaml_text(text: str, source: str) -> Any:
    """YAML text -> plain values; a syntax error, deep nesting or an alias bomb is a one-line `ConfigError`."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(f"{source}: not valid YAML ({shorten(message, 2 * QUOTE_CHARS)})") from None
    except RecursionError:
        raise ConfigError(f"{source}: the YAML is nested too deeply") from None
    check_expanded_size(raw, source)
    return raw


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file (an empty file is `{}`); every way a file can fail to be one (not
    readable, not UTF-8, too large, not YAML, an alias bomb, a list at the top level) is a `ConfigError`
    naming the file. Shared by the training, image-text and compare configs."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes; a config is at most {MAX_CONFIG_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "save the config as UTF-8") from None
    raw = load_yaml_text(text, str(path))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level, got "
                          f"{type(raw).__name__} {quote(raw, 60)}")
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """`sampler.alpha=0.3` -> (['sampler', 'alpha'], 0.3); the value is read as a YAML scalar/list."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise ConfigError(f"bad override {quote(text)}; expected dotted.key=value, e.g. sampler.alpha=0.3")
    value = load_yaml_text(raw, f"override {quote(text)}") if raw.strip() else ""
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
                raise ConfigError(f"override {quote(text)}: '{'.'.join(parts[:depth + 1])}' is not a section")
            node = child
        node[parts[-1]] = value
    return out


def validate_config(kind: type[ModelT], raw: Any, source: str = "<config>") -> ModelT:
    """Validate a plain dict as the config class `kind`; errors list every bad key as `source: key: problem`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(raw).__name__}")
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid config\n" + _describe(exc)) from None


def load_typed_config(kind: type[ModelT], path: str | Path, overrides: list[str] | None = None) -> ModelT:
    """Read YAML at `path`, apply `key=value` overrides, validate as the config class `kind`."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    return validate_config(kind, apply_overrides(raw, list(overrides or [])), config_source(path, overrides))


def config_from_dict(raw: Any, source: str = "<config>") -> TrainConfig:
    """Validate a plain dict; errors list every bad key as `source: key: problem`."""
    return validate_config(TrainConfig, raw, source)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read YAML at `path`, apply `key=value` overrides, validate."""
    return load_typed_config(TrainConfig, path, overrides)


def config_source(path: Path, overrides: list[str] | None) -> str:
    """How errors name a config: the file, and the overrides applied to it (each quoted short)."""
    return str(path) + (f" (with overrides {shorten(' '.join(overrides))})" if overrides else "")


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


MAX_ERRORS = 20  # listed per config; a 50,000-item list of wrong types is not 50,000 lines


def _describe(exc: ValidationError) -> str:
    lines = []
    errors = exc.errors()
    for err in errors[:MAX_ERRORS]:
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            message = shorten(message, 2 * QUOTE_CHARS)  # a validator that names the value it refuses
            if "input" in err and err["type"] not in ("value_error",):
                message += f" (got {quote(err['input'])})"
        lines.append(f"  {shorten(key, 80)}: {message}")
    if len(errors) > MAX_ERRORS:
        lines.append(f"  ... and {len(errors) - MAX_ERRORS} more")
    return "\n".join(lines)
