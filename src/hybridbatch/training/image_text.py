"""Training an image-text dual encoder with the language-aware samplers of the text side.

Each image is a `ParallelGroup` whose "query" and "positive" in language X are its (first) caption in X, so
the text side's samplers apply unchanged; what each batch type pairs in the loss (the image-text X-Y: `cross`
adds a caption of the same image in a language Y != X as a cross-lingual positive, `mixed-same` mixes
languages without such pairs) is defined in `training/image_text_batches.py`. `hybrid` picks mono or cross
per batch, `en-en` is English captions only (the CLIP-style English-only row). No image appears twice in a
batch (a group is drawn once per batch). The loss is CLIP's symmetric InfoNCE with a learned logit scale.

CPU economics: in the locked-image (LiT) mode the image tower's features are computed once per image and cached
(`cache_root()/image-features`), so a step costs one text-tower forward/backward on short captions.

As for text runs: the output folder is a run folder or a new one (never the current folder or a folder of
other files), the evaluation caption sets are loaded before training, a dry run never writes into a folder
that holds a run (`RUN.dry-run/` then), and no model with a non-finite weight is saved.
Checkpoints (`checkpoint.every`) and `resume=True` follow the text trainer (`training/image_text_checkpoint.py`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hybridbatch.batching.plan import write_batch_log
from hybridbatch.batching.samplers import make_sampler
from hybridbatch.data.captions import CaptionSet
from hybridbatch.data.names import resolve_caption_set
from hybridbatch.data.parallel import ParallelGroup
from hybridbatch.io import atomic_write, write_json
from hybridbatch.training.checkpoint import nonfinite_tensors
from hybridbatch.training.config import ConfigError
from hybridbatch.training.image_text_batches import batch_loss_terms, image_text_batch_log
from hybridbatch.training.image_text_config import ImageTextConfig
from hybridbatch.training.precision import autocast_forward, step_precision
from hybridbatch.training.rundir import (
    METRICS,
    MetricsLog,
    check_fresh,
    check_output_folder,
    dry_run_folder,
    run_lock,
)

log = logging.getLogger(__name__)


class NonFiniteImageTextLoss(RuntimeError):
    """The loss, the learning rate or a weight became NaN/inf; the message names the batch or the weights."""


# --------------------------------------------------------------------------------------------- data
# the name the commands, the grid and `hybridbatch explore` import; every caption-set name is resolved in data/names.py
load_caption_source = resolve_caption_set


def caption_groups(cs: CaptionSet, languages: list[str]) -> tuple[list[ParallelGroup], list[str], int]:
    """One group per image that has a caption in every training language; (groups, image ids, dropped)."""
    by_image = cs.captions_by_image()
    groups, image_ids, dropped = [], [], 0
    for image in cs.images:
        caps = by_image.get(image.id, {})
        if not all(lang in caps for lang in languages):
            dropped += 1
            continue
        texts = {lang: caps[lang][0].text for lang in languages}
        groups.append(ParallelGroup(image.id, texts, texts))
        image_ids.append(image.id)
    return groups, image_ids, dropped


def cached_raw_features(model, cs: CaptionSet, image_ids: list[str], batch_size: int = 32) -> np.ndarray:
    """The frozen image tower's features of `image_ids`, computed once per (tower, image set) and cached."""
    from hybridbatch.data.images import open_image
    from hybridbatch.paths import cache_dir

    source = {i.id: i.source for i in cs.images}
    key = hashlib.sha256(json.dumps([model.image_tower.describe(), cs.name, image_ids], sort_keys=True,
                                    default=str).encode()).hexdigest()[:20]
    path = cache_dir("image-features") / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    parts = []  # decoded a batch at a time: thousands of decoded images at once held GBs (eval-vl does the same)
    for start in range(0, len(image_ids), batch_size):
        images = [open_image(source[i], where=f"{cs.name}: image {i}") for i in image_ids[start:start + batch_size]]
        parts.append(np.asarray(model.raw_image_features(images, batch_size=batch_size), dtype=np.float32))
        del images  # released before the next batch is decoded
    raw = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    with atomic_write(path, "wb") as handle:
        np.save(handle, raw)
    return raw


