"""Running a compare grid: train what is not trained, evaluate what is not evaluated, skip the rest.

The loop over `pending_tasks` (grid.py): a run interrupted mid-training is resumed, a run (re)trained now loses
its old evaluations, every benchmark an evaluation needs is loaded before any training (a wrong name fails in
seconds, not after hours), and one model is in memory at a time. How a run is trained, loaded and evaluated is
its kind's (`run.kind`: run_kind.py, run_kind_image_text.py). This module parses no command line and prints
nothing but its progress bar; the lock on the output folder, the report and the messages are the command's
(hybridbatch.cli.compare).
"""

from __future__ import annotations

import gc
import logging
import shutil

from hybridbatch.experiments.grid import (
    CompareConfig,
    GridRun,
    Task,
    benchmark_label,
    config_drift,
    expand,
    is_started,
    pending_tasks,
)

log = logging.getLogger("hybridbatch.compare")


def train_run(run: GridRun) -> None:
    """Train, or resume an interrupted run; then drop its old evaluations (they scored other weights)."""
    resume = is_started(run)
    if resume:
        log.warning("%s was interrupted: resuming it", run.name)
    run.kind.train(run.train, resume)
    shutil.rmtree(run.folder / "eval", ignore_errors=True)


def load_run_model(run: GridRun, config: CompareConfig):
    """(model, query prefix, passage prefix) of a trained run, or of a row evaluated as it is."""
    return run.kind.load_model(run, config)


def evaluate_run(run: GridRun, bench_spec: str, model, prefixes: tuple[str, str], benchmark,
                 config: CompareConfig, progress: bool = False) -> None:
    """Write run/eval/<benchmark>/ (metrics.json last, so its presence marks a finished evaluation)."""
    run.kind.evaluate(run, bench_spec, model, prefixes, benchmark, config, progress)


def load_grid_benchmark(spec: str, config: CompareConfig):
    """A text benchmark, or for image-text grids the caption set (its `@languages` applied at evaluation)."""
    return config.run_kind.load_benchmark(spec, config)


def refuse_config_drift(config: CompareConfig, runs=None) -> None:
    """ConfigError if a run folder of the grid was trained with another training config than the grid's: neither
    reused by a run nor reported (`--report-only`) under the grid's config."""
    drifted = {run.name: drift for run in (expand(config) if runs is None else runs) if (drift := config_drift(run))}
    if drifted:
        from hybridbatch.training.config import ConfigError

        raise ConfigError(f"run folders under {config.output_dir} were trained with another config: "
                          f"{drifted}; choose another output_dir or delete those runs")


def run_grid(config: CompareConfig, progress: bool = True) -> list[Task]:
    """Do every task `pending_tasks` lists (a progress bar counts them); returns the tasks done."""
    from tqdm.auto import tqdm

    runs = expand(config)
    refuse_config_drift(config, runs)
    tasks = pending_tasks(config, runs)
    # every benchmark an evaluation task needs, loaded once and before any training: a wrong name or a damaged
    # file fails in seconds, not after hours of training
    benchmarks = {bench: load_grid_benchmark(bench, config)
                  for bench in dict.fromkeys(bench for kind, _, bench in tasks if kind != "train")}
    loaded_for, loaded = None, None  # the model of one run at a time: (model, query prefix, passage prefix)
    bar = tqdm(total=len(tasks), desc="grid", unit="task", disable=not progress)
    for kind, run, bench in tasks:
        bar.set_postfix_str(f"{kind} {run.name}" + (f" on {benchmark_label(bench)}" if bench else ""))
        if kind == "train":
            train_run(run)
        else:
            if loaded_for != run.name:
                loaded = None
                gc.collect()  # free the previous model before loading the next
                loaded_for, loaded = run.name, load_run_model(run, config)
            evaluate_run(run, bench, loaded[0], loaded[1:], benchmarks[bench], config, progress)
        bar.update(1)
    bar.close()
    return tasks
