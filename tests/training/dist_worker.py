"""Run under torchrun by test_distributed.py: `torchrun --nproc_per_node 2 dist_worker.py CONFIG OUT`.

1. For the first global batches of the plan, every process records the batch it planned (type,
   languages, groups), encodes its shard, computes the gathered loss and back-propagates through DDP
   (eval mode: no dropout, so a single process can reproduce the numbers), and writes what it saw and
   the all-reduced gradient of one weight to OUT/rank<r>.json.
2. Then it trains the configured run with `train(config)` on both processes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from hybridbatch.training.components import load_model, make_accelerator
from hybridbatch.training.config import load_config
from hybridbatch.training.step import ChunkEncoder, LossSettings, global_batch_loss
from hybridbatch.training.trainer import train
from hybridbatch.training.training_data import build_sampler, prepare_data

CHECKED_BATCHES = 3
GRAD_OF = "encoder.layer.0.attention.self.query.weight"  # suffix of the watched weight


def watched_weight(model) -> torch.nn.Parameter:
    return next(p for name, p in model.named_parameters() if name.endswith(GRAD_OF))


def check_batches(config_path: str, out: Path) -> None:
    torch.set_num_threads(1)
    config = load_config(config_path)
    acc = make_accelerator()
    data = prepare_data(config)
    sampler = build_sampler(config, data)
    loaded = load_model(config, data, acc)
    model = loaded.model
    encoder = acc.prepare(ChunkEncoder(model))
    model.eval()
    settings = LossSettings(loaded.query_prefix, loaded.passage_prefix, config.temperature, config.symmetric,
                            config.mask_same_group, config.encode_chunk_size)
    weight = watched_weight(model)
    seen = []
    for batch in sampler.iter_batches(total_steps=CHECKED_BATCHES):
        loss = global_batch_loss(encoder, model, batch, data.train, settings, acc.process_index,
                                 acc.num_processes, acc.device)
        acc.backward(loss * acc.num_processes)
        seen.append({"step": batch.global_step, "type": batch.type, "query_langs": list(batch.query_langs),
                     "doc_langs": list(batch.doc_langs), "groups": list(batch.groups), "loss": float(loss.detach()),
                     "grad": weight.grad.flatten().tolist()})
        model.zero_grad(set_to_none=True)
    (out / f"rank{acc.process_index}.json").write_text(json.dumps({"world": acc.num_processes, "seen": seen}))
    acc.wait_for_everyone()
    model.train()
    train(config)
    if torch.distributed.is_initialized():  # leave together; a live gloo group at exit can abort the process
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    check_batches(sys.argv[1], Path(sys.argv[2]))