# --------------------------------------------------------------------------------------------- model
def build_dual_encoder(config: ImageTextConfig):
    from hybridbatch.models.image_text_dual_encoder import ImageTextDualEncoder
    from hybridbatch.models.image_towers import build_image_tower
    from hybridbatch.models.registry import load_sentence_transformer
    from hybridbatch.training.components import freeze_word_embeddings

    text = load_sentence_transformer(config.text_model)
    text.max_seq_length = config.max_seq_length
    if config.freeze_word_embeddings:
        freeze_word_embeddings(text)
    if not config.train_text_tower:
        for p in text.parameters():
            p.requires_grad_(False)
    tower = build_image_tower(config.image_tower)
    return ImageTextDualEncoder(text, tower, embed_dim=config.embed_dim, lock_image=config.lock_image)


def make_optimizer(model, config: ImageTextConfig):
    head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(("text_model.",
                                                                                           "image_tower."))]
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": head, "lr": config.head_lr, "weight_decay": 0.0}]
    if body:
        groups.append({"params": body, "lr": config.lr, "weight_decay": config.weight_decay})
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(groups)
    return optimizer, get_linear_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)


# --------------------------------------------------------------------------------------------- training
def _plan(config: ImageTextConfig, folder: Path | None = None):
    """Data, groups and sampler, checked before any model is loaded; writes config.yaml and batches.jsonl
    (into `folder`, by default the run folder)."""
    cs = resolve_caption_set(config.data.source)
    groups, image_ids, dropped = caption_groups(cs, config.data.languages)
    try:
        sampler = make_sampler(config.sampler.name, groups, config.data.languages, config.batch_size,
                               config.seed, alpha=config.sampler.alpha,
                               language_weighting=config.sampler.language_weighting)
    except ValueError as exc:
        raise ConfigError(f"sampler: {exc} ({len(groups)} images have captions in all of "
                          f"{config.data.languages}; {dropped} do not)") from exc
    folder = config.run_dir if folder is None else folder
    with atomic_write(folder / "config.yaml") as handle:
        handle.write(config.to_yaml())
    write_batch_log(folder / "batches.jsonl", sampler, groups, config.steps, line=image_text_batch_log)
    return cs, groups, image_ids, dropped, sampler


def load_eval_sets(config: ImageTextConfig) -> dict[str, CaptionSet]:
    """Every `eval.benchmarks` caption set, loaded before training (a wrong name fails in seconds)."""
    return {spec: resolve_caption_set(spec) for spec in config.eval.benchmarks}


def dry_run_image_text(config: ImageTextConfig) -> Path:
    """RUN/config.yaml and RUN/batches.jsonl (the whole plan) without loading a model; returns the folder.
    A folder that holds a run is never written: the plan then goes to RUN.dry-run/ beside it."""
    folder = dry_run_folder(config.run_dir)
    load_eval_sets(config)
    folder.mkdir(parents=True, exist_ok=True)
    _plan(config, folder)
    return folder


def train_image_text(config: ImageTextConfig, resume: bool = False) -> Path:
    """Train as configured; RUN/ gets config.yaml, batches.jsonl, metrics.jsonl, checkpoints/ (with
    `checkpoint.every`), model/, eval/<benchmark>/, and summary.json last (its presence marks a finished run).

    `resume`: continue from the newest verified checkpoint of RUN (from step 0 when there is none); the config
    may differ only in `eval.` and `checkpoint.` keys."""
    from hybridbatch.training.image_text_checkpoint import check_same_config

    run_dir = config.run_dir
    check_output_folder(run_dir)
    with run_lock(run_dir):
        if resume:
            check_same_config(run_dir, config)
        else:
            check_fresh(run_dir)
        eval_sets = load_eval_sets(config)
        cs, groups, image_ids, dropped, sampler = _plan(config)
        torch.manual_seed(config.seed)
        model = build_dual_encoder(config)
        started = time.perf_counter()
        raw = torch.from_numpy(cached_raw_features(model, cs, image_ids))  # (n_images, tower_dim)
        feature_s = time.perf_counter() - started
        log.info("%d training images (%d without every language), features in %.1fs", len(groups), dropped,
                 feature_s)
        summary = _loop(model, config, sampler, groups, raw, run_dir, resume)
        summary.update({"images": len(groups), "images_dropped": dropped, "feature_s": round(feature_s, 2)})
        bad = nonfinite_tensors([*model.named_parameters(), *model.named_buffers()])
        if bad:
            raise NonFiniteImageTextLoss(f"non-finite weights before saving the model: {bad[:5]}; no model saved")
        model.save(run_dir / "model")
        evals = evaluate_benchmarks(model, config, run_dir, eval_sets)
        write_json(run_dir / "summary.json", {**summary, "evaluations": evals})  # last: marks a finished run
    return run_dir


