"""Image-text runs of a compare grid (`kind: image-text`): the sibling of the text kind in `run_kind.py`.

A run is an image-text dual encoder trained by `train-vl`'s trainer (hybridbatch.training.image_text) from the
grid's `train:` mapping, its base model the text tower; benchmarks are caption sets (`emoji-cldr:test@en,de`:
the `@languages` are applied at evaluation); baseline rows (CLIP, BLIP-2, train-vl folders: grid_baselines.py)
are evaluated as they are. An untrained image-text model has random projections, so there is no zero-shot row:
the English-only sampler `en-en` plays that part. Imports no torch at import time, like `run_kind.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybridbatch.data.names import parse_benchmark_spec
from hybridbatch.experiments.grid_spec import GridRun
from hybridbatch.experiments.run_kind import CompareConfig, RunKind, Task, run_fields

IMAGE_TEXT_SAMPLERS = ["en-en", "mono", "mixed-same", "cross", "hybrid"]  # en-en: the English-only CLIP-style row

ZERO_SHOT_REFUSED = ("include_zero_shot: an untrained image-text model has random projections; for image-text "
                     "grids add the sampler 'en-en' (projections trained on English captions only) as the "
                     "zero-shot row and set include_zero_shot: false")


def _train_config(raw: dict[str, Any], model: str, source: str):
    from hybridbatch.training.image_text_config import image_text_config_from_dict

    raw.update(text_model=model, eval={"benchmarks": []})
    return image_text_config_from_dict(raw, source)


def _load_train_config(path: Path):
    from hybridbatch.training.image_text_config import load_image_text_config

    return load_image_text_config(path)


def _train(config, resume: bool) -> Path:
    from hybridbatch.training.image_text import train_image_text

    return train_image_text(config, resume=resume)  # resumed from its newest checkpoint (checkpoint.every)


def _load_benchmark(spec: str, config: CompareConfig):
    """The caption set of `spec`; its `@languages` are applied at evaluation."""
    from hybridbatch.training.image_text import load_caption_source

    return load_caption_source(parse_benchmark_spec(spec)[0])


def _load_model(run: GridRun, config: CompareConfig):
    """(dual encoder, "", ""): a trained run's model, or a baseline row's model as it is."""
    if run.train is None:  # a baseline row (grid_baselines.py): CLIP, BLIP-2 or a train-vl folder as is
        from hybridbatch.models.vl_baselines import load_baseline_model

        return load_baseline_model(run.model), "", ""
    from hybridbatch.models.image_text_dual_encoder import ImageTextDualEncoder

    return ImageTextDualEncoder.load(run.train_dir / "model"), "", ""


def _evaluate(run: GridRun, bench_spec: str, model, prefixes: tuple[str, str], benchmark,
              config: CompareConfig, progress: bool = False) -> None:
    from hybridbatch.evaluation.image_text import evaluate_image_text
    from hybridbatch.evaluation.outputs import write_evaluation

    evaluation = evaluate_image_text(model, benchmark, parse_benchmark_spec(bench_spec)[1],
                                     batch_size=config.eval.batch_size, show_progress=progress)
    evaluation.metrics.update({**run_fields(run), "skipped": benchmark.skipped})
    write_evaluation(evaluation, run.eval_dir(bench_spec))


def _describe_time(config: CompareConfig, tasks: list[Task]) -> str:
    return "no time estimate for image-text grids (see configs/compare/emoji.yaml for measured times)"


IMAGE_TEXT_RUNS = RunKind(
    name="image-text", default_samplers=tuple(IMAGE_TEXT_SAMPLERS), zero_shot_refused=ZERO_SHOT_REFUSED,
    baselines_allowed=True, train_config=_train_config, load_train_config=_load_train_config, train=_train,
    load_benchmark=_load_benchmark, load_model=_load_model, evaluate=_evaluate, describe_time=_describe_time)
