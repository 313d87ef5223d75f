"""The compare grid: which models to train and evaluate, where each one lives, and what is already done.

A compare config names base models, samplers (with alphas for hybrid), seeds and benchmarks, plus one
`train:` mapping shared by every run. `expand` turns it into named runs (`me5-small/hybrid@0.5/seed0`,
`me5-small/zero-shot`), each with its own folder `OUTPUT/runs/<name>/` holding the training run (`train/`)
and its evaluations (`eval/<benchmark>/`). Whether a step is done is read from the files alone: the
trainer writes `summary.json` after the model folder, an evaluation writes `metrics.json` last. So an
interrupted grid resumes by doing only what is missing, and a half-trained run is never taken for a
finished one. Kept free of torch imports: `--dry-run` and `--report-only` must not load a model stack.
This module does not know how a run is trained, loaded or evaluated (its `RunKind`: run_kind.py for text,
run_kind_image_text.py for image-text) nor runs anything (runner.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    Strict,
    ValidationError,
    model_validator,
)

from hybridbatch.batching.samplers import SAMPLERS
from hybridbatch.data.names import parse_benchmark_spec
from hybridbatch.experiments.grid_sections import GridEvalSection, SignificanceSection, StrictSection
from hybridbatch.experiments.grid_spec import (  # noqa: F401 - re-exported: the grid's names
    GridRun,
    benchmark_label,
    benchmark_slug,
    load_benchmark_spec,
    model_label,
    system_label,
    train_config,
)
from hybridbatch.experiments.run_kind import TEXT_RUNS, RunKind
from hybridbatch.experiments.run_kind_image_text import IMAGE_TEXT_RUNS
from hybridbatch.training.config import (
    ConfigError,
    _describe,
    apply_overrides,
    config_differences,
    config_source,
    read_yaml_mapping,
)

ZERO_SHOT = "zero-shot"
TRAIN_DONE = "summary.json"  # the trainer's last write: its presence marks a finished training run
EVAL_DONE = "metrics.json"  # an evaluation's last write
GRID_OWNED = ("model", "seed", "output_dir", "eval")  # keys of `train:` that the grid sets per run
# keys that may differ from a finished run's saved config: the trainer's resumable ones, where things are, and the
# memory knobs that split a step's encoding without changing its gradient (beyond float rounding; tested in
# tests/training): a grid short of memory can set `train.grad_cache_chunk` and keep its finished runs
REUSABLE = ("eval.", "checkpoint.", "log_every", "output_dir", "data.data_dir", "grad_cache_chunk",
            "encode_chunk_size")
RUN_KINDS = {kind.name: kind for kind in (TEXT_RUNS, IMAGE_TEXT_RUNS)}  # what a grid does with each `kind:`


class CompareConfig(StrictSection):
    """A whole comparison; `train` holds TrainConfig fields shared by every trained run."""

    kind: Literal["text", "image-text"] = Field("text", description="image-text: `train` is an image-text "
                                                "config (hybridbatch.training.image_text_config), the benchmarks "
                                                "caption sets such as emoji-cldr:test@en,de")
    base_models: list[str] = Field(min_length=1)
    samplers: list[str] = Field(default_factory=lambda: ["mono", "cross", "hybrid"], min_length=1)
    alphas: list[Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=lambda: [0.5], min_length=1)
    claim_alpha: float | None = Field(None, description="the hybrid the claims test; 0.5 or alphas[0]")
    include_zero_shot: bool = True
    baselines: list[str] = Field(default_factory=list, description="image-text: pretrained models evaluated as "
                                 "rows (CLIP / BLIP-2 hub ids or folders, train-vl folders; grid_baselines.py)")
    seeds: list[Annotated[NonNegativeInt, Strict()]] = Field(default_factory=lambda: [0], min_length=1)
    benchmarks: list[str] = Field(min_length=1)
    in_domain: str | None = Field(None, description="default: the first benchmark")
    zero_shot_benchmark: str | None = None
    train: dict[str, Any]
    eval: GridEvalSection = Field(default_factory=GridEvalSection)
    output_dir: str
    significance: SignificanceSection = Field(default_factory=SignificanceSection)

    @model_validator(mode="after")
    def _check(self) -> CompareConfig:
        unknown = [s for s in self.samplers if s not in SAMPLERS]
        if unknown:
            raise ValueError(f"samplers: unknown {unknown}; expected some of {sorted(SAMPLERS)}")
        for spec in self.benchmarks:
            parse_benchmark_spec(spec)
        for what, values in (("samplers", self.samplers), ("alphas", self.alphas), ("seeds", self.seeds),
                             ("benchmarks", self.benchmarks), ("base_models", self.base_models),
                             ("benchmarks (by label)", [benchmark_label(b) for b in self.benchmarks]),
                             ("base_models (by label)", [model_label(m) for m in self.base_models])):
            if len(set(values)) != len(values):
                raise ValueError(f"{what} lists a value twice: {values}")
        sampler = self.train.get("sampler") or {}
        if not isinstance(sampler, dict):
            raise ValueError(f"train.sampler must be a mapping (e.g. {{language_weighting: uniform}}), got "
                             f"{type(sampler).__name__} {sampler!r}")
        owned = [k for k in GRID_OWNED if k in self.train]
        owned += [f"sampler.{k}" for k in ("name", "alpha") if isinstance(sampler, dict) and k in sampler]
        if owned:
            raise ValueError(f"train: {owned} are set by the grid per run (base_models, samplers, alphas, "
                             "seeds, output_dir); the grid evaluates with its own eval: section")
        if self.baselines and not self.run_kind.baselines_allowed:
            raise ValueError("baselines: only image-text grids have baseline rows (text grids: zero-shot rows)")
        if "samplers" not in self.model_fields_set:  # image-text: en-en (English-only, CLIP-style) is a row
            self.samplers = list(self.run_kind.default_samplers)
        if len(set(self.baselines)) != len(self.baselines) or \
                len({model_label(b) for b in self.baselines}) != len(self.baselines):
            raise ValueError(f"baselines lists a model (or a label) twice: {self.baselines}")
        if self.include_zero_shot and self.run_kind.zero_shot_refused:
            raise ValueError(self.run_kind.zero_shot_refused)
        self.in_domain = self.in_domain or self.benchmarks[0]
        for key in ("in_domain", "zero_shot_benchmark"):
            value = getattr(self, key)
            if value is not None and value not in self.benchmarks:
                raise ValueError(f"{key} {value!r} is not one of the benchmarks {self.benchmarks}")
        if self.zero_shot_benchmark == self.in_domain:
            raise ValueError("zero_shot_benchmark must differ from in_domain")
        if self.claim_alpha is None:
            self.claim_alpha = 0.5 if 0.5 in self.alphas else self.alphas[0]
        elif self.claim_alpha not in self.alphas:
            raise ValueError(f"claim_alpha {self.claim_alpha} is not one of the alphas {self.alphas}")
        return self

    @property
    def run_kind(self) -> RunKind:
        return RUN_KINDS[self.kind]

    @property
    def claim_hybrid(self) -> str:
        return system_label("hybrid", self.claim_alpha)

    @property
    def data_dir(self) -> str | None:
        return (self.train.get("data") or {}).get("data_dir")


# --------------------------------------------------------------------------------------------- loading
def load_compare_config(path: str | Path, overrides: list[str] | None = None) -> CompareConfig:
    """Read YAML, apply `key=value` overrides, validate the grid and every run's training config."""
    path = Path(path)
    raw = read_yaml_mapping(path)  # UTF-8, a mapping, no alias bomb: one line naming the file otherwise
    return compare_config_from_dict(apply_overrides(raw, list(overrides or [])), config_source(path, overrides))


