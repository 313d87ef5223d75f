"""The pieces a run is built from: the accelerator, the model (with prefixes), optimizer and schedule."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import torch

from hybridbatch.training.config import TrainConfig
from hybridbatch.training.training_data import TrainingData

log = logging.getLogger(__name__)

TINY = "tiny"


@dataclass
class LoadedModel:
    model: torch.nn.Module  # a SentenceTransformer
    base: str  # what the card names as the base model
    query_prefix: str
    passage_prefix: str


def make_accelerator():
    """One process on CPU/GPU, or N under `accelerate launch` / torchrun (gloo on CPU).

    Without a GPU, accelerate only forms a CPU process group when told `cpu=True`; otherwise each
    torchrun worker would silently train alone on the whole batch, which is refused here. Unused
    parameters are allowed because some encoders carry a pooler the sentence embedding ignores.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != launched:
        raise RuntimeError(f"launched with WORLD_SIZE={launched} but accelerate formed a group of "
                           f"{accelerator.num_processes} process(es)")
    return accelerator


def tiny_model_path(data: TrainingData):
    """`model: tiny`: a tiny random BERT whose vocabulary is trained on the training texts, cached by
    their hash, for smoke runs and tests (see configs/train/smoke.yaml)."""
    from hybridbatch.models.tiny import build_tiny_sentence_transformer
    from hybridbatch.paths import cache_dir

    texts = data.texts()
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    return build_tiny_sentence_transformer(cache_dir("models", f"tiny-{digest}"), texts=texts)


def load_model(config: TrainConfig, data: TrainingData, accelerator) -> LoadedModel:
    """Resolve and load the model; the main process builds any cached folder first, the others wait."""
    from hybridbatch.models.registry import load_sentence_transformer, resolve_model

    def resolve():
        target = str(tiny_model_path(data)) if config.model == TINY else config.model
        return resolve_model(target)

    if accelerator.is_main_process:
        resolved = resolve()
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        resolved = resolve()
    model = load_sentence_transformer(resolved.path_or_id, device=str(accelerator.device))
    if config.max_seq_length is not None:
        model.max_seq_length = config.max_seq_length
    if config.freeze_word_embeddings:
        freeze_word_embeddings(model)
    base = config.model if config.model != TINY else f"tiny ({resolved.path_or_id})"
    return LoadedModel(model, base, resolved.query_prefix, resolved.passage_prefix)


def freeze_word_embeddings(model) -> int:
    """Stop training the token-embedding matrix (most of a multilingual model's parameters: its
    vocabulary is shared by all languages, and updating it on a few languages drifts the others)."""
    inner = model.transformers_model
    if inner is None:
        raise ValueError("freeze_word_embeddings: the model has no transformers backbone")
    weight = inner.get_input_embeddings().weight
    weight.requires_grad_(False)
    log.info("froze word embeddings: %d parameters", weight.numel())
    return weight.numel()


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and LayerNorm weights (the one-dimensional parameters)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    """Linear warm-up to `lr` over `warmup_steps`, then linear decay to 0 at `steps`."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
