"""Search cost against pool size: exact chunked search and faiss flat / ivf / hnsw / ivfpq.

    python benchmarks/bench_search_scaling.py --pools 10000,100000,1000000 [--pools ...,10000000]
        [--json benchmarks/results/search_scaling.json] [--plot benchmarks/results/search_scaling.png]
        [--also an_earlier_run.json]   # its rows join the plot

Data: synthetic normalized float32 embeddings (d=384 by default) drawn around one random direction per
1,000 pool items (noise of norm 0.6, cosine ~0.85 to the centre: embeddings cluster by topic); each of the
1,000 queries is a pool item plus noise of norm 0.3, and that item is its one relevant candidate. Rows are
generated in deterministic chunks, so every process sees the same pool without holding a second copy.

Times are wall seconds (`*_s`) and CPU seconds of the process (`*_cpu_s`, all threads): on a shared
machine compare the CPU seconds. Each (pool size, method) runs in a fresh subprocess: it generates its data (setup), resets the peak RSS
(`/proc/self/clear_refs`), then builds and searches; `extra_mb` is VmHWM minus the RSS after setup. The
setup holds the pool's float32 matrix (`pool_mb`) for exact/flat/ivf/hnsw; ivfpq streams the pool into its
index chunk by chunk, so its `extra_mb` is what an ivfpq deployment needs (codes, lists, one chunk).

- exact: `hybridbatch.retrieval.search.search` as the evaluation calls it (one language block, k=100,
  `--memory-mb` budget); it also counts the relevant item's rank. Recall of the others is measured
  against its top `--k`. Pools above `--max-in-memory` run ivfpq only, against a streamed exact top k
  (`exact-stream`: chunked matmul + top-k merge, never the whole pool in memory).
- flat / ivf / hnsw / ivfpq: `hybridbatch.retrieval.faiss_index`, timing build (train + add) and search.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("exact", "flat", "ivf", "hnsw", "ivfpq")
CHUNK_ROWS = 100_000
ITEMS_PER_CLUSTER = 1000


# ---------------------------------------------------------------- synthetic data (deterministic chunks)

def _normalize(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _centers(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0])
    return _normalize(rng.standard_normal((max(1, n // ITEMS_PER_CLUSTER), d), dtype=np.float32))


def pool_chunks(n: int, d: int, seed: int):
    """Yield (start, rows) chunks of the pool; chunk j depends only on (seed, j)."""
    centers = _centers(n, d, seed)
    for j, start in enumerate(range(0, n, CHUNK_ROWS)):
        rng = np.random.default_rng([seed, 1, j])
        size = min(CHUNK_ROWS, n - start)
        rows = rng.standard_normal((size, d), dtype=np.float32)
        rows *= np.float32(0.6 / math.sqrt(d))
        rows += centers[rng.integers(len(centers), size=size)]
        yield start, _normalize(rows)


def make_pool(n: int, d: int, seed: int) -> np.ndarray:
    pool = np.empty((n, d), dtype=np.float32)
    for start, rows in pool_chunks(n, d, seed):
        pool[start:start + len(rows)] = rows
    return pool


def make_queries(n: int, d: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Queries near pool items of the first chunk (so no process needs the whole pool to make them)."""
    _, first = next(pool_chunks(n, d, seed))
    rng = np.random.default_rng([seed, 2])
    source = rng.choice(len(first), size=n_queries, replace=len(first) < n_queries)
    noise = rng.standard_normal((n_queries, d), dtype=np.float32) * np.float32(0.3 / math.sqrt(d))
    return _normalize(first[source] + noise), source


# ---------------------------------------------------------------- one configuration (in a subprocess)

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass  # then VmHWM still includes the setup's peak: extra_mb is a lower bound


