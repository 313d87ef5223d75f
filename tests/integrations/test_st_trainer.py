"""`SentenceTransformerTrainer` with the plug-in, through `examples/st_trainer_hybrid.py`: one process in
this process, then two processes under torchrun (gloo, one thread each)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers.st_toys import LANGS, child_env, load_example, make_groups
from helpers.training_toys import ROOT
from hybridbatch.batching import shard
from hybridbatch.data.parallel import restrict_languages

STEPS, BATCH = 4, 8


def example_args(model, data, out, *extra: str) -> list[str]:
    return ["--model", str(model), "--data", str(data), "--languages", ",".join(LANGS), "--sampler", "hybrid",
            "--steps", str(STEPS), "--batch-size", str(BATCH), "--seed", "3", "--lr", "2e-3",
            "--max-seq-length", "32", "--output-dir", str(out), *extra]


@pytest.fixture(scope="module")
def example():
    return load_example()


def test_only_planned_texts_reach_the_tokenizer_with_prompts(tmp_path, example, tiny_model, toy_jsonl):
    """The collated columns are the plan's, the texts the planned ones (across an epoch boundary: 3 steps
    per epoch), with the model's e5-style prompts; no language tag reaches the tokenizer."""
    trainer, plan = example.build_trainer(example.parse_args(
        example_args(tiny_model, toy_jsonl, tmp_path / "run", "--hard-negatives", "2")))
    seen: list[tuple[str | None, list[str]]] = []
    preprocess = trainer.data_collator.preprocess_fn

    def recording(inputs, prompt=None, **kwargs):
        seen.append((prompt, list(inputs)))
        return preprocess(inputs, prompt=prompt, **kwargs)

    trainer.data_collator.preprocess_fn = recording
    batch = next(iter(trainer.get_train_dataloader()))
    assert {key.split("_input_ids")[0] for key in batch if key.endswith("_input_ids")} == set(plan.columns)
    assert not any("lang" in key for key in batch)
    seen.clear()
    trainer.train()
    assert trainer.state.global_step == STEPS
    columns = len(plan.columns)  # anchor, positive, negative_1, negative_2: one preprocess call each
    for step, planned in enumerate(plan.plan.iter_batches(total_steps=STEPS)):
        calls = seen[step * columns:(step + 1) * columns]
        queries = [plan.groups[g].queries[q] for g, q in zip(planned.groups, planned.query_langs, strict=True)]
        passages = [plan.groups[g].positives[d] for g, d in zip(planned.groups, planned.doc_langs, strict=True)]
        assert calls[:2] == [("query: ", queries), ("passage: ", passages)]
        assert [prompt for prompt, _ in calls[2:]] == ["passage: ", "passage: "]
    every_text = {t for g in make_groups() for t in [*g.queries.values(), *g.positives.values(),
                                                      *(n for ns in g.negatives.values() for n in ns)]}
    assert all(text in every_text for _, texts in seen for text in texts)
    logged = [json.loads(line) for line in (tmp_path / "run" / "batches.jsonl").read_text().splitlines()]
    assert logged == [b.to_log(plan.groups) for b in plan.plan.iter_batches(total_steps=STEPS)]


def test_example_main_trains_and_saves(tmp_path, example, tiny_model, toy_jsonl, capsys):
    assert example.main(example_args(tiny_model, toy_jsonl, tmp_path / "run", "--steps", "2")) == 0
    assert (tmp_path / "run" / "final" / "config_sentence_transformers.json").is_file()
    assert "2 steps of hybrid batches" in capsys.readouterr().out


def test_two_processes_see_the_same_batch_type_and_languages(tmp_path, tiny_model, toy_jsonl):
    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "tests" / "integrations" / "st_worker.py"), str(logs),
               *example_args(tiny_model, toy_jsonl, tmp_path / "run", "--hard-negatives", "1")]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    from hybridbatch.batching import make_sampler
    from hybridbatch.data.parallel import load_groups_jsonl

    groups, _ = restrict_languages(load_groups_jsonl(toy_jsonl), LANGS)
    plan = make_sampler("hybrid", groups, LANGS, BATCH, 3, alpha=0.5, hard_negatives=1)
    ranks = [[json.loads(line) for line in (logs / f"rank{r}.jsonl").read_text().splitlines()]
             for r in range(2)]
    assert all(len(received) >= STEPS for received in ranks)  # accelerate may prefetch one more batch
    for step, batch in enumerate(plan.iter_batches(total_steps=STEPS)):
        kinds = []
        for rank, received in enumerate(ranks):
            got = received[step]
            part = shard(batch, rank, 2)
            assert got["columns"] == ["anchor", "positive", "negative_1"]
            assert got["groups"] == [groups[g].id for g in part.groups]
            assert (got["query_langs"], got["doc_langs"]) == (list(part.query_langs), list(part.doc_langs))
            pairs = set(zip(got["query_langs"], got["doc_langs"], strict=True))
            kinds.append(("mono", pairs) if all(q == d for q, d in pairs) and len(pairs) == 1
                         else ("cross", None) if all(q != d for q, d in pairs) else ("mixed", None))
        assert kinds[0] == kinds[1] and kinds[0][0] == batch.type, (step, kinds)
    logged = [json.loads(line) for line in (tmp_path / "run" / "batches.jsonl").read_text().splitlines()]
    assert logged == [b.to_log(groups) for b in plan.iter_batches(total_steps=STEPS)]
