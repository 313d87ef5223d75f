"""`hybridbatch compare CONFIG [key=value ...]` and `hybridbatch demo`: run a grid, then report on it.

Running a grid is a loop over its runs (hybridbatch.experiments.runner): train what is not trained (resuming an
interrupted run), evaluate what is not evaluated, skip the rest; then write the report from whatever is
complete. One process owns an output folder at a time (`OUTPUT/.lock`). Exit codes: 0 done, 2 bad config or
data, 3 a non-finite loss stopped a run, 4 the output folder or a run folder is in use.
This module handles arguments and prints; it trains and evaluates nothing itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hybridbatch.cli.common import add_command, add_overrides

DESCRIPTION = __doc__.splitlines()[0]


def announce(config, runs) -> None:
    """Print how many tasks are left and about how long they take (on 2 CPU cores)."""
    from hybridbatch.experiments.grid import pending_tasks

    tasks = pending_tasks(config, runs)
    print(f"{len(tasks)} task(s) to do; output in {config.output_dir}")
    if tasks:
        try:
            print(config.run_kind.describe_time(config, tasks))
        except (OSError, ValueError) as exc:  # the estimate counts benchmark texts: no data, no estimate
            print(f"no time estimate: {exc}")


def dry_run(config) -> None:
    """Print every run with what is done, and what is left."""
    from hybridbatch.experiments.grid import expand, status_line

    runs = expand(config)
    for run in runs:
        print(status_line(run, config.benchmarks))
    announce(config, runs)


def _compare(args: argparse.Namespace) -> int:
    """Load the config; dry-run, or run the grid (under OUTPUT/.lock) and report."""
    from hybridbatch.experiments.grid import expand, load_compare_config
    from hybridbatch.experiments.report import collect, headline_table, write_report
    from hybridbatch.training.rundir import check_grid_folder, run_lock

    config = load_compare_config(args.config, args.overrides)
    # never the current folder or a folder of other files: the report and runs/ would land among them
    check_grid_folder(config.output_dir)
    if args.dry_run:
        dry_run(config)
        return 0
    if not args.report_only:  # a report alone reads finished files only: it may run beside a grid
        from hybridbatch.experiments.runner import run_grid
        from hybridbatch.retrieval.encode import set_threads

        set_threads()
        from hybridbatch.experiments.grid_preflight import preflight_grid

        preflight_grid(config)  # the data fits every run's sampler: refused before any model is loaded
        announce(config, expand(config))
        with run_lock(Path(config.output_dir)):
            run_grid(config, progress=not args.no_progress)
        if args.no_report:  # e.g. on a lent GPU machine: the small result files come home, the report is made there
            print(f"runs in {Path(config.output_dir) / 'runs'}; no report (--no-report): write it with --report-only")
            return 0
    else:  # a report of runs trained another way under this config's name would be silently wrong
        from hybridbatch.experiments.runner import refuse_config_drift

        refuse_config_drift(config)
    results = collect(config)
    md, html = write_report(config, results)
    print(headline_table(results))
    print(f"\nreport: {md}\n        {html}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    """The compare grid of configs/demo.yaml; a first positional with '=' is an override, not a config file."""
    from hybridbatch.experiments.demo import demo_config_path

    default = str(demo_config_path())
    if args.config is None:
        args.config = default
    elif "=" in args.config and not Path(args.config).is_file():  # `hybridbatch demo key=value`
        args.overrides.insert(0, args.config)
        args.config = default
    return _compare(args)


def _add_grid_arguments(p: argparse.ArgumentParser) -> None:
    add_overrides(p, "seeds=[0,1] train.steps=50")
    p.add_argument("--dry-run", action="store_true", help="list the runs and what is already done")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from the complete runs; train and evaluate nothing")
    p.add_argument("--no-report", action="store_true",
                   help="train and evaluate only; write the report later with --report-only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(log_progress=True)


def add_commands(sub) -> None:
    p = add_command(sub, "compare", _compare, description=DESCRIPTION,
                    help="train and evaluate a grid of runs from a compare config, then report")
    p.add_argument("config", help="YAML compare config (see configs/compare/xquad-full.yaml)")
    _add_grid_arguments(p)

    p = add_command(sub, "demo", _demo, description=DESCRIPTION,
                    help="the small compare grid of the README (configs/demo), end to end on CPU")
    p.add_argument("config", nargs="?", default=None,
                   help="compare config (default configs/demo.yaml of this source tree, else of the current folder)")
    _add_grid_arguments(p)