def compare_config_from_dict(raw: Any, source: str = "<compare config>") -> CompareConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(raw).__name__}")
    try:
        config = CompareConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid compare config\n" + _describe(exc)) from None
    try:
        expand(config)  # every run's TrainConfig is validated now, before anything is trained
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


# --------------------------------------------------------------------------------------------- runs
def expand(config: CompareConfig) -> list[GridRun]:
    """Every run of the grid, zero-shot rows first (one per base model), then sampler x alpha x seed."""
    root = Path(config.output_dir) / "runs"
    runs: list[GridRun] = []
    for model in config.base_models:
        base = model_label(model)
        if config.include_zero_shot:
            runs.append(GridRun(f"{base}/{ZERO_SHOT}", base, model, ZERO_SHOT, None, root / base / ZERO_SHOT,
                                None, config.run_kind))
        if config.baselines:
            from hybridbatch.experiments.grid_baselines import baseline_runs

            runs += baseline_runs(config, base)
        for sampler in config.samplers:
            for alpha in config.alphas if sampler == "hybrid" else [None]:
                system = system_label(sampler, alpha)
                for seed in config.seeds:
                    name = f"{base}/{system}/seed{seed}"
                    folder = root / name
                    runs.append(GridRun(name, base, model, system, seed, folder,
                                        train_config(config, model, sampler, alpha, seed, folder / "train"),
                                        config.run_kind))
    return runs


