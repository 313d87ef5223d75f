"""What a compare grid's runs are called and configured from, knowing nothing of how they run.

The labels of base models, systems and benchmarks (run folders and report tables use them), a grid row
(`GridRun`), the training config of one row (`train_config`: the grid's `train:` mapping with the row's seed,
sampler and folder) and the benchmark a spec names (`load_benchmark_spec`). This module sits below the grid
(`grid.py`), the run kinds (`run_kind*.py`), the baselines and the time estimate, which all import it; it
imports nothing of `experiments/` and no torch. `config` arguments are a `grid.CompareConfig`, read by attribute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridbatch.data.names import parse_benchmark_spec
from hybridbatch.training.config import ConfigError


def model_label(model: str) -> str:
    """The short name of a base model in run names: `me5-small`, a folder's or hub id's last part."""
    name = model.rstrip("/").rsplit("/", 1)[-1] or model
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def system_label(sampler: str, alpha: float | None = None) -> str:
    """`mono`, `cross`, `hybrid@0.5`: the sampler, with alpha for hybrid (claims read this form)."""
    return f"hybrid@{alpha:g}" if sampler == "hybrid" else sampler


def benchmark_label(spec: str) -> str:
    """A short name for tables: a folder's last part (with its `@languages`), else the spec itself."""
    base, sep, langs = spec.rpartition("@") if parse_benchmark_spec(spec)[1] else (spec, "", "")
    return (Path(base).name if "/" in base else base) + sep + langs


def benchmark_slug(spec: str) -> str:
    """A folder name for a benchmark spec (`xquad-r:test@en,de` -> `xquad-r-test@en,de`)."""
    return re.sub(r"[^A-Za-z0-9._@,-]", "_", spec.replace(":", "-")).strip("_") or "benchmark"


@dataclass(frozen=True)
class GridRun:
    """One row of the grid: a trained model (`train` set) or a base model evaluated as is."""

    name: str
    base: str  # label of the base model
    model: str  # the base model as configured
    system: str  # mono / cross / hybrid@0.5 / zero-shot
    seed: int | None
    folder: Path
    train: Any  # the run kind's training config, or None for a base model evaluated as it is
    kind: Any  # a run_kind.RunKind: how this run is trained, loaded and evaluated (the grid's `kind:`)

    @property
    def train_dir(self) -> Path:
        return self.folder / "train"

    def eval_dir(self, benchmark: str) -> Path:
        return self.folder / "eval" / benchmark_slug(benchmark)


def train_config(config: Any, model: str, sampler: str, alpha: float | None, seed: int,
                 output_dir: Path):
    """The shared `train:` mapping with the grid's per-run keys filled in; the trainer evaluates nothing."""
    name = f"{model_label(model)}/{system_label(sampler, alpha)}/seed{seed}"
    raw = dict(config.train, seed=seed, output_dir=str(output_dir))
    raw["sampler"] = dict(raw.get("sampler") or {}, name=sampler)
    if alpha is not None:
        raw["sampler"]["alpha"] = alpha
    return config.run_kind.train_config(raw, model, f"train: of run {name}")


def load_benchmark_spec(spec: str, data_dir: str | Path | None = None):
    """The benchmark `spec` names (`data.names.resolve_benchmark`, `@languages` included), named by `spec` (run
    folders and tables are); a language it lacks is a `ConfigError`, as the grid's config names it."""
    from hybridbatch.data.names import MissingLanguages, resolve_benchmark

    try:
        bench = resolve_benchmark(spec, data_dir=data_dir)
    except MissingLanguages as exc:
        raise ConfigError(str(exc)) from None
    bench.name = spec  # a generic-layout folder would be named by its last part only
    return bench
