"""What the trainer measures besides its training loss: validation loss and benchmark evaluations.

Both run the model in eval mode and without gradients, and consume no random numbers, so adding them
to a run does not change its training trajectory (a resumed run and an uninterrupted one stay equal).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from hybridbatch.batching.samplers import make_sampler
from hybridbatch.data.parallel import ParallelGroup
from hybridbatch.training.config import TrainConfig
from hybridbatch.training.step import ChunkEncoder, LossSettings, global_batch_loss

log = logging.getLogger(__name__)


def validation_loss(model, groups: Sequence[ParallelGroup], config: TrainConfig, languages: Sequence[str],
                    settings: LossSettings, device: torch.device) -> float:
    """Mean InfoNCE over a fixed plan of the held-out groups (same sampler, epoch 0, seed of the run).

    Every process computes it whole on its own: the held-out set is small and this needs no collective.
    """
    batch_size = min(config.batch_size, len(groups))
    partial = config.sampler.group_languages
    if partial == "available":  # the held-out languages; a mono batch in X needs batch_size groups having X
        having = {lang: sum(lang in g.languages for g in groups) for lang in languages}
        languages = [lang for lang in languages if having[lang]]
        batch_size = min(batch_size, *(having[lang] for lang in languages))
    sampler = make_sampler(config.sampler.name, groups, languages, batch_size, config.seed,
                           alpha=config.sampler.alpha, hard_negatives=config.data.hard_negatives,
                           group_languages=partial)
    encoder = ChunkEncoder(model)
    was_training = model.training
    model.eval()
    losses = []
    with torch.no_grad():
        for batch in sampler.iter_batches(total_steps=sampler.steps_per_epoch):
            losses.append(float(global_batch_loss(encoder, model, batch, groups, settings, device=device)))
    model.train(was_training)
    return sum(losses) / len(losses)


def summarize(metrics: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of an `Evaluation.metrics`: MAP per setting and the rank distance."""
    out: dict[str, float] = {}
    for setting in ("monolingual", "crosslingual", "multilingual"):
        block = metrics.get(setting)
        if block:
            out[f"{setting}_map"] = float(block["map"])
    multi = metrics.get("multilingual") or {}
    if "rank_distance" in multi:
        out["rank_distance"] = float(multi["rank_distance"])
    return out


class BenchmarkEvaluator:
    """Evaluates a model on the configured benchmarks; each benchmark is loaded once per run."""

    def __init__(self, specs: Sequence[str], data_dir: str | None, query_prefix: str, passage_prefix: str,
                 batch_size: int):
        self.specs = list(specs)
        self.data_dir = data_dir
        self.prefixes = (query_prefix, passage_prefix)
        self.batch_size = batch_size
        self._loaded: dict[str, Any] = {}

    def __call__(self, model, out_dir: Path) -> dict[str, dict[str, float]]:
        """{benchmark: summary}; full results (metrics.json, runs) go under `out_dir/<benchmark>`."""
        from hybridbatch.evaluation.run import evaluate_model, load_benchmark

        results = {}
        was_training = model.training
        for spec in self.specs:
            if spec not in self._loaded:
                self._loaded[spec] = load_benchmark(spec, data_dir=self.data_dir)
            target = out_dir / (Path(spec).name if Path(spec).is_dir() else spec.replace(":", "-"))
            evaluation = evaluate_model(model, self._loaded[spec], out_dir=target, query_prefix=self.prefixes[0],
                                        passage_prefix=self.prefixes[1], batch_size=self.batch_size,
                                        show_progress=False)
            results[spec] = summarize(evaluation.metrics)
            log.info("eval %s: %s", spec, results[spec])
        model.train(was_training)
        return results
