"""Peak memory and wall time of MIRACL evaluation: corpus streamed into a store vs held in memory.

    nice -n 10 python benchmarks/bench_miracl_stream.py [--passages 200000] [--langs de,fr,sw]
        [--model tiny | PATH] [--json benchmarks/results/miracl_stream_tiny.json]

Data: a synthetic folder in MIRACL's released layout (`data/miracl.py`), written to a temporary folder and
removed after: `--passages` short passages (4-10 pseudo-words) spread over the languages in gzipped JSONL
shards of 50,000 lines, `--queries` topics per language with 1-4 relevant passages each (plus one judged
not relevant). Model: `tiny`, a random tiny BERT of width `--dim` (32) and one layer, so
encoding is quick on 2 shared cores (about 600 passages/s); the in-memory path would hold 12x more
embedding bytes at me5-small's width 384 (`--dim 384`: 5x slower), the streamed one a shard more; or a
sentence-transformers folder.

Each mode runs in a fresh subprocess, which reports its RSS after loading the model (`base_mb`), after
`load_miracl` (`loaded_mb`) and its peak (`VmHWM`, `peak_mb`), with the wall seconds of loading and of
evaluation (encoding + search + writing the outputs):
- streamed: `evaluate_model` on the benchmark as loaded (corpus streamed into a temporary store, searched
  shard by shard, `--shard-size` passages a shard);
- in_memory: the corpus read into a list first (what `load_miracl` did before) and evaluated in memory.
A third subprocess measures with `tracemalloc` what `load_miracl`'s checks keep (its traced peak), the
figure the loader's docstring promises (8 bytes a passage plus the judged docids not seen yet).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARD_LINES = 50_000


def make_miracl(root: Path, passages: int, langs: list[str], queries: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    per_lang = passages // len(langs)
    for lang in langs:
        words = [f"{lang}{''.join(rng.choices('aeioubdgklmnprst', k=rng.randint(3, 9)))}" for _ in range(5000)]
        folder = root / f"miracl-corpus-v1.0-{lang}"
        folder.mkdir(parents=True)
        docids = []
        for shard, start in enumerate(range(0, per_lang, SHARD_LINES)):
            with gzip.open(folder / f"docs-{shard}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as out:
                for i in range(start, min(start + SHARD_LINES, per_lang)):
                    docid = f"{i // 4}#{i % 4}"
                    docids.append(docid)
                    text = " ".join(rng.choices(words, k=rng.randint(4, 10)))
                    out.write(json.dumps({"docid": docid, "title": words[i % 5000], "text": text}) + "\n")
        topics, qrels = [], []
        for q in range(queries):
            topics.append(f"{q}\t{' '.join(rng.choices(words, k=6))}?")
            for doc in rng.sample(docids, rng.randint(1, 4) + 1):
                qrels.append(f"{q}\tQ0\t{doc}\t{1 if len(qrels) % 5 else 0}")
        base = root / f"miracl-v1.0-{lang}"
        (base / "topics").mkdir(parents=True)
        (base / "qrels").mkdir(parents=True)
        (base / "topics" / f"topics.miracl-v1.0-{lang}-dev.tsv").write_text("\n".join(topics) + "\n")
        (base / "qrels" / f"qrels.miracl-v1.0-{lang}-dev.tsv").write_text("\n".join(qrels) + "\n")


def _rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, root: str, model_path: str, out: str, shard_size: int, threads: int) -> dict:
    from hybridbatch.data.benchmark import Benchmark
    from hybridbatch.data.miracl import load_miracl
    from hybridbatch.models.registry import load_sentence_transformer
    from hybridbatch.retrieval.encode import set_threads

    set_threads(threads)
    if mode == "loader":
        import tracemalloc

        tracemalloc.start()
        bench = load_miracl(f"miracl:{root}")
        _, peak = tracemalloc.get_traced_memory()
        return {"passages": len(bench.corpus), "judged": sum(len(r) for r in bench.qrels.values()),
                "traced_peak_mb": round(peak / 2**20, 2), "bytes_per_passage": round(peak / len(bench.corpus), 1)}
    from hybridbatch.evaluation.run import evaluate_model

    model = load_sentence_transformer(model_path)
    base = _rss_mb()
    t0 = time.perf_counter()
    bench = load_miracl(f"miracl:{root}")
    if mode == "in_memory":
        bench = Benchmark(bench.name, bench.queries, list(bench.corpus), bench.qrels, skipped=bench.skipped)
    t1 = time.perf_counter()
    loaded = _rss_mb()
    evaluation = evaluate_model(model, bench, out, "query: ", "passage: ", batch_size=128, show_progress=False,
                                shard_size=shard_size)
    t2 = time.perf_counter()
    m = evaluation.metrics
    return {"mode": mode, "passages": len(bench.corpus), "queries": len(bench.queries),
            "base_mb": round(base), "loaded_mb": round(loaded), "peak_mb": round(_rss_mb("VmHWM")),
            "load_s": round(t1 - t0, 1), "evaluate_s": round(t2 - t1, 1),
            "encode_s": m["timing"]["encode_s"], "score_s": m["timing"]["score_s"],
            "ndcg@10": {s: m[s]["ndcg@10"] for s in ("monolingual", "multilingual")},
            "recall@100": {s: m[s]["recall@100"] for s in ("monolingual", "multilingual")},
            "own_language_top10": m["multilingual"]["own_language_top10"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=200_000)
    parser.add_argument("--langs", default="de,fr,sw")
    parser.add_argument("--queries", type=int, default=200, help="topics per language")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--dim", type=int, default=32, help="width of the tiny model")
    parser.add_argument("--shard-size", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/miracl_stream_tiny.json")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)  # mode root model out shard_size
    args = parser.parse_args()
    if args.child:
        mode, root, model, out, shard = args.child
        print(json.dumps(child(mode, root, model, out, int(shard), args.threads)))
        return

    from hybridbatch.hardware import machine_record

    with tempfile.TemporaryDirectory(prefix="bench-miracl-") as tmp:
        root = Path(tmp) / "miracl"
        t = time.perf_counter()
        make_miracl(root, args.passages, args.langs.split(","), args.queries)
        made_s = time.perf_counter() - t
        model = args.model
        if model == "tiny":
            from hybridbatch.models.tiny import build_tiny_sentence_transformer

            model = str(build_tiny_sentence_transformer(Path(tmp) / "tiny", hidden=args.dim, layers=1, heads=2))
        rows = {}
        for mode in ("loader", "streamed", "in_memory"):
            cmd = [sys.executable, __file__, "--threads", str(args.threads), "--child", mode, str(root), model,
                   str(Path(tmp) / f"out-{mode}"), str(args.shard_size)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"{mode} failed:\n{done.stderr[-3000:]}")
            rows[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            print(mode, rows[mode], flush=True)
        same = all(rows["streamed"][key] == rows["in_memory"][key]
                   for key in ("ndcg@10", "recall@100", "own_language_top10"))
    result = {"benchmark": "miracl_stream", "passages": args.passages, "langs": args.langs,
              "queries_per_lang": args.queries, "model": args.model if args.model != "tiny" else
              f"tiny random BERT, 1 layer, dim {args.dim}", "shard_size": args.shard_size, "threads": args.threads,
              "memory_mb": 512.0, "generate_s": round(made_s, 1), "same_metrics": same, **rows,
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpu": machine_record()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "cpu"}, indent=2))


if __name__ == "__main__":
    main()