# --------------------------------------------------------------------------------------------- status
def is_trained(run: GridRun) -> bool:
    """Finished training (or none needed): the trainer's summary.json beside a model folder."""
    done = (run.train_dir / TRAIN_DONE).is_file() and (run.train_dir / "model").is_dir()
    return run.train is None or done


def is_started(run: GridRun) -> bool:
    """Training has begun in the run folder (so it must be resumed, not started afresh)."""
    from hybridbatch.training.rundir import STARTED_MARKERS

    return run.train is not None and any((run.train_dir / m).exists() for m in STARTED_MARKERS)


def is_evaluated(run: GridRun, benchmark: str) -> bool:
    return is_trained(run) and (run.eval_dir(benchmark) / EVAL_DONE).is_file()


def is_complete(run: GridRun, benchmarks: list[str]) -> bool:
    return all(is_evaluated(run, b) for b in benchmarks)


def config_drift(run: GridRun) -> list[str]:
    """Keys in which the run folder's saved training config differs from the grid's (`REUSABLE` aside).

    A finished run is reused without calling the trainer, so this check is what stops a changed grid
    (more steps, another lr) from silently reporting models trained the old way.
    """
    saved = run.train_dir / "config.yaml"
    if run.train is None or not saved.is_file():
        return []
    previous = run.kind.load_train_config(saved)
    return [k for k in config_differences(previous, run.train) if not k.startswith(REUSABLE)]


Task = tuple[str, GridRun, str | None]  # ("train", run, None) or ("eval", run, benchmark)


def pending_tasks(config: CompareConfig, runs: list[GridRun] | None = None) -> list[Task]:
    """What is left to do, in order; a run (re)trained now is evaluated again on every benchmark."""
    from hybridbatch.experiments.grid_baselines import not_run_reason

    tasks: list[Task] = []
    folders: set[Path] = set()
    for run in expand(config) if runs is None else runs:
        if run.folder in folders or not_run_reason(run):  # a baseline shared by base models; no weights here
            continue
        folders.add(run.folder)
        fresh = not is_trained(run)
        if fresh:
            tasks.append(("train", run, None))
        tasks += [("eval", run, b) for b in config.benchmarks if fresh or not is_evaluated(run, b)]
    return tasks


def status_line(run: GridRun, benchmarks: list[str]) -> str:
    """One line for `--dry-run`: what is done and what the next call would do."""
    from hybridbatch.experiments.grid_baselines import not_run_reason

    if (reason := not_run_reason(run)) is not None:
        return f"{run.name}: {reason}"
    if run.train is None:
        train = "no training (base model)"
    elif is_trained(run):
        train = "trained"
    elif is_started(run):
        train = "interrupted: will resume"
    else:
        train = "to train"
    drift = config_drift(run)
    if drift:
        train += f" [CONFIG DIFFERS in {drift}: refuses to run]"
    evals = ", ".join(f"{b} {'done' if is_evaluated(run, b) else 'to do'}" for b in benchmarks)
    return f"{run.name}: {train}; eval: {evals}"


