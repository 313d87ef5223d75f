"""End-to-end evaluation, all three settings: hybridbatch against one sentence-transformers evaluator per pair.

    python benchmarks/bench_eval_vs_st.py --model me5-small --benchmark 'xquad-r:test@en,de,es,zh'
    python benchmarks/bench_eval_vs_st.py --model minilm-en --benchmark xquad-r:test

The per-pair way (how per-pair harnesses evaluate a multilingual benchmark): for every query language X and
corpus language Y (all ordered pairs, X == Y included) one `InformationRetrievalEvaluator` over the queries in
X, the candidates in Y and the qrels restricted to Y; plus one per query language X over the pooled corpus of
all languages (multilingual setting, relevant: the answers in every language). Each evaluator encodes its own
queries and candidates, so with L languages the texts are encoded about L times over. The per-pair numbers
are macro-averaged the way hybridbatch's metrics.json does (monolingual: mean over X of X->X; cross-lingual:
mean over the ordered pairs X != Y; multilingual: mean over X of X->pooled).
Ours: `hybridbatch.evaluation.run.evaluate_model` (every text encoded once, one search pass, all settings).
Both ways use the same model object, torch threads, batch size, max_seq_length and prefixes (ST gets the
prefixes as `query_prompt` / `corpus_prompt`); the whole of each way is timed. Target: time(ST) / time(ours)
>= 0.8 x L.

What is compared (binary qrels, complete rankings of each evaluator's corpus):
- recall@1/10/100, nDCG@10, MRR@10: ST's definitions equal ours (recall = share of the relevant items in the
  top k; nDCG with IDCG over min(R, k) ideal positions; reciprocal rank of the first relevant item in the top
  k), so they must agree within --tolerance.
- map: ours is exact AP over the complete ranking; ST's is MAP@k = sum of precisions at the relevant items in
  the top k / min(k, R). With --st-map-k full (default) every evaluator gets map_at_k = its corpus size, so
  ST keeps the complete ranking and MAP@k == AP: compared within --tolerance. With --st-map-k 100 (ST's
  default, cheaper for ST) the numbers differ by definition; the difference is reported, not checked.
- Ties: ST orders equal scores by ascending corpus id, ours (trec_eval's rule) by descending id. Ours
  encodes each distinct text once (duplicate candidates tie exactly); ST encodes in other batches, and the
  two encoders' embeddings differ by float rounding (~1e-7), which can swap near-tied candidates. So the
  end-to-end check can miss by such swaps; the untimed definition check (ST's evaluators fed with OUR
  embeddings, no encoding) separates definitions from encoding noise. Both are reported.

--limit-queries N keeps the first N parallel questions (in every language) for a quick check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

COMPARED = ("map", "recall@1", "recall@10", "recall@100", "ndcg@10", "mrr@10")
SETTINGS = ("monolingual", "crosslingual", "multilingual")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def limit_queries(bench, n: int):
    """The first `n` parallel question groups (in every language); the corpus stays whole."""
    from hybridbatch.data.benchmark import Benchmark

    keep: list[str] = []
    seen: set[str] = set()
    for q in bench.queries:
        group = bench.query_groups.get(q.id, q.id)
        if group not in seen:
            seen.add(group)
            keep.append(group)
    keep_set = set(keep[:n])
    queries = [q for q in bench.queries if bench.query_groups.get(q.id, q.id) in keep_set]
    qids = {q.id for q in queries}
    qrels = {qid: rels for qid, rels in bench.qrels.items() if qid in qids}
    groups = {qid: g for qid, g in bench.query_groups.items() if qid in qids}
    return Benchmark(f"{bench.name} (first {n} questions)", queries, list(bench.corpus), qrels, groups,
                     dict(bench.skipped))


def build_tasks(bench) -> list[dict]:
    """One evaluator's inputs per (X, Y) pair and per (X, pooled)."""
    langs = sorted(set(bench.query_languages) & set(bench.corpus_languages))
    corpus_by_lang = {y: {c.id: c.text for c in bench.corpus if c.lang == y} for y in langs}
    pooled = {c.id: c.text for c in bench.corpus}
    tasks = []
    for x in langs:
        queries = {q.id: q.text for q in bench.queries if q.lang == x}
        targets = [(y, "monolingual" if y == x else "crosslingual", corpus_by_lang[y]) for y in langs]
        if len(bench.corpus_languages) >= 2:
            targets.append(("pooled", "multilingual", pooled))
        for y, setting, corpus in targets:
            rel = {qid: {cid for cid in bench.qrels.get(qid, {}) if cid in corpus} for qid in queries}
            rel = {qid: cids for qid, cids in rel.items() if cids}
            if rel:
                tasks.append({"x": x, "y": y, "setting": setting, "queries": {q: queries[q] for q in rel},
                              "corpus": corpus, "relevant": rel})
    return tasks


