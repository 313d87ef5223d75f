"""Training data and batch plan from a config, and the dry run that writes the plan without a model.

Kept free of torch and model imports on purpose: `dry_run` must be able to show a batch composition
(`RUN/batches.jsonl`) on a machine that cannot load the model, and the trainer reuses exactly this code so
that the dry-run file and the trained batches are the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridbatch.batching.plan import write_batch_log
from hybridbatch.batching.samplers import BatchSampler, make_sampler
from hybridbatch.data.languages import normalize_lang
from hybridbatch.data.parallel import ParallelGroup, language_sizes, load_groups_jsonl, restrict_languages
from hybridbatch.training.config import ConfigError, TrainConfig, save_config

log = logging.getLogger(__name__)

_VAL_STREAM = 0x76616C  # "val": the held-out split does not share a stream with the sampler
LAREQA_PREFIXES = ("xquad-r", "mlqa-r")


@dataclass(frozen=True)
class TrainingData:
    """Groups the sampler draws from, held-out validation groups, and what was dropped on the way."""

    train: list[ParallelGroup]
    val: list[ParallelGroup]
    languages: tuple[str, ...]
    language_sizes: dict[str, int]
    n_dropped: int

    def fingerprint(self) -> str:
        """sha256 of every training and validation text with its group and language: what `--resume` compares
        with the run's `data.sha256` (a data file edited between two sessions changes what is trained)."""
        import hashlib
        import json

        digest = hashlib.sha256()
        for part, groups in (("train", self.train), ("val", self.val)):
            for g in groups:
                digest.update(json.dumps([part, g.id, g.queries, g.positives, g.negatives], sort_keys=True,
                                         ensure_ascii=False).encode("utf-8"))
        return digest.hexdigest()

    def texts(self) -> list[str]:
        """Every training text (queries, positives, negatives), e.g. to build a tiny model's vocabulary."""
        out: list[str] = []
        for group in self.train:
            out.extend(group.queries.values())
            out.extend(group.positives.values())
            for texts in group.negatives.values():
                out.extend(texts)
        return out


def read_groups(source: str, data_dir: str | None = None) -> list[ParallelGroup]:
    """`xquad-r:train` / `mlqa-r:train` (article-disjoint halves), `mlqa-r`, or a parallel JSONL path."""
    bench, _, part = source.partition(":")
    if bench in LAREQA_PREFIXES:
        from hybridbatch.data.lareqa import SPLIT_RULE, load_lareqa_articles, split_articles
        from hybridbatch.data.parallel import groups_from_lareqa

        if bench == "xquad-r" and part not in ("train", ""):
            log.warning("training on %s: these questions are XQuAD-R test questions", source)
        if part not in ("train", "test", ""):
            raise ConfigError(f"data.source {source!r}: the parts are {bench}:train and {bench}:test")
        articles = load_lareqa_articles(bench, data_dir)
        if part:
            articles = split_articles(articles, part, by=SPLIT_RULE[bench])
        return groups_from_lareqa(articles)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"data.source {source!r} is neither a LAReQA spec ({', '.join(LAREQA_PREFIXES)}"
                          "[:train]) nor an existing JSONL file")
    return load_groups_jsonl(path)


def prepare_data(config: TrainConfig) -> TrainingData:
    """Load, restrict to the configured languages, hold out validation groups, check the batch fits."""
    groups = read_groups(config.data.source, config.data.data_dir)
    languages = tuple(normalize_lang(lang) for lang in config.data.languages)
    sizes = language_sizes(groups)
    empty = [lang for lang in languages if not sizes.get(lang)]
    if empty:
        raise ConfigError(f"data.languages {empty} have no data in {config.data.source} "
                          f"(languages present: {sorted(sizes)})")
    partial = config.sampler.group_languages == "available"
    kept, dropped = restrict_languages(groups, languages, at_least=min(2, len(languages)) if partial else None)
    if dropped:
        log.info("dropped %d of %d groups lacking %s %s", dropped, len(groups),
                 "two of" if partial else "one of", list(languages))
    train, val = split_validation(kept, config.early_stopping.val_fraction, config.seed)
    if config.batch_size > len(train):
        raise ConfigError(f"batch_size {config.batch_size} is larger than the number of training groups "
                          f"({len(train)} after restricting to {list(languages)} and holding out {len(val)})")
    return TrainingData(train, val, languages, sizes, dropped)


def split_validation(groups: list[ParallelGroup], fraction: float,
                     seed: int) -> tuple[list[ParallelGroup], list[ParallelGroup]]:
    """A seeded held-out subset (at least 1 group when `fraction` > 0); both parts keep the file order."""
    if not fraction:
        return list(groups), []
    n_val = max(1, round(fraction * len(groups)))
    if n_val >= len(groups):
        raise ConfigError(f"early_stopping.val_fraction {fraction} leaves no training groups")
    held = set(np.random.default_rng([seed, _VAL_STREAM]).permutation(len(groups))[:n_val].tolist())
    return ([g for i, g in enumerate(groups) if i not in held], [g for i, g in enumerate(groups) if i in held])


def build_sampler(config: TrainConfig, data: TrainingData) -> BatchSampler:
    try:
        return make_sampler(config.sampler.name, data.train, data.languages, config.batch_size, config.seed,
                            alpha=config.sampler.alpha, hard_negatives=config.data.hard_negatives,
                            language_weighting=config.sampler.language_weighting,
                            language_sizes=data.language_sizes,
                            group_languages=config.sampler.group_languages)
    except ValueError as exc:
        raise ConfigError(f"sampler: {exc}") from exc


def total_batches(config: TrainConfig) -> int:
    """Sampler batches a full run consumes: each optimizer step takes `grad_accum` of them."""
    return config.steps * config.grad_accum


def dry_run(config: TrainConfig) -> Path:
    """Write RUN/config.yaml and RUN/batches.jsonl (the full plan) without loading a model; returns the folder.

    A folder that holds a run (checkpoints, metrics, a model) is never written: the plan then goes to
    `RUN.dry-run/` beside it (`rundir.dry_run_folder`). What preflight checks (output folder, benchmarks) is
    checked here too."""
    from hybridbatch.training.preflight import check_benchmarks
    from hybridbatch.training.rundir import dry_run_folder, run_lock

    data = prepare_data(config)
    sampler = build_sampler(config, data)
    check_benchmarks(config.eval.benchmarks, config.data.data_dir)
    run_dir = dry_run_folder(config.run_dir)
    if run_dir != config.run_dir:
        log.warning("%s holds a run: the dry run writes its plan to %s", config.run_dir, run_dir)
    with run_lock(run_dir):  # never rewrite the plan of a run in progress
        save_config(config, run_dir)
        summary = write_batch_log(run_dir / "batches.jsonl", sampler, data.train, total_batches(config))
    log.info("dry run: %d batches over %d groups (%d held out); mix %s", summary["batches"], len(data.train),
             len(data.val), summary["types"])
    return run_dir
