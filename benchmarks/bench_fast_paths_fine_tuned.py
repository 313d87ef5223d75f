"""Fast encoding paths on fine-tuned models: speed on the demo's benchmark and agreement with fp32.

    HYBRIDBATCH_LAREQA_DIR=../shared/data/lareqa .venv/bin/python benchmarks/bench_fast_paths_fine_tuned.py \
        --model runs/demo/runs/me5-small/mono/seed0/train/model --benchmark "xquad-r:test@en,de,es,zh" \
        --kinds onnx-int8,bf16,fp32,bf16,onnx-int8 --fresh-build runs/demo-fp32/runs/me5-small/mono/seed0/train/model \
        --out benchmarks/results/fast_paths_fine_tuned_<cpu kind>.json

Each kind in `--kinds` (in that order, so alternations show drift in the load) evaluates the whole benchmark once
with the model's own prefixes, length 128: `make_fast` time (an ONNX build comes from the cache after its first
run), encoding time, process CPU time and mAP per setting. `--fresh-build MODEL` adds onnx-int8 and bf16 on a model
whose ONNX build is not cached yet (the build's cost). The make_fast accuracy check is off here
(`--no-check`, the default) so that a refused path's numbers are still measured.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

SETTINGS = ("monolingual", "crosslingual", "multilingual")


def one(path: str, kind: str, bench, check: bool) -> dict:
    import hybridbatch.retrieval.fast_encode as fe
    from hybridbatch.evaluation.run import evaluate_model
    from hybridbatch.models.registry import load_sentence_transformer, resolve_model

    resolved = resolve_model(path)
    model = load_sentence_transformer(path)
    model.max_seq_length = 128
    t0, c0 = time.perf_counter(), time.process_time()
    if kind != "fp32":
        if not check:
            fe.MIN_COSINE = -2.0  # measure every path, the refused ones too
        model = fe.make_fast(model, kind)
    build_s = time.perf_counter() - t0
    ev = evaluate_model(model, bench, query_prefix=resolved.query_prefix, passage_prefix=resolved.passage_prefix,
                        show_progress=False)
    return {"kind": kind, "model": path, "make_fast_s": round(build_s, 2), "encode_s": ev.metrics["timing"]["encode_s"],
            "cpu_s": round(time.process_time() - c0, 1), "check": getattr(model, "fast_path", {}).get("check"),
            "map": {s: round(ev.metrics[s]["map"], 5) for s in SETTINGS}, "load": os.getloadavg()}


def main() -> None:
    from hybridbatch.data.names import resolve_benchmark
    from hybridbatch.hardware import cpu_features

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--benchmark", default="xquad-r:test@en,de,es,zh")
    parser.add_argument("--kinds", default="onnx-int8,bf16,fp32,bf16,onnx-int8")
    parser.add_argument("--fresh-build", default=None, help="a second model, its ONNX build not yet cached")
    parser.add_argument("--check", action="store_true", help="keep make_fast's accuracy check (refusals raise)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    bench = resolve_benchmark(args.benchmark)
    out = {"cpu": cpu_features().as_dict(), "benchmark": args.benchmark,
           "texts": len(bench.queries) + len(bench.corpus), "runs": []}
    jobs = [(args.model, k) for k in args.kinds.split(",")]
    if args.fresh_build:
        jobs += [(args.fresh_build, "onnx-int8"), (args.fresh_build, "bf16"), (args.fresh_build, "fp32")]
    for path, kind in jobs:
        out["runs"].append(one(path, kind, bench, args.check))
        print(json.dumps(out["runs"][-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