def run_config(cfg: dict) -> dict:
    """Set up, build and search one (pool, method); returns timings and memory, saves the top-k ids."""
    import faiss
    import torch

    from hybridbatch.retrieval import faiss_index as fi
    from hybridbatch.retrieval.search import search

    torch.set_num_threads(cfg["threads"])
    faiss.omp_set_num_threads(cfg["threads"])
    n, d, method, seed = cfg["pool"], cfg["dim"], cfg["method"], cfg["seed"]
    queries, source = make_queries(n, d, cfg["queries"], seed)
    pool = make_pool(n, d, seed) if method in ("exact", "flat", "ivf", "hnsw") else None
    _reset_peak()
    baseline_kb = _status_kb("VmRSS")
    build_s, build_cpu, params = 0.0, 0.0, {}
    t0, c0 = time.perf_counter(), time.process_time()
    if method == "exact":
        result = search(queries, pool, np.zeros(n, dtype=np.int64), np.arange(n), [[(int(s), 1)] for s in source],
                        1, k=100, memory_mb=cfg["memory_mb"])
        top, params = result.top_pooled, {"memory_mb": cfg["memory_mb"], "k": 100}
    elif method == "exact-stream":
        top = _streamed_top_k(queries, n, d, seed, cfg["k"])
    else:
        nlist = min(fi.default_nlist(n), cfg["max_nlist"])
        train_size = min(n, 50 * nlist)
        if method == "ivfpq":
            index = fi.new_ivf(d, "ivfpq", nlist, cfg["nprobe"], cfg["pq_m"])
            fi.train_ivf(index, _first_rows(n, d, seed, train_size), seed=seed)
            for _, rows in pool_chunks(n, d, seed):
                index.add(rows)
            params = {"nlist": nlist, "nprobe": index.nprobe, "pq_m": cfg["pq_m"], "train": train_size}
        else:
            kw = {"m": cfg["hnsw_m"], "ef_construction": cfg["ef_construction"], "ef_search": cfg["ef_search"]} \
                if method == "hnsw" else {"nlist": nlist, "nprobe": cfg["nprobe"], "train_size": train_size}
            index = fi.build_index(pool, method, seed=seed, **(kw if method != "flat" else {}))
            params = kw if method != "flat" else {}
        build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        top = fi.search_index(index, queries, cfg["k"])[1]
    search_s, search_cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_kb = _status_kb("VmHWM")
    np.save(cfg["out"], np.ascontiguousarray(top[:, :cfg["k"]]))
    return {"pool": n, "method": method, "build_s": round(build_s, 3), "search_s": round(search_s, 3),
            "build_cpu_s": round(build_cpu, 3), "search_cpu_s": round(search_cpu, 3),  # wall is inflated on a busy machine
            "extra_mb": round((peak_kb - baseline_kb) / 1024, 1), "baseline_mb": round(baseline_kb / 1024, 1),
            "pool_mb": round(n * d * 4 / 2**20, 1), "params": params}


def _first_rows(n: int, d: int, seed: int, rows: int) -> np.ndarray:
    parts, have = [], 0
    for _, chunk in pool_chunks(n, d, seed):
        parts.append(chunk[:rows - have])
        have += len(parts[-1])
        if have >= rows:
            break
    return np.concatenate(parts)


def _streamed_top_k(queries: np.ndarray, n: int, d: int, seed: int, k: int) -> np.ndarray:
    import torch

    q = torch.from_numpy(queries)
    best_s = torch.full((len(queries), k), -math.inf)
    best_i = torch.full((len(queries), k), -1, dtype=torch.int64)
    for start, rows in pool_chunks(n, d, seed):
        s, i = torch.topk(q @ torch.from_numpy(rows).T, min(k, len(rows)), dim=1)
        merged_s, pick = torch.topk(torch.cat([best_s, s], 1), k, dim=1)
        best_i = torch.gather(torch.cat([best_i, i + start], 1), 1, pick)
        best_s = merged_s
    return best_i.numpy()


# ---------------------------------------------------------------- driver

def _configs(args, tmp: str) -> list[dict]:
    out = []
    for n in args.pools:
        in_memory = n <= args.max_in_memory
        truth = "exact" if in_memory else "exact-stream"  # first: the others' recall is measured against it
        methods = [truth, *(m for m in args.methods if m != "exact" and (in_memory or m == "ivfpq"))]
        for method in methods:
            out.append({"pool": n, "method": method, "dim": args.dim, "queries": args.queries, "k": args.k,
                        "seed": args.seed, "threads": args.threads, "memory_mb": args.memory_mb,
                        "max_nlist": args.max_nlist, "nprobe": args.nprobe, "pq_m": args.pq_m,
                        "hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction,
                        "ef_search": args.ef_search, "out": os.path.join(tmp, f"{n}-{method}.npy")})
    return out