def make_evaluator(task: dict, args, resolved, map_k: int):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    return InformationRetrievalEvaluator(
        queries=task["queries"], corpus=task["corpus"], relevant_docs=task["relevant"],
        mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=[1, 10, 100],
        map_at_k=[map_k], batch_size=args.batch_size, show_progress_bar=False, write_csv=False,
        name=f"{task['x']}-{task['y']}", query_prompt=resolved.query_prefix,
        corpus_prompt=resolved.passage_prefix,
    )


def st_numbers(result: dict, evaluator, model, map_k: int) -> dict[str, float]:
    """Our measure names -> the evaluator's numbers ('map' is ST's MAP@map_k)."""
    base = f"{evaluator.name}_{model.similarity_fn_name}_"
    names = {"map": f"map@{map_k}", "recall@1": "recall@1", "recall@10": "recall@10",
             "recall@100": "recall@100", "ndcg@10": "ndcg@10", "mrr@10": "mrr@10"}
    return {ours: float(result[base + theirs]) for ours, theirs in names.items()}


def run_per_pair(tasks: list[dict], model, args, resolved, embeddings: dict | None = None):
    """Run one evaluator per task. With `embeddings` ({'query'|'document': {text: vector}}) the evaluators
    are fed those vectors instead of encoding (the untimed definition check)."""
    import torch

    per_task = []
    for i, task in enumerate(tasks):
        map_k = len(task["corpus"]) if args.st_map_k == "full" else int(args.st_map_k)
        evaluator = make_evaluator(task, args, resolved, map_k)
        if embeddings is not None:
            def embed(_model, sentences, encode_fn_name=None, **_kw):
                table = embeddings[encode_fn_name]
                return torch.from_numpy(np.stack([table[s] for s in sentences]))
            evaluator.embed_inputs = embed  # called as self.embed_inputs(model, sentences, ...)
        t = time.perf_counter()
        result = evaluator(model)
        per_task.append({"x": task["x"], "y": task["y"], "setting": task["setting"],
                         "queries": len(evaluator.queries_ids), "candidates": len(task["corpus"]),
                         "metrics": st_numbers(result, evaluator, model, map_k)})
        if embeddings is None:
            log(f"  ST {i + 1}/{len(tasks)} {task['x']}->{task['y']}: {len(evaluator.queries_ids)} queries x "
                f"{len(task['corpus'])} candidates, {time.perf_counter() - t:.1f}s")
    return per_task


def macro(per_task: list[dict]) -> dict:
    """The per-pair numbers averaged like metrics.json, and per pair keyed like ours."""
    out: dict = {}
    for setting in SETTINGS:
        rows = [r for r in per_task if r["setting"] == setting]
        if not rows:
            out[setting] = None
            continue
        summary = {m: float(np.mean([r["metrics"][m] for r in rows])) for m in COMPARED}
        summary["parts"] = {(r["x"] if setting != "crosslingual" else f"{r['x']}-{r['y']}"): r["metrics"]
                            for r in rows}
        out[setting] = summary
    return out


def compare(ours: dict, theirs: dict, tolerance: float, map_exact: bool) -> dict:
    """Per setting and measure: both macro numbers, their difference, and the largest per-part difference."""
    table: dict = {}
    for setting in SETTINGS:
        o, t = ours.get(setting), theirs.get(setting)
        if o is None or t is None:
            table[setting] = None if o is None and t is None else {"error": "setting present on one side only"}
            continue
        sub = o.get("per_pair") or o.get("per_language") or {}
        rows = {}
        for m in COMPARED:
            part_diff = max((abs(sub[p][m] - t["parts"][p][m]) for p in t["parts"] if p in sub), default=0.0)
            checked = m != "map" or map_exact
            diff = abs(o[m] - t[m])
            rows[m] = {"ours": o[m], "st": t[m], "abs_diff": diff, "max_abs_diff_per_part": part_diff,
                       "checked": checked, "agree": (max(diff, part_diff) <= tolerance) if checked else None}
        missing = sorted(set(t["parts"]) ^ set(sub))
        if missing:
            rows["parts_on_one_side_only"] = missing
        table[setting] = rows
    return table


