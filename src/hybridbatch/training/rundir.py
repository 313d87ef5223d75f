"""The run folder: its lock, its metrics log, and the final model with its card.

One training process owns a run folder at a time (`RUN/.lock`, an `flock` released by the kernel when
the process dies, so a SIGKILLed run never leaves a stale lock). `metrics.jsonl` gets one line per step
and per evaluation; on resume, lines past the checkpoint are dropped because the resumed run writes them
again, identically.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from hybridbatch.io import atomic_write
from hybridbatch.training.config import TrainConfig

LOCK = ".lock"
METRICS = "metrics.jsonl"
BATCHES = "batches.jsonl"
MODEL = "model"
STARTED_MARKERS = (METRICS, "checkpoints", MODEL)


class RunLocked(RuntimeError):
    """Another process is training in this run folder."""


class RunExists(RuntimeError):
    """The run folder already holds a (possibly finished) run and `--resume` was not given."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on RUN/.lock for the duration of the block."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunLocked(f"{run_dir} is in use by {holder}; wait for it to finish or choose another "
                            "output_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


def check_fresh(run_dir: Path) -> None:
    """Refuse to start over a run that has begun (resuming must be asked for explicitly)."""
    started = [name for name in STARTED_MARKERS if (run_dir / name).exists()]
    if started:
        raise RunExists(f"{run_dir} already holds a run ({', '.join(started)}); pass --resume to continue "
                        "it or choose another output_dir")


class MetricsLog:
    """Append-only JSONL, flushed per line so a killed run loses at most the line being written."""

    def __init__(self, path: Path, keep_until_step: int | None = None):
        self.path = path
        kept = read_metrics(path, keep_until_step) if keep_until_step is not None else []
        with atomic_write(path) as handle:
            for record in kept:
                handle.write(json.dumps(record) + "\n")
        self._handle: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def read_metrics(path: Path, until_step: int | None = None) -> list[dict[str, Any]]:
    """Complete lines of metrics.jsonl (a torn last line is dropped), optionally up to a step."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if until_step is None or record.get("step", 0) <= until_step:
            records.append(record)
    return records


# --------------------------------------------------------------------------------------------- final model
def record_missing_pooler(model, folder: Path) -> None:
    """sentence-transformers drops `model_kwargs` on save; a BERT built without a pooler (me5-small) would
    then reload with a randomly initialized, unused pooler and a warning. Keep `add_pooling_layer: false`."""
    auto = getattr(model[0], "auto_model", None)
    config_path = folder / "sentence_bert_config.json"
    if auto is None or getattr(auto, "pooler", "absent") is not None or not config_path.is_file():
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.setdefault("model_kwargs", {})["add_pooling_layer"] = False
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def save_model_folder(model, run_dir: Path, card: str) -> Path:
    """Save the SentenceTransformer to RUN/model through a temporary folder, with our model card."""
    dest = run_dir / MODEL
    tmp = Path(tempfile.mkdtemp(prefix=".model.", suffix=".tmp", dir=run_dir))
    try:
        model.save(str(tmp), create_model_card=False)
        record_missing_pooler(model, tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def model_card(config: TrainConfig, base: str, summary: dict[str, Any], evals: dict[str, Any]) -> str:
    """A README saying what the model is, how it was trained, and how it scored."""
    s = config.sampler
    alpha = f", alpha {s.alpha}" if s.name == "hybrid" else ""
    lines = [
        "---", "library_name: sentence-transformers", "tags: [sentence-transformers, hybridbatch]", "---", "",
        "# hybridbatch fine-tuned retriever", "",
        f"- Base model: `{base}` (config `model: {config.model}`)",
        f"- Sampler: `{s.name}`{alpha}, language weighting `{s.language_weighting}`",
        f"- Data: `{config.data.source}`, languages {', '.join(config.data.languages)}, "
        f"{summary.get('train_groups')} training groups, {config.data.hard_negatives} hard negatives per query",
        f"- Steps: {summary.get('steps_done')} of {config.steps} (batch {config.batch_size} x grad_accum "
        f"{config.grad_accum}), lr {config.lr}, warm-up {config.warmup_steps}, temperature {config.temperature}",
        f"- Frozen word embeddings: {config.freeze_word_embeddings}; max_seq_length {config.max_seq_length}; "
        f"seed {config.seed}",
    ]
    if summary.get("stopped_early"):
        lines.append(f"- Stopped early at step {summary['steps_done']}; weights of step "
                     f"{summary.get('best_step')} (validation loss {summary.get('best_val_loss')})")
    lines += ["", "## Evaluation", ""]
    if not evals:
        lines.append("No evaluation was run.")
    for bench, scores in evals.items():
        lines.append(f"- `{bench}`: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in scores.items()))
    lines += ["", "Prefixes: queries and passages are encoded with the prompts saved in "
              "`config_sentence_transformers.json` (if any).", ""]
    return "\n".join(lines)
