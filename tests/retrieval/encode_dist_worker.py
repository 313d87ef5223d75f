"""Run under torchrun by test_distributed_encode.py:

    torchrun --standalone --nproc_per_node 2 encode_dist_worker.py MODEL JOBS.json

JOBS.json: a list of {"texts": [{id, text, lang}, ...], "store": path, "dtype": ..., "shard_size": ...}. Every
process loads the tiny model once and, job after job, calls `encode_to_store_distributed` with all the job's
texts; it writes <store's parent>/rank<r>.json with its rank, the world size and the error the call raised
(None if none). One launch runs several jobs: starting two processes costs far more than a job.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from sentence_transformers import SentenceTransformer

from hybridbatch.data.benchmark import Text
from hybridbatch.retrieval.embeddings import encode_to_store_distributed


def main(model_path: str, jobs_json: str) -> None:
    torch.set_num_threads(1)
    state = PartialState(cpu=True)
    model = SentenceTransformer(model_path, device="cpu")
    for job in json.loads(Path(jobs_json).read_text(encoding="utf-8")):
        texts = [Text(**t) for t in job["texts"]]
        error = None
        try:
            encode_to_store_distributed(model, texts, job["store"], prefix="passage: ", batch_size=4,
                                        dtype=job["dtype"], shard_size=job["shard_size"], state=state)
        except (RuntimeError, OSError, ValueError) as exc:  # a refused folder is refused on every rank at once
            error = str(exc)
        report = {"rank": state.process_index, "world": state.num_processes, "error": error}
        (Path(job["store"]).parent / f"rank{state.process_index}.json").write_text(json.dumps(report))
    if torch.distributed.is_initialized():  # a live gloo group at interpreter exit can abort the process
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