def _loop(model, config: ImageTextConfig, sampler, groups, raw: torch.Tensor, run_dir: Path,
          resume: bool = False) -> dict:
    from hybridbatch.training.image_text_checkpoint import (
        latest_image_text_state,
        restore_image_text_state,
        save_image_text_checkpoint,
    )

    optimizer, scheduler = make_optimizer(model, config)
    precision = step_precision(config.precision, model.device)
    state = latest_image_text_state(run_dir) if resume else None
    done = restore_image_text_state(state, model, optimizer, scheduler, run_dir) if state is not None else 0
    metrics = MetricsLog(run_dir / METRICS, keep_until_step=done)
    model.train()
    if config.lock_image:
        model.image_tower.eval()
    t0 = time.perf_counter()
    bar = tqdm(total=config.steps, initial=done, desc="train", unit="step")
    last = float("nan") if state is None else state.state.get("last_loss", float("nan"))
    try:
        for batch in sampler.iter_batches(*sampler.position(done), total_steps=config.steps):
            step_start = time.perf_counter()
            with autocast_forward(model.text_model, precision, model.device):  # one region per step
                terms = batch_loss_terms(model, batch, groups, raw, config.text_text_weight,
                                         config.image_second_caption_weight)
            loss = terms["total"]
            if not torch.isfinite(loss):
                raise NonFiniteImageTextLoss(
                    f"step {batch.global_step}: loss is {loss.item()} on a {batch.type} batch; caption languages "
                    f"{sorted(set(batch.query_langs))}, images {[groups[g].id for g in batch.groups][:8]}...")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not all(math.isfinite(x) for x in scheduler.get_last_lr()):
                raise NonFiniteImageTextLoss(f"step {batch.global_step}: learning rates {scheduler.get_last_lr()} "
                                             "are not finite; stopped before updating the weights")
            optimizer.step()
            bad = nonfinite_tensors([(n, p) for n, p in model.named_parameters() if p.requires_grad])
            if bad:
                raise NonFiniteImageTextLoss(f"step {batch.global_step}: non-finite weights after the update: "
                                             f"{bad[:5]}; stopped, no model saved")
            scheduler.step()
            last = float(loss.item())
            record = {"step": batch.global_step + 1, "loss": last, "type": batch.type,
                      "logit_scale": float(terms["logit_scale"].item()), "lr": scheduler.get_last_lr()[-1],
                      "step_s": round(time.perf_counter() - step_start, 4)}
            record.update({f"{name}_loss": float(value.item()) for name, value in terms.items()
                           if name not in ("total", "logit_scale")})
            metrics.write(record)
            bar.update(1)
            bar.set_postfix(loss=f"{last:.3f}", type=batch.type)
            steps_done = batch.global_step + 1
            if config.checkpoint.every and steps_done % config.checkpoint.every == 0:
                save_image_text_checkpoint(run_dir, steps_done, model, optimizer, scheduler, sampler,
                                           config.checkpoint.keep_last, {"last_loss": last})
    finally:
        bar.close()
        metrics.close()
    model.eval()
    wall = time.perf_counter() - t0
    return {"steps": config.steps, "final_loss": last, "train_s": round(wall, 2),
            "step_s": round(wall / max(config.steps - done, 1), 4), "resumed_from_step": done}


def evaluate_benchmarks(model, config: ImageTextConfig, run_dir: Path,
                        eval_sets: dict[str, CaptionSet] | None = None) -> dict:
    from hybridbatch.evaluation.image_text import evaluate_image_text
    from hybridbatch.evaluation.outputs import write_evaluation

    out = {}
    for spec in config.eval.benchmarks:
        cs = eval_sets[spec] if eval_sets and spec in eval_sets else resolve_caption_set(spec)
        evaluation = evaluate_image_text(model, cs, config.eval.languages or None,
                                         batch_size=config.eval.batch_size)
        evaluation.metrics["model"] = str(run_dir / "model")
        write_evaluation(evaluation, run_dir / "eval" / spec.replace(":", "-").replace("/", "_"))
        out[spec] = {s: (evaluation.metrics[s] or {}).get("map") for s in ("monolingual", "crosslingual",
                                                                          "multilingual")}
        out[spec]["rank_distance"] = (evaluation.metrics["multilingual"] or {}).get("rank_distance", math.nan)
    return out
