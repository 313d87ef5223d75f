"""Checks before a compare grid starts, so that what can be foreseen fails in seconds, not after the
zero-shot rows are evaluated.

Checks the grid's output folder (a compare folder or a new one, writable) and that the training data every
trained run shares fits every run's sampler (`check_data`: every language has data, a batch fits in the
training groups, the sampler accepts its settings); loads no model. The checks of one training run (folder, disk,
languages, data, benchmarks) are `hybridbatch.training.preflight`'s; this module only applies them across a
grid. Errors are `PreflightError` (a `ConfigError`: exit code 2, nothing trained).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridbatch.experiments.grid import CompareConfig, expand
from hybridbatch.training.config import TrainConfig
from hybridbatch.training.preflight import check_languages, check_writable

if TYPE_CHECKING:
    from hybridbatch.training.training_data import TrainingData


def check_data(config: TrainConfig) -> TrainingData:
    """Load the training data and build the sampler as the trainer will, without a model: raises what the
    trainer would raise (languages without data, batch larger than the groups, bad sampler settings)."""
    from hybridbatch.training.training_data import build_sampler, prepare_data

    check_languages(config)
    data = prepare_data(config)
    build_sampler(config, data)
    return data


def preflight_grid(config: CompareConfig) -> None:
    """Before a grid: its output folder is writable, and the shared training data fits every run's sampler
    (checked once, on the data every trained run shares; no model is loaded)."""
    from hybridbatch.training.rundir import check_grid_folder
    from hybridbatch.training.training_data import build_sampler

    check_grid_folder(config.output_dir)
    check_writable(config.output_dir)
    trained = [run for run in expand(config) if isinstance(run.train, TrainConfig)]
    if not trained:
        return
    data = check_data(trained[0].train)
    checked = {(trained[0].train.sampler.name, trained[0].train.sampler.alpha)}
    for run in trained[1:]:
        key = (run.train.sampler.name, run.train.sampler.alpha)
        if key not in checked:
            checked.add(key)
            build_sampler(run.train, data)
