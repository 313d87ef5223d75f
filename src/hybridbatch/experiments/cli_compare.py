"""`hybridbatch compare CONFIG [key=value ...]` and `hybridbatch demo`: run a grid, then report on it.

Running a grid is a loop over its runs: train what is not trained (resuming an interrupted run), evaluate
what is not evaluated, skip the rest; then write the report from whatever is complete. One process owns an
output folder at a time (`OUTPUT/.lock`). Exit codes: 0 done, 2 bad config or data, 3 a non-finite loss
stopped a run, 4 the output folder or a run folder is in use.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import sys
from pathlib import Path

from hybridbatch.experiments.grid import (
    CompareConfig,
    GridRun,
    Task,
    benchmark_label,
    config_drift,
    expand,
    is_started,
    load_benchmark_spec,
    load_compare_config,
    pending_tasks,
    status_line,
    train_config,
)


# --------------------------------------------------------------------------------------------- running
def train_run(run: GridRun) -> None:
    """Train, or resume an interrupted run; then drop its old evaluations (they scored other weights)."""
    from hybridbatch.training.trainer import train

    resume = is_started(run)
    if run.train.__class__.__name__ == "ImageTextConfig":
        from hybridbatch.training.image_text import train_image_text

        if resume:  # from its newest checkpoint (checkpoint.every), else from step 0
            logging.getLogger("hybridbatch.compare").warning("%s was interrupted: resuming it", run.name)
        train_image_text(run.train, resume=resume)
        shutil.rmtree(run.folder / "eval", ignore_errors=True)
        return
    if resume:
        logging.getLogger("hybridbatch.compare").warning("%s was interrupted: resuming it", run.name)
    train(run.train, resume=resume)
    shutil.rmtree(run.folder / "eval", ignore_errors=True)


def load_run_model(run: GridRun, config: CompareConfig):
    """(SentenceTransformer, query prefix, passage prefix) of a trained run or of its base model."""
    import torch

    from hybridbatch.models.registry import load_sentence_transformer, resolve_model

    if config.kind == "image-text":
        from hybridbatch.models.dual_encoder import ImageTextDualEncoder

        if run.train is None:  # a baseline row (grid_baselines.py): CLIP, BLIP-2 or a train-vl folder as is
            from hybridbatch.experiments.grid_baselines import load_baseline_model

            return load_baseline_model(run.model), "", ""
        return ImageTextDualEncoder.load(run.train_dir / "model"), "", ""
    target = str(run.train_dir / "model") if run.train is not None else run.model
    if target == "tiny":  # the trainer's convention: a tiny BERT built on the training texts
        from hybridbatch.training.components import tiny_model_path
        from hybridbatch.training.data import prepare_data

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


def evaluate_run(run: GridRun, bench_spec: str, model, prefixes: tuple[str, str], benchmark,
                 config: CompareConfig, progress: bool = False) -> None:
    """Write run/eval/<benchmark>/ (metrics.json last, so its presence marks a finished evaluation)."""
    from hybridbatch.evaluation.run import evaluate_model

    if config.kind == "image-text":
        from hybridbatch.evaluation.image_text import evaluate_image_text
        from hybridbatch.evaluation.report import write_evaluation
        from hybridbatch.experiments.grid import parse_benchmark_spec

        evaluation = evaluate_image_text(model, benchmark, parse_benchmark_spec(bench_spec)[1],
                                         batch_size=config.eval.batch_size, show_progress=progress)
        evaluation.metrics.update({"model": run.model, "run": run.name, "system": run.system, "seed": run.seed,
                                   "skipped": benchmark.skipped})
        write_evaluation(evaluation, run.eval_dir(bench_spec))
        return

    evaluate_model(model, benchmark, run.eval_dir(bench_spec), prefixes[0], prefixes[1],
                   batch_size=config.eval.batch_size, show_progress=progress,
                   extra={"model": run.model, "run": run.name, "system": run.system, "seed": run.seed,
                          "skipped": benchmark.skipped})


def run_grid(config: CompareConfig, progress: bool = True) -> list[Task]:
    """Do every task `pending_tasks` lists (a progress bar counts them); returns the tasks done."""
    from tqdm.auto import tqdm

    runs = expand(config)
    drifted = {run.name: drift for run in runs if (drift := config_drift(run))}
    if drifted:
        from hybridbatch.training.config import ConfigError

        raise ConfigError(f"run folders under {config.output_dir} were trained with another config: "
                          f"{drifted}; choose another output_dir or delete those runs")
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


def load_grid_benchmark(spec: str, config: CompareConfig):
    """A text benchmark, or for image-text grids the caption set (its `@languages` applied at evaluation)."""
    if config.kind == "image-text":
        from hybridbatch.experiments.grid import parse_benchmark_spec
        from hybridbatch.training.image_text import load_caption_source

        return load_caption_source(parse_benchmark_spec(spec)[0])
    return load_benchmark_spec(spec, config.data_dir)


# --------------------------------------------------------------------------------------------- commands
def build_parser(prog: str, config_help: str, default: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?" if default else None, default=default, help=config_help)
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, values read as YAML: seeds=[0,1] train.steps=50")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and what is already done")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the complete runs; train and evaluate nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _split_config_arg(args: argparse.Namespace, default: str | None) -> None:
    """`hybridbatch demo key=value`: a first positional with '=' is an override, not a config file."""
    if default and args.config and "=" in args.config and not Path(args.config).is_file():
        args.overrides.insert(0, args.config)
        args.config = default


def announce(config: CompareConfig, runs: list[GridRun]) -> None:
    """Print how many tasks are left and about how long they take (on 2 CPU cores)."""
    from hybridbatch.experiments.demo import describe_estimate, estimate_seconds

    tasks = pending_tasks(config, runs)
    print(f"{len(tasks)} task(s) to do; output in {config.output_dir}")
    if tasks and config.kind == "image-text":
        print("no time estimate for image-text grids (see configs/emoji-compare.yaml for measured times)")
    elif tasks:
        try:
            print(describe_estimate(estimate_seconds(config, tasks)))
        except (OSError, ValueError) as exc:  # the estimate counts benchmark texts: no data, no estimate
            print(f"no time estimate: {exc}")


def dry_run(config: CompareConfig) -> None:
    """Print every run with what is done, and what is left."""
    runs = expand(config)
    for run in runs:
        print(status_line(run, config.benchmarks))
    announce(config, runs)


def run_command(args: argparse.Namespace) -> int:
    """Load the config; dry-run, or run the grid (under OUTPUT/.lock) and report. Returns the exit code."""
    from hybridbatch.exit_codes import report_error
    from hybridbatch.experiments.report import collect, headline_table, write_report
    from hybridbatch.training.rundir import check_grid_folder, run_lock

    try:
        config = load_compare_config(args.config, args.overrides)
        # never the current folder or a folder of other files: the report and runs/ would land among them
        check_grid_folder(config.output_dir)
        if args.dry_run:
            dry_run(config)
            return 0
        if not args.report_only:  # a report alone reads finished files only: it may run beside a grid
            from hybridbatch.retrieval.encode import set_threads

            set_threads()
            from hybridbatch.training.preflight import preflight_grid

            preflight_grid(config)  # the data fits every run's sampler: refused before any model is loaded
            announce(config, expand(config))
            with run_lock(Path(config.output_dir)):
                run_grid(config, progress=not args.no_progress)
        results = collect(config)
        md, html = write_report(config, results)
    except Exception as exc:  # noqa: BLE001 - one table maps every exception to its exit code
        return report_error(exc)
    print(headline_table(results))
    print(f"\nreport: {md}\n        {html}")
    return 0


def _setup_logging() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from the tokenizers
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def main_compare(argv: list[str]) -> int:
    _setup_logging()
    parser = build_parser("hybridbatch compare", "YAML compare config (see configs/compare-full.yaml)")
    args = parser.parse_intermixed_args(argv)
    return run_command(args)


def main_demo(argv: list[str]) -> int:
    from hybridbatch.experiments.demo import demo_config_path

    _setup_logging()
    default = str(demo_config_path())
    parser = build_parser("hybridbatch demo", f"compare config (default {default})", default)
    args = parser.parse_intermixed_args(argv)
    _split_config_arg(args, default)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main_compare(sys.argv[1:]))
