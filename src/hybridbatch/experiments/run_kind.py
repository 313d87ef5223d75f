"""What a compare grid does with one kind of run, as one object: `RunKind`; and the text kind, `TEXT_RUNS`.

A grid holds runs of one kind (`kind:` in its config): text retrievers (here) or image-text dual encoders
(`run_kind_image_text.py`, the sibling). Each kind supplies how a run's training config is made from the grid's
`train:` mapping and read back from its folder, how it is trained, and how its model and benchmarks are loaded
and evaluated. The grid (`grid.py`) and the runner (`runner.py`) call these functions and never ask which kind
they hold. This module knows no grid layout beyond a run's fields (grid_spec.py), and prints nothing; it imports no torch at
import time (each function imports what it needs when called), so `--dry-run` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridbatch.experiments.grid_spec import GridRun, load_benchmark_spec, train_config

# grid.py imports this module (its RUN_KINDS), so its types are not imported here: a CompareConfig and a Task
# (("train" | "eval", GridRun, benchmark or None)) are read by attribute and position only.
CompareConfig = Any
Task = tuple[str, GridRun, "str | None"]


@dataclass(frozen=True)
class RunKind:
    name: str  # the compare config's `kind:`
    default_samplers: tuple[str, ...]  # the grid's samplers when its config lists none
    zero_shot_refused: str | None  # why `include_zero_shot` is refused (None: an untrained base model is a row)
    baselines_allowed: bool  # `baselines:` rows (pretrained models evaluated as they are; grid_baselines.py)
    # the grid's `train:` mapping with its per-run keys, the base model, a source for messages -> training config
    train_config: Callable[[dict[str, Any], str, str], Any]
    load_train_config: Callable[[Path], Any]  # the training config saved in a run's train/ folder
    train: Callable[[Any, bool], Path]  # (training config, resume) -> the run folder
    load_benchmark: Callable[[str, CompareConfig], Any]  # (benchmark spec, grid) -> what `evaluate` searches
    load_model: Callable[[GridRun, CompareConfig], tuple[Any, str, str]]  # (model, query prefix, passage prefix)
    # (run, benchmark spec, model, prefixes, benchmark, grid, progress): writes run/eval/<benchmark>/, metrics last
    evaluate: Callable[..., None]
    describe_time: Callable[[CompareConfig, list[Task]], str]  # about how long the tasks take, in one line


def run_fields(run: GridRun) -> dict[str, Any]:
    """What an evaluation's metrics.json records about the grid row it scored."""
    return {"model": run.model, "run": run.name, "system": run.system, "seed": run.seed}


# --------------------------------------------------------------------------------------------- text runs
def _text_train_config(raw: dict[str, Any], model: str, source: str):
    from hybridbatch.training.config import config_from_dict

    raw.update(model=model, eval={"every": 0, "benchmarks": [], "final": False})
    return config_from_dict(raw, source)


def _text_load_train_config(path: Path):
    from hybridbatch.training.config import load_config

    return load_config(path)


def _text_train(config, resume: bool) -> Path:
    from hybridbatch.training.trainer import train

    return train(config, resume=resume)


def _text_load_benchmark(spec: str, config: CompareConfig):
    return load_benchmark_spec(spec, config.data_dir)


def _text_load_model(run: GridRun, config: CompareConfig):
    """(SentenceTransformer, query prefix, passage prefix) of a trained run or of its base model."""
    import torch

    from hybridbatch.models.registry import load_sentence_transformer, resolve_model

    target = str(run.train_dir / "model") if run.train is not None else run.model
    if target == "tiny":  # the trainer's convention: a tiny BERT built on the training texts
        from hybridbatch.training.components import tiny_model_path
        from hybridbatch.training.training_data import prepare_data

        cfg = train_config(config, run.model, "mono", None, config.seeds[0], run.folder / "unused")
        target = str(tiny_model_path(prepare_data(cfg)))
    resolved = resolve_model(target)
    model = load_sentence_transformer(target, device="cuda" if torch.cuda.is_available() else "cpu")
    if config.eval.max_seq_length:
        model.max_seq_length = config.eval.max_seq_length
    if config.eval.fast:
        from hybridbatch.retrieval.fast_encode import make_fast

        model = make_fast(model, config.eval.fast)
    return model, resolved.query_prefix, resolved.passage_prefix


def _text_evaluate(run: GridRun, bench_spec: str, model, prefixes: tuple[str, str], benchmark,
                   config: CompareConfig, progress: bool = False) -> None:
    from hybridbatch.evaluation.run import evaluate_model

    evaluate_model(model, benchmark, run.eval_dir(bench_spec), prefixes[0], prefixes[1],
                   batch_size=config.eval.batch_size, show_progress=progress,
                   extra={**run_fields(run), "skipped": benchmark.skipped})


def _text_describe_time(config: CompareConfig, tasks: list[Task]) -> str:
    from hybridbatch.experiments.estimate import describe_estimate, estimate_seconds

    return describe_estimate(estimate_seconds(config, tasks))


TEXT_RUNS = RunKind(
    name="text", default_samplers=("mono", "cross", "hybrid"), zero_shot_refused=None, baselines_allowed=False,
    train_config=_text_train_config, load_train_config=_text_load_train_config, train=_text_train,
    load_benchmark=_text_load_benchmark, load_model=_text_load_model, evaluate=_text_evaluate,
    describe_time=_text_describe_time)
