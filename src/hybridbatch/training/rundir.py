"""The run folder: its lock, its metrics log, and the final model with its card.

One training process owns a run folder at a time (`RUN/.lock`, an `flock` released by the kernel when
the process dies, so a SIGKILLed run never leaves a stale lock). `metrics.jsonl` gets one line per step
and per evaluation; on resume, lines past the checkpoint are dropped because the resumed run writes them
again, identically.

An output folder is a run folder or a new one: never the current folder (an empty `output_dir` once trained
into it and overwrote a `config.yaml` there), never an existing folder of other files (`check_output_folder`).
A dry run never writes into a folder that holds a run (`dry_run_folder`): its plan goes beside it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from hybridbatch.io import atomic_folder, atomic_write
from hybridbatch.models.st_folder import record_missing_pooler
from hybridbatch.training.config import ConfigError, TrainConfig

LOCK = ".lock"
METRICS = "metrics.jsonl"
BATCHES = "batches.jsonl"
MODEL = "model"
SUMMARY = "summary.json"
STARTED_MARKERS = (METRICS, "checkpoints", MODEL)
# What only a run folder holds: every run (and dry run) writes one of these before anything else.
RUN_MARKERS = (LOCK, METRICS, BATCHES, "checkpoints", SUMMARY)
# What else a run writes: a folder holding only these (e.g. a config.yaml alone) is a run folder too.
DATA_FINGERPRINT = "data.sha256"  # the training data's fingerprint (TrainingData.fingerprint), compared on resume
RUN_FILES = ("config.yaml", MODEL, "eval", "best-model.pt", "config_changes.jsonl", DATA_FINGERPRINT)
GRID_MARKERS = (LOCK, "runs", "report.md", "report.html")  # a compare output folder
DRY_RUN_SUFFIX = ".dry-run"


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


def holds_run(run_dir: Path) -> bool:
    """Training has begun (or finished) in `run_dir`: there is a history a dry run must not rewrite."""
    return any((run_dir / name).exists() for name in (*STARTED_MARKERS, SUMMARY))


def check_output_folder(folder: str | Path, markers: tuple[str, ...] = RUN_MARKERS,
                        what: str = "run folder", own: tuple[str, ...] = RUN_FILES) -> None:
    """`ConfigError` if `folder` is the current folder (or a symlink to it), not a folder, or an existing
    folder with none of `markers` that holds files other than `own` ones and temporary `.*` files (a folder
    of other files, which the run would mix into and overwrite)."""
    folder = Path(folder)
    if folder.resolve() == Path.cwd().resolve():
        raise ConfigError(f"output_dir {str(folder)!r} is the current folder; name a {what} (e.g. runs/NAME)")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output_dir {folder} is a file, not a folder")
    if folder.is_dir():
        entries = sorted(entry.name for entry in folder.iterdir())
        others = [name for name in entries if name not in own and not name.startswith(".")]
        if others and not any(name in entries for name in markers):
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise ConfigError(f"output_dir {folder} is not a {what} and already holds other files ({shown}); "
                              "choose a new or empty folder")


def check_grid_folder(folder: str | Path) -> None:
    """`check_output_folder` for a compare grid's output folder (runs/, the report, its figures)."""
    check_output_folder(folder, GRID_MARKERS, "compare output folder", own=("figures",))


def dry_run_folder(run_dir: Path) -> Path:
    """Where a dry run writes its plan: `run_dir`, unless that holds a run (checkpoints, metrics, a model):
    then `RUN.dry-run` beside it, so the run's config.yaml and batches.jsonl stay as trained (a dry run
    with another sampler must not make `--resume` look consistent)."""
    check_output_folder(run_dir)
    if not holds_run(run_dir):
        return run_dir
    beside = run_dir.with_name(run_dir.name + DRY_RUN_SUFFIX)
    check_output_folder(beside)
    if holds_run(beside):
        raise RunExists(f"{run_dir} holds a run and {beside} does too; a dry run writes into neither")
    return beside


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
def save_model_folder(model, run_dir: Path, card: str) -> Path:
    """Save the SentenceTransformer to RUN/model through a temporary folder, with our model card."""
    dest = run_dir / MODEL
    with atomic_folder(dest) as tmp:
        model.save(str(tmp), create_model_card=False)
        record_missing_pooler(model, tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return dest


def write_model_card(run_dir: Path, card: str) -> None:
    """Replace RUN/model/README.md (once the final evaluation, run after the save, has its numbers)."""
    with atomic_write(run_dir / MODEL / "README.md") as handle:
        handle.write(card)


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
    if summary.get("base_license"):
        lines.append(f"- License: inherited from the base model: {summary['base_license']}")
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