def all_agree(table: dict) -> bool:
    return all(row["agree"] is not False for rows in table.values() if rows
               for m, row in rows.items() if m in COMPARED) and \
        not any(rows and ("error" in rows or "parts_on_one_side_only" in rows) for rows in table.values())


def print_table(title: str, table: dict) -> None:
    print(f"\n{title}")
    print(f"{'setting':<13} {'measure':<11} {'ours':>10} {'ST':>10} {'|diff|':>9} {'max part':>9}  check")
    for setting, rows in table.items():
        if not rows or "error" in rows:
            print(f"{setting:<13} {rows}")
            continue
        for m in COMPARED:
            r = rows[m]
            check = ("ok" if r["agree"] else "DIFF") if r["checked"] else "n/a (MAP@k != AP)"
            print(f"{setting:<13} {m:<11} {r['ours']:>10.6f} {r['st']:>10.6f} {r['abs_diff']:>9.2e} "
                  f"{r['max_abs_diff_per_part']:>9.2e}  {check}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="me5-small")
    parser.add_argument("--benchmark", default="xquad-r:test@en,de,es,zh")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both ways")
    parser.add_argument("--limit-queries", type=int, default=None,
                        help="keep the first N parallel questions per language (quick check)")
    parser.add_argument("--st-map-k", default="full",
                        help="ST's map_at_k: 'full' (= each evaluator's corpus size, MAP@k == AP) or an integer")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--no-definition-check", action="store_true",
                        help="skip the untimed run of ST's evaluators on our embeddings")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="JSON result (default benchmarks/results/eval_vs_st_<model>.json)")
    args = parser.parse_args()
    if args.st_map_k != "full" and not args.st_map_k.isdigit():
        parser.error("--st-map-k: 'full' or a positive integer")

    from hybridbatch.data.names import resolve_benchmark
    from hybridbatch.evaluation.run import evaluate_model
    from hybridbatch.models.registry import load_sentence_transformer, resolve_model
    from hybridbatch.retrieval.encode import encode_texts, set_threads

    threads = set_threads(args.threads)
    bench = resolve_benchmark(args.benchmark, data_dir=args.data_dir)
    if args.limit_queries:
        bench = limit_queries(bench, args.limit_queries)
    resolved = resolve_model(args.model)
    model = load_sentence_transformer(args.model)
    model.max_seq_length = args.max_seq_length
    langs = sorted(set(bench.query_languages) & set(bench.corpus_languages))
    n_langs = len(langs)
    tasks = build_tasks(bench)
    st_texts = sum(len(t["queries"]) + len(t["corpus"]) for t in tasks)
    log(f"{bench.name}: {len(bench.queries)} queries, {len(bench.corpus)} candidates, L={n_langs} {langs}; "
        f"{len(tasks)} ST evaluators encoding {st_texts} texts; ours {len(bench.queries) + len(bench.corpus)}")

    # warm-up (first-call costs out of both timings)
    sample = [q.text for q in bench.queries[:8]]
    model.encode(sample, batch_size=args.batch_size, show_progress_bar=False)
    encode_texts(model, sample, resolved.query_prefix, args.batch_size, show_progress=False)

    # ours: one encoding, one search pass, all settings; its embeddings are kept for the definition check
    import hybridbatch.evaluation.run as run_module

    captured: list[tuple[list[str], np.ndarray]] = []

    def capturing_encode(model_, texts, *a, **kw):
        emb = encode_texts(model_, texts, *a, **kw)
        captured.append((texts, emb))
        return emb

    run_module.encode_texts = capturing_encode
    t = time.perf_counter()
    evaluation = evaluate_model(model, bench, out_dir=None, query_prefix=resolved.query_prefix,
                                passage_prefix=resolved.passage_prefix, batch_size=args.batch_size,
                                show_progress=False)
    ours_s = time.perf_counter() - t
    run_module.encode_texts = encode_texts
    log(f"ours: {ours_s:.1f}s ({evaluation.metrics['timing']})")

    # the per-pair way, with its encoding time measured inside
    encode_time = [0.0]

    def timed(fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                encode_time[0] += time.perf_counter() - t0
        return wrapper

    model.encode_query, model.encode_document = timed(model.encode_query), timed(model.encode_document)
    t = time.perf_counter()
    st_per_task = run_per_pair(tasks, model, args, resolved)
    st_s = time.perf_counter() - t
    del model.encode_query, model.encode_document
    st_encode_s = encode_time[0]
    log(f"ST per pair: {st_s:.1f}s (encoding {st_encode_s:.1f}s)")

    ours_metrics = evaluation.metrics
    map_exact = args.st_map_k == "full"
    end_to_end = compare(ours_metrics, macro(st_per_task), args.tolerance, map_exact)

    definition = None
    if not args.no_definition_check:
        # ST's evaluators fed with our own embeddings: no encoding noise, only the metric definitions differ
        (q_texts, q_emb), (c_texts, c_emb) = captured  # evaluate_model encodes queries, then candidates
        tables = {"query": dict(zip(q_texts, q_emb, strict=True)), "document": dict(zip(c_texts, c_emb, strict=True))}
        t = time.perf_counter()
        definition = compare(ours_metrics, macro(run_per_pair(tasks, model, args, resolved, tables)),
                             args.tolerance, map_exact)
        log(f"definition check (ST's evaluators on our embeddings): {time.perf_counter() - t:.1f}s")

    ratio = st_s / ours_s
    target = 0.8 * n_langs
    timing = ours_metrics["timing"]
    print_table("end to end (ST encodes itself) -- macro numbers; 'max part' = largest per-language/pair diff",
                end_to_end)
    if definition is not None:
        print_table("definition check (ST's evaluators on our embeddings)", definition)
    print(f"\n{'way':<28} {'texts encoded':>14} {'total s':>9} {'encode s':>9} {'rest s':>8}")
    print(f"{'ours (evaluate_model)':<28} {timing['texts']:>14} {ours_s:>9.1f} {timing['encode_s']:>9.1f} "
          f"{ours_s - timing['encode_s']:>8.1f}")
    print(f"{'ST per pair + pooled':<28} {st_texts:>14} {st_s:>9.1f} {st_encode_s:>9.1f} "
          f"{st_s - st_encode_s:>8.1f}")
    verdict = "yes" if ratio >= target else "NO"
    print(f"\nL = {n_langs}, {len(tasks)} ST evaluators; ratio ST/ours = {ratio:.2f} "
          f"(encoding only {st_encode_s / timing['encode_s']:.2f}); target >= 0.8 x L = {target:.1f}: {verdict}")
    e2e_ok = all_agree(end_to_end)
    def_ok = all_agree(definition) if definition is not None else None
    print(f"numbers agree within {args.tolerance:g}: end to end {'yes' if e2e_ok else 'NO'}"
          + (f", definitions {'yes' if def_ok else 'NO'}" if definition is not None else ""))

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {threads}",
        "load_average": list(os.getloadavg()),
        "model": args.model, "benchmark": bench.name, "languages": langs, "L": n_langs,
        "limit_queries": args.limit_queries, "queries": len(bench.queries), "candidates": len(bench.corpus),
        "batch_size": args.batch_size, "max_seq_length": args.max_seq_length, "threads": threads,
        "query_prefix": resolved.query_prefix, "passage_prefix": resolved.passage_prefix,
        "st_map_at_k": args.st_map_k, "st_evaluators": len(tasks),
        "texts_encoded": {"ours": timing["texts"], "st": st_texts},
        "ours_s": round(ours_s, 2), "ours_encode_s": timing["encode_s"], "ours_score_s": timing["score_s"],
        "st_s": round(st_s, 2), "st_encode_s": round(st_encode_s, 2),
        "ratio_st_over_ours": round(ratio, 3), "ratio_encoding_only": round(st_encode_s / timing["encode_s"], 3),
        "target_ratio": target, "meets_target": ratio >= target,
        "tolerance": args.tolerance, "agree_end_to_end": e2e_ok, "agree_definitions": def_ok,
        "compared": {"checked": [m for m in COMPARED if m != "map" or map_exact],
                     "map": "ST MAP@k with k = corpus size == exact AP" if map_exact
                     else f"ST MAP@{args.st_map_k} vs our exact AP: differ by definition, not checked"},
        "end_to_end": end_to_end, "definition_check": definition,
        "st_per_evaluator": st_per_task,
    }
    out = Path(args.out or f"benchmarks/results/eval_vs_st_{args.model.replace('/', '_')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