def _run_subprocess(cfg: dict, timeout: float | None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), MKL_NUM_THREADS=str(cfg["threads"]))
    cmd = [sys.executable, __file__, "--worker", json.dumps(cfg)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"pool": cfg["pool"], "method": cfg["method"], "error": f"timeout after {timeout}s"}
    if done.returncode != 0:
        return {"pool": cfg["pool"], "method": cfg["method"],
                "error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(rows: list[dict]) -> str:
    head = f"{'pool':>10} {'method':<13} {'build s':>9} {'search s':>9} {'extra MB':>9} {'pool MB':>8} {'recall@k':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['pool']:>10} {r['method']:<13} {r['error']}")
            continue
        recall = "" if r.get("recall") is None else f"{r['recall']:.3f}"
        lines.append(f"{r['pool']:>10} {r['method']:<13} {r['build_s']:>9.2f} {r['search_s']:>9.2f} "
                     f"{r['extra_mb']:>9.1f} {r['pool_mb']:>8.1f} {recall:>8}")
    return "\n".join(lines)


def merge_rows(rows: list[dict], earlier: list[Path]) -> list[dict]:
    """`rows` plus the rows of earlier runs' JSON files for (pool, method) pairs not measured now."""
    have = {(r["pool"], r["method"]) for r in rows}
    merged = list(rows)
    for path in earlier:
        for row in json.loads(Path(path).read_text(encoding="utf-8"))["rows"]:
            if (row["pool"], row["method"]) not in have:
                have.add((row["pool"], row["method"]))
                merged.append(row)
    return merged


def _plot(rows: list[dict], path: Path, k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hybridbatch.io import atomic_write

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        ok = sorted((r for r in rows if r["method"] == method and "error" not in r), key=lambda r: r["pool"])
        if not ok:
            continue
        color, pools = f"C{i}", [r["pool"] for r in ok]
        recall = ok[-1].get("recall")
        label = method if recall is None else f"{method} (recall@{k} {recall:.2f} at {pools[-1]:,})"
        ax_t.plot(pools, [max(r["search_s"], 1e-4) for r in ok], "o-", color=color, label=label)
        if any(r["build_s"] > 0 for r in ok):
            ax_t.plot(pools, [max(r["build_s"], 1e-4) for r in ok], "x--", color=color, alpha=0.6)
        ax_m.plot(pools, [max(r["extra_mb"], 0.1) for r in ok], "o-", color=color, label=method)
    ax_t.set(xscale="log", yscale="log", xlabel="pool size", ylabel="seconds (solid: search, dashed: build)",
             title=f"cost of {rows[0].get('queries', '')} queries".strip())
    ax_m.set(xscale="log", yscale="log", xlabel="pool size", ylabel="peak memory above setup (MB)",
             title="memory")
    ax_t.legend(fontsize=7)
    ax_m.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", default="10000,100000,1000000",
                        type=lambda s: [int(float(x)) for x in s.split(",")], help="e.g. 1e4,1e5,1e6,1e7")
    parser.add_argument("--methods", default=",".join(METHODS), type=lambda s: s.split(","))
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10, help="recall@k against exact")
    parser.add_argument("--memory-mb", type=float, default=512.0, help="exact search's budget (evaluation default)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--max-in-memory", type=int, default=2_000_000, help="larger pools: ivfpq only")
    parser.add_argument("--max-nlist", type=int, default=4096)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--pq-m", type=int, default=48)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=None, help="per configuration")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/search_scaling.json"))
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/results/search_scaling.png"))
    parser.add_argument("--also", type=Path, action="append", default=[],
                        help="an earlier run's JSON whose rows join the plot (a (pool, method) measured now wins)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_config(json.loads(args.worker))))
        return
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")

    from hybridbatch.io import write_json
    from hybridbatch.retrieval.faiss_index import recall_at_k

    rows = []
    with tempfile.TemporaryDirectory(prefix="search-scaling-") as tmp:
        for cfg in _configs(args, tmp):
            row = _run_subprocess(cfg, args.timeout_s)
            truth = os.path.join(tmp, f"{cfg['pool']}-exact.npy")
            truth = truth if os.path.exists(truth) else os.path.join(tmp, f"{cfg['pool']}-exact-stream.npy")
            if "error" not in row and not row["method"].startswith("exact") and os.path.exists(truth):
                row["recall"] = round(recall_at_k(np.load(cfg["out"]), np.load(truth), args.k), 4)
            row["queries"] = args.queries
            rows.append(row)
            print(_table([row]).splitlines()[-1], flush=True)
    print()
    print(_table(rows))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads"
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "plot", "worker", "also")}
    settings["also"] = [str(path) for path in args.also]
    write_json(args.json, {"machine": machine, "load_average": os.getloadavg(), "settings": settings, "rows": rows})
    _plot(merge_rows(rows, args.also), args.plot, args.k)
    print(f"\nwrote {args.json} and {args.plot}")


if __name__ == "__main__":
    main()
