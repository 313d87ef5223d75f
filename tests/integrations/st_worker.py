"""Run `examples/st_trainer_hybrid.py` and log, per collated batch, what this process received.

Usage: `st_worker.py LOG_DIR [example args...]` (under accelerate launch / torchrun, or alone). The
collator is wrapped to map each anchor / positive text back to (group, language) through the plan's groups,
so the log shows what reached the tokenizer, independently of the plug-in's bookkeeping. Each process writes
`LOG_DIR/rank<r>.jsonl`, one line per batch: columns, groups, query languages, passage languages.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from helpers.st_toys import load_example  # `tests/` is on PYTHONPATH (`child_env`)


def main() -> None:
    torch.set_num_threads(1)
    log_dir, argv = Path(sys.argv[1]), sys.argv[2:]
    example = load_example()
    args = example.parse_args(argv)
    trainer, plan = example.build_trainer(args)
    queries = {text: (g.id, lang) for g in plan.groups for lang, text in g.queries.items()}
    positives = {text: (g.id, lang) for g in plan.groups for lang, text in g.positives.items()}
    collate = trainer.data_collator
    rank = int(os.environ.get("RANK", "0"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"rank{rank}.jsonl").open("w", encoding="utf-8")

    class Logged:
        """The trainer's collator, logging each batch first (the trainer reads its attributes too)."""

        def __getattr__(self, name):
            return getattr(collate, name)

        def __call__(self, features):
            write(features)
            return collate(features)

    def write(features):
        q = [queries[row["anchor"]] for row in features]
        d = [positives[row["positive"]] for row in features]
        assert [gid for gid, _ in q] == [gid for gid, _ in d], "anchor and positive of different groups"
        record = {"columns": list(features[0]), "groups": [gid for gid, _ in q],
                  "query_langs": [lang for _, lang in q], "doc_langs": [lang for _, lang in d]}
        log.write(json.dumps(record) + "\n")
        log.flush()

    trainer.data_collator = Logged()
    trainer.train()
    log.close()
    if torch.distributed.is_initialized():
        # Both ranks leave together: a rank tearing the group down while its peer is still in the trainer's
        # last collective, or a live gloo group at interpreter exit, can hang or abort the process.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown (tokenizer / gloo threads): the logs are closed and complete


if __name__ == "__main__":
    main()
