"""The smoke config trained twice — hybridbatch's trainer, and sentence-transformers' trainer with the
hybridbatch plug-in — then the two batch plans compared line by line and both models evaluated.

    python benchmarks/st_plugin_vs_trainer.py [--out runs/st-vs-ours]

Same tiny model (built from the training texts, as `model: tiny` does), same data (XQuAD-R train, en/de/zh),
same sampler (hybrid, alpha 0.5, 1 hard negative), batch 16, 40 steps, lr 1e-3, 4 warm-up steps, seed 0;
no validation hold-out so both plans draw from the same groups. Loss: our InfoNCE at temperature 0.05 vs
MultipleNegativesRankingLoss at scale 20 (= 1 / 0.05). Evaluated on XQuAD-R test restricted to en/de/zh.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LANGS = ["en", "de", "zh"]
PLAN_KEYS = ("step", "type", "query_langs", "doc_langs", "groups")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/st-vs-ours")
    args = parser.parse_args()
    out = Path(args.out)

    from hybridbatch.data.names import resolve_benchmark
    from hybridbatch.evaluation.run import evaluate_model
    from hybridbatch.models.registry import load_sentence_transformer
    from hybridbatch.training import load_config, train
    from hybridbatch.training.components import tiny_model_path
    from hybridbatch.training.training_data import prepare_data

    config = load_config("configs/train/smoke.yaml", [f"output_dir={out / 'ours'}", "early_stopping.val_fraction=0",
                                                "early_stopping.patience=0"])
    ours_run = train(config)
    tiny = tiny_model_path(prepare_data(config))

    import importlib.util

    spec = importlib.util.spec_from_file_location("st_example", Path("examples/st_trainer_hybrid.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--model", str(tiny), "--data", "xquad-r:train", "--languages", ",".join(LANGS),
                  "--sampler", "hybrid", "--alpha", "0.5", "--steps", "40", "--batch-size", "16",
                  "--hard-negatives", "1", "--lr", "1e-3", "--max-seq-length", "64", "--seed", "0",
                  "--output-dir", str(out / "st")])

    ours_plan = [json.loads(line) for line in (ours_run / "batches.jsonl").open()]
    st_plan = [json.loads(line) for line in (out / "st" / "batches.jsonl").open()]
    same = len(ours_plan) == len(st_plan) and all(
        all(a[k] == b[k] for k in PLAN_KEYS) for a, b in zip(ours_plan, st_plan, strict=True))

    bench = resolve_benchmark("xquad-r:test@" + ",".join(LANGS))  # named xquad-r:test@en,de,zh
    result = {"batches": len(ours_plan), "identical_batch_plans": same}
    for name, path in (("untrained", tiny), ("hybridbatch trainer", ours_run / "model"),
                       ("sentence-transformers trainer + plug-in", out / "st" / "final")):
        model = load_sentence_transformer(str(path))
        m = evaluate_model(model, bench, out / "eval" / name.split()[0], show_progress=False).metrics
        result[name] = {s: round(m[s]["map"], 4) for s in ("monolingual", "crosslingual", "multilingual")}
        result[name]["rank_distance"] = round(m["multilingual"]["rank_distance"], 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
