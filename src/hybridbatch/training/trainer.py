"""The training loop: language-aware batches, gathered in-batch InfoNCE, exact resume.

`train(config)` runs on one process or under `accelerate launch` / torchrun with N processes. All
processes walk the same batch plan (a pure function of seed, epoch and step), each encodes its shard,
and all compute the same global loss; so every decision (skip a non-finite step, stop early) is taken
identically everywhere without extra communication. Only the main process writes to the run folder.

No model with a non-finite weight is saved as trained: a non-finite learning rate stops the run before
any update (whatever `nonfinite_loss` says: it is not one bad batch), the weights are checked after every
update (one sum per tensor, about 50 ms for me5-small's 118M weights on one CPU thread, under 1% of a
step) and again before the final save; either failure is `NonFiniteWeights` (exit code 3). The model is
saved before the final evaluation, so a failing evaluation never loses the trained weights.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from hybridbatch.batching.plan import write_batch_log
from hybridbatch.io import atomic_write, write_json
from hybridbatch.models.embeddinggemma import base_license
from hybridbatch.training import checkpoint as ckpt
from hybridbatch.training.components import load_model, make_accelerator, make_optimizer, make_scheduler
from hybridbatch.training.config import ConfigError, TrainConfig, config_differences, load_config, save_config
from hybridbatch.training.periodic_eval import BenchmarkEvaluator, validation_loss
from hybridbatch.training.precision import autocast_forward, step_precision
from hybridbatch.training.rundir import (
    BATCHES,
    DATA_FINGERPRINT,
    METRICS,
    MetricsLog,
    check_fresh,
    model_card,
    run_lock,
    save_model_folder,
    write_model_card,
)
from hybridbatch.training.step import ChunkEncoder, LossSettings, global_batch_loss
from hybridbatch.training.training_data import build_sampler, prepare_data

log = logging.getLogger(__name__)

# Keys that may change on resume: they do not change what is trained.
RESUMABLE_CHANGES = ("eval.", "checkpoint.", "log_every")
BEST = "best-model.pt"
DATA_CONTENTS = "data (contents: sha256 of every training text)"  # a change --resume refuses without --force
CONFIG_CHANGES = "config_changes.jsonl"  # what `--resume --force` changed, and from which step


class NonFiniteLoss(RuntimeError):
    """The loss or gradient became NaN/inf and `nonfinite_loss: stop` was configured."""


class NonFiniteWeights(NonFiniteLoss):
    """The learning rate or a weight is NaN/inf: the run stops (under either policy) and saves no model."""


def train(config: TrainConfig, resume: bool = False, force: bool = False) -> Path:
    """Train as configured; returns the run folder (with model/, metrics.jsonl, batches.jsonl).

    `force` resumes even when keys that change what is trained differ from the run's config.yaml; the
    differences are appended to RUN/config_changes.jsonl (see `Trainer._check_same_config`)."""
    from hybridbatch.training.preflight import preflight_training

    accelerator = make_accelerator()
    if accelerator.is_main_process:
        preflight_training(config)  # language codes, a writable output folder: before anything is loaded
    lock = run_lock(config.run_dir) if accelerator.is_main_process else nullcontext()
    with lock:
        return Trainer(config, accelerator).run(resume, force)


class Trainer:
    def __init__(self, config: TrainConfig, accelerator):
        self.config = config
        self.acc = accelerator
        self.run_dir = config.run_dir
        self.main = accelerator.is_main_process
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.data = prepare_data(config)
        self.sampler = build_sampler(config, self.data)
        if config.batch_size % self.world:
            raise ConfigError(f"batch_size {config.batch_size} is not divisible by the {self.world} processes")
        self.step = 0  # optimizer steps done
        self.stopping: dict[str, Any] = {"best": None, "best_step": None, "bad": 0, "stopped": False}
        self.evals: dict[str, Any] = {}

    # ----------------------------------------------------------------------------------------- setup
    def _setup(self, resume: bool, force: bool = False) -> ckpt.CheckpointState | None:
        from accelerate.utils import set_seed

        state, changes = None, None
        if resume:
            changes = self._check_same_config(force)
            path = ckpt.latest_checkpoint(self.run_dir)
            if path is None:
                log.warning("%s: no usable checkpoint; starting from step 0", self.run_dir)
            else:
                log.info("resuming from %s", path)
                state = ckpt.load_checkpoint(path)
        else:
            check_fresh(self.run_dir)
        self.acc.wait_for_everyone()  # every process checked before the main one writes
        set_seed(self.config.seed)
        self.loaded = load_model(self.config, self.data, self.acc)
        self.model = self.loaded.model
        if self.acc.is_main_process:  # disk for checkpoints and the final model, known once the model is
            from hybridbatch.training.preflight import bytes_needed, check_free_space, model_bytes

            check_free_space(self.run_dir, bytes_needed(self.config, *model_bytes(self.model)))
        cfg = self.config
        self.settings = LossSettings(self.loaded.query_prefix, self.loaded.passage_prefix, cfg.temperature,
                                     cfg.symmetric, cfg.mask_same_group, cfg.encode_chunk_size,
                                     cfg.grad_cache_chunk)
        self.optimizer = make_optimizer(self.model, self.config)
        self.scheduler = make_scheduler(self.optimizer, self.config)
        if state is not None:
            self.model.load_state_dict(state.model)
            self.optimizer.load_state_dict(state.optimizer)
            self.scheduler.load_state_dict(state.scheduler)
            if len(state.rng) != self.world:
                log.warning("checkpoint was written by %d processes, resuming with %d: random streams differ",
                            len(state.rng), self.world)
            ckpt.restore_rng(state.rng[min(self.rank, len(state.rng) - 1)])
            self.step = state.step
            self.stopping = state.state["early_stopping"]
            self.evals = state.state["evals"]
        self.encoder = self.acc.prepare(ChunkEncoder(self.model))
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.evaluator = BenchmarkEvaluator(self.config.eval.benchmarks, self.config.data.data_dir,
                                            self.loaded.query_prefix, self.loaded.passage_prefix,
                                            self.config.eval.batch_size)
        if self.main:
            if changes:  # --resume --force: the run continues with another config from here on
                with open(self.run_dir / CONFIG_CHANGES, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({**changes, "from_step": self.step}) + "\n")
            save_config(self.config, self.run_dir)
            with atomic_write(self.run_dir / DATA_FINGERPRINT) as handle:
                handle.write(self.data.fingerprint() + "\n")
            self.metrics = MetricsLog(self.run_dir / METRICS, keep_until_step=self.step if resume else None)
        return state

    def _check_same_config(self, force: bool = False) -> dict[str, Any] | None:
        """Refuse to resume with keys changed that change what is trained (sampler, data, lr...), unless
        `force`: then the changes are returned, and `_setup` appends them to RUN/config_changes.jsonl with
        the step they apply from, once the run has loaded and really continues."""
        saved = self.run_dir / "config.yaml"
        if not saved.is_file():
            return None
        previous = load_config(saved)
        changed = [k for k in config_differences(previous, self.config) if not k.startswith(RESUMABLE_CHANGES)]
        data_file = self.run_dir / DATA_FINGERPRINT
        data_before = data_file.read_text(encoding="utf-8").strip() if data_file.is_file() else None
        if data_before is not None and data_before != self.data.fingerprint():
            changed.append(DATA_CONTENTS)  # same config, other texts: a data file was edited since
        if not changed:
            return None
        if not force:
            raise ConfigError(f"cannot resume {self.run_dir}: the config differs from {saved} in {changed}; "
                              "pass --force to resume with the new values (recorded in config_changes.jsonl)")
        log.warning("resuming %s with changed %s (--force; recorded in %s)", self.run_dir, changed, CONFIG_CHANGES)
        old, new = _flat(previous), _flat(self.config)
        old[DATA_CONTENTS], new[DATA_CONTENTS] = data_before, self.data.fingerprint()
        return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "changed": {k: {"was": old.get(k), "now": new.get(k)} for k in changed}}

    # ----------------------------------------------------------------------------------------- loop
    def run(self, resume: bool = False, force: bool = False) -> Path:
        self._setup(resume, force)
        self.model.train()
        bar = tqdm(total=self.config.steps, initial=self.step, desc="train", disable=not self.main)
        try:  # closed also when a step raises, so that the error starts a line of its own
            while self.step < self.config.steps and not self.stopping["stopped"]:
                record = self._train_step()
                self.step += 1
                if self.main:
                    self.metrics.write(record)
                    if self.step % self.config.log_every == 0:
                        bar.set_postfix(loss=f"{record['loss']:.4f}", type=record["type"])
                bar.update(1)
                self._after_step()
        finally:
            bar.close()
        return self._finish()

    def _train_step(self) -> dict[str, Any]:
        """One optimizer update over `grad_accum` planned batches."""
        cfg, started = self.config, time.perf_counter()
        sampler_s, losses, types, bad = 0.0, [], [], None
        lr = self.scheduler.get_last_lr()[0]
        if not all(math.isfinite(x) for x in self.scheduler.get_last_lr()):
            raise NonFiniteWeights(f"learning rate {lr} at step {self.step + 1} is not finite (lr {cfg.lr}, "
                                   f"warmup_steps {cfg.warmup_steps}); stopped before updating the weights")
        for k in range(cfg.grad_accum):
            t0 = time.perf_counter()
            batch = self.sampler.batch_at(*self.sampler.position(self.step * cfg.grad_accum + k))
            sampler_s += time.perf_counter() - t0
            sync = k == cfg.grad_accum - 1
            with nullcontext() if sync else self.acc.no_sync(self.encoder):
                with autocast_forward(self.model, step_precision(cfg.precision, self.acc.device), self.acc.device):
                    loss = global_batch_loss(self.encoder, self.model, batch, self.data.train, self.settings,
                                             self.rank, self.world, self.acc.device)
                # Always backward, even a NaN: DDP expects one backward per forward. The update is skipped.
                self.acc.backward(loss * self.world / cfg.grad_accum)
            losses.append(float(loss.detach()))
            types.append(batch.type)
            if bad is None and not math.isfinite(losses[-1]):
                bad = ("loss", losses[-1], batch)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm or math.inf))
        if bad is None and not math.isfinite(grad_norm):
            bad = ("gradient norm", grad_norm, batch)
        record = {"step": self.step + 1, "loss": sum(losses) / len(losses), "lr": lr,
                  "type": types[0] if len(types) == 1 else types, "grad_norm": grad_norm}
        if bad is None:
            self.optimizer.step()
            self._check_weights(f"after the update of step {self.step + 1}")
        else:
            record["skipped"] = self._non_finite(*bad)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        record["step_s"] = round(time.perf_counter() - started, 4)
        record["sampler_s"] = round(sampler_s, 6)
        return record

    def _non_finite(self, what: str, value: float, batch) -> str:
        info = batch.to_log(self.data.train)
        message = (f"non-finite {what} ({value}) at step {self.step + 1} (epoch {batch.epoch}, batch "
                   f"{batch.step}, type {batch.type}): query languages {info['query_langs']}, passage "
                   f"languages {info['doc_langs']}, groups {info['groups']}")
        if self.main:
            self.metrics.write({"step": self.step + 1, "event": "non_finite", "what": what, "batch": info})
        if self.config.nonfinite_loss == "stop":
            raise NonFiniteLoss(message + "; stopped before updating the weights (nonfinite_loss: stop)")
        log.warning("%s; update skipped (nonfinite_loss: skip)", message)
        return what

    def _check_weights(self, when: str) -> None:
        """`NonFiniteWeights` if any weight (parameter or buffer) is NaN/inf: such a model is never saved."""
        bad = ckpt.nonfinite_tensors([*self.model.named_parameters(), *self.model.named_buffers()])
        if bad:
            raise NonFiniteWeights(f"non-finite weights {when}: {bad[:5]}{' ...' if len(bad) > 5 else ''}; "
                                   "stopped, no model saved")

    # ----------------------------------------------------------------------------------------- cadence
    def _after_step(self) -> None:
        cfg, step = self.config, self.step
        last = step == cfg.steps
        if self.data.val and cfg.validation_every and step % cfg.validation_every == 0:
            self._validate()
        if cfg.eval.every and step % cfg.eval.every == 0 and not (last and cfg.eval.final):
            self._evaluate(final=False)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
            self._checkpoint()

    def _validate(self) -> None:
        loss = validation_loss(self.model, self.data.val, self.config, self.data.languages, self.settings,
                               self.acc.device)
        stop, improved = self.stopping, False
        if stop["best"] is None or loss < stop["best"] - self.config.early_stopping.min_delta:
            stop.update(best=loss, best_step=self.step, bad=0)
            improved = True
        else:
            stop["bad"] += 1
        patience = self.config.early_stopping.patience
        if patience and stop["bad"] >= patience:
            stop["stopped"] = True
            log.info("early stopping at step %d: best validation loss %.5f at step %d", self.step,
                     stop["best"], stop["best_step"])
        if self.main:
            if improved and patience:
                with atomic_write(self.run_dir / BEST, "wb") as handle:
                    torch.save(self.model.state_dict(), handle)
            self.metrics.write({"step": self.step, "val_loss": loss, "best_val_loss": stop["best"]})

    def _evaluate(self, final: bool) -> dict[str, Any]:
        results: dict[str, Any] = {}
        if self.main and self.config.eval.benchmarks:
            name = "final" if final else f"step-{self.step:06d}"
            results = self.evaluator(self.model, self.run_dir / "eval" / name)
            self.evals[str(self.step) if not final else "final"] = results
            self.metrics.write({"step": self.step, "eval": results, "final": final})
        self.acc.wait_for_everyone()
        return results

    def _checkpoint(self) -> None:
        from accelerate.utils import gather_object

        rng = gather_object([ckpt.capture_rng()]) if self.world > 1 else [ckpt.capture_rng()]
        if self.main:
            position = self.sampler.position(self.step * self.config.grad_accum)
            state = {"steps_done": self.step, "epoch": position[0], "epoch_step": position[1],
                     "early_stopping": self.stopping, "evals": self.evals, "world_size": self.world}
            ckpt.save_checkpoint(self.run_dir, ckpt.CheckpointState(
                self.step, self.model.state_dict(), self.optimizer.state_dict(), self.scheduler.state_dict(),
                rng, state), self.config.checkpoint.keep_last)
            # The batches trained so far; rewritten whole (and atomically) at every checkpoint and at the end.
            write_batch_log(self.run_dir / BATCHES, self.sampler, self.data.train, self.step * self.config.grad_accum)
        self.acc.wait_for_everyone()

    # ----------------------------------------------------------------------------------------- end
    def _finish(self) -> Path:
        cfg, stop = self.config, self.stopping
        self.acc.wait_for_everyone()  # the best weights file is complete before anyone reads it
        if cfg.early_stopping.patience and stop["best_step"] is not None and (self.run_dir / BEST).is_file():
            self.model.load_state_dict(torch.load(self.run_dir / BEST, map_location=self.acc.device,
                                                  weights_only=True))
            log.info("final weights: step %d (best validation loss %.5f)", stop["best_step"], stop["best"])
        self._check_weights("before saving the model")
        summary = {"steps_done": self.step, "stopped_early": stop["stopped"], "best_step": stop["best_step"],
                   "best_val_loss": stop["best"], "train_groups": len(self.data.train),
                   "val_groups": len(self.data.val), "dropped_groups": self.data.n_dropped,
                   "processes": self.world, "eval": self.evals, "base_license": base_license(self.model)}
        if self.main:  # saved before the final evaluation: an evaluation that fails loses no training
            write_batch_log(self.run_dir / BATCHES, self.sampler, self.data.train, self.step * cfg.grad_accum)
            save_model_folder(self.model, self.run_dir, model_card(cfg, self.loaded.base, summary, {}))
        try:
            final = self._evaluate(final=True) if cfg.eval.final else {}
        except Exception as exc:
            if self.main:
                write_json(self.run_dir / "summary.json", {**json.loads(json.dumps(summary)),
                                                           "final_eval_error": f"{type(exc).__name__}: {exc}"})
                self.metrics.close()
            raise
        if self.main:
            summary["eval"] = final or self.evals
            if final:
                write_model_card(self.run_dir, model_card(cfg, self.loaded.base, summary, final))
            write_json(self.run_dir / "summary.json", json.loads(json.dumps(summary)))
            self.metrics.close()
        self.acc.wait_for_everyone()
        return self.run_dir


def _flat(config: TrainConfig) -> dict[str, Any]:
    from hybridbatch.training.config import _flatten

    return _flatten(config.model_dump(mode="json"))
