"""What finished grids measured, next to the constants of the dry-run estimate (experiments/estimate.py).

    .venv/bin/python benchmarks/estimate_vs_runs.py runs/paper-xquad-me5 runs/paper-mlqa7-me5 /tmp/demo

For each grid folder: the median training step (`step_s` of every run's metrics.jsonl, step 1 left out: it
includes warm-up) with its texts per step, precision and whether the word embeddings were trained; the median
encoding rate of its evaluations (`timing.texts / timing.encode_s` of every metrics.json) with the fast path
they used; the CPU flags those files recorded (Zen 4 and Zen 5 differ by `avx_vnni`). Then what the estimate
assumes for the same step and evaluation, so a new machine can be checked (or the constants re-fitted) from
runs it already made, without re-timing anything. One JSON object per grid.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

from hybridbatch.experiments import estimate


def grid_rates(root: Path) -> dict:
    steps, flags, train, model = [], set(), {}, "me5-small"
    for metrics in sorted(root.glob("runs/*/*/*/train/metrics.jsonl")):
        config = yaml.safe_load((metrics.parent / "config.yaml").read_text(encoding="utf-8"))
        model = config.get("model", "me5-small")
        per_example = 2 + int((config.get("data") or {}).get("hard_negatives", 0))
        train = {"texts_per_step": config["batch_size"] * per_example, "precision": config.get("precision", "fp32"),
                 "word_embeddings_trained": not config.get("freeze_word_embeddings", False)}
        steps += [json.loads(line)["step_s"] for line in metrics.read_text(encoding="utf-8").splitlines()
                  if '"step_s"' in line and json.loads(line)["step"] > 1]
    rates, paths = [], set()
    for path in sorted(root.glob("runs/*/*/*/eval/*/metrics.json")) + sorted(root.glob("runs/*/*/eval/*/metrics.json")):
        metrics = json.loads(path.read_text(encoding="utf-8"))
        timing, model = metrics.get("timing", {}), metrics.get("model", model)
        if timing.get("texts") and timing.get("encode_s"):
            rates.append(timing["texts"] / timing["encode_s"])
            paths.add((timing.get("fast_path") or {}).get("kind", "fp32"))
            flags.add(" ".join((timing.get("cpu") or {}).get("flags", [])))
    out: dict = {"grid": str(root), "cpu_flags": sorted(flags)}
    if steps:
        predicted = estimate.step_seconds(train["texts_per_step"], train["word_embeddings_trained"],
                                          train["precision"] in ("bf16", "auto"), model)
        out["train"] = {**train, "steps": len(steps), "median_step_s": round(statistics.median(steps), 2),
                        "estimate_step_s": round(predicted, 2)}
    if rates:
        bf16 = paths == {"bf16"}
        out["eval"] = {"evaluations": len(rates), "fast_paths": sorted(paths),
                       "median_texts_per_s": round(statistics.median(rates), 1),
                       "estimate_texts_per_s": round(estimate.encode_texts_per_s(bf16, model), 1)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grids", nargs="+", type=Path, help="compare output folders (output_dir)")
    args = parser.parse_args()
    for root in args.grids:
        if not (root / "runs").is_dir():
            print(f"{root}: not a compare output folder (no runs/)", file=sys.stderr)
            return 2
        print(json.dumps(grid_rates(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
