"""Approximate (and exact) inner-product search with faiss, for pools too large for exact chunked search.

Vectors are normalized embeddings, so inner product is cosine similarity. Kinds:

- flat:  exact brute force (IndexFlatIP): the reference, and as fast as a BLAS matmul gets.
- ivf:   k-means into `nlist` lists; a query scans the `nprobe` nearest lists (IndexIVFFlat).
- hnsw:  a navigable small-world graph, `m` links per node (IndexHNSWFlat); no training.
- ivfpq: ivf whose lists hold product-quantized codes of `pq_m` bytes per vector (IndexIVFPQ, 8 bits per
         sub-quantizer): ~d*4/pq_m times less memory than the vectors, at some recall.

faiss is an optional dependency (`pip install hybridbatch[faiss]`, faiss-cpu); it is imported on first use.
The exact search of the evaluation (`hybridbatch.retrieval.search`) needs none of this: an index is for serving
a corpus (`hybridbatch encode --index KIND` builds one from the corpus store, row i = the store's row i) and for
the search-scaling benchmark. Knows nothing of benchmarks or models.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hybridbatch.io import atomic_write

KINDS = ("flat", "ivf", "hnsw", "ivfpq")


def import_faiss():
    """The faiss module, or an ImportError that says how to install it."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError("approximate search needs faiss: pip install faiss-cpu==1.15.1 "
                          "(or the `faiss` extra: pip install 'hybridbatch[faiss]')") from err
    return faiss


def default_nlist(n: int) -> int:
    """About 4·sqrt(n) lists, but at least 39 training points per list (faiss's k-means minimum) and >= 1."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def build_index(emb: np.ndarray, kind: str = "flat", *, nlist: int | None = None, nprobe: int = 16, m: int = 32,
                ef_construction: int = 200, ef_search: int = 128, pq_m: int = 48, nbits: int = 8,
                train_size: int | None = None, seed: int = 0):
    """An inner-product faiss index of kind `kind` holding `emb` (n, d) (row i gets id i).

    ivf / ivfpq: `nlist` lists (default `default_nlist(n)`), `nprobe` scanned per query, k-means trained
    on `train_size` random rows (default min(n, 256·nlist)). hnsw: `m` links per node, `ef_construction`
    and `ef_search` candidate-list sizes. ivfpq: `pq_m` sub-quantizers (must divide d) of `nbits` bits.
    """
    x = np.ascontiguousarray(emb, dtype=np.float32)
    n, d = x.shape
    index = new_index(d, kind, n, nlist=nlist, nprobe=nprobe, m=m, ef_construction=ef_construction,
                      ef_search=ef_search, pq_m=pq_m, nbits=nbits)
    if kind in ("ivf", "ivfpq"):
        train_ivf(index, x, train_size, seed)
    index.add(x)
    return index


def new_index(d: int, kind: str, n: int, *, nlist: int | None = None, nprobe: int = 16, m: int = 32,
              ef_construction: int = 200, ef_search: int = 128, pq_m: int = 48, nbits: int = 8):
    """An empty index of kind `kind` for `n` vectors of dimension `d` (ivf kinds still untrained)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    faiss = import_faiss()
    if kind == "flat":
        return faiss.IndexFlatIP(d)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        return index
    return new_ivf(d, kind, nlist or default_nlist(n), nprobe, pq_m, nbits)


def new_ivf(d: int, kind: str, nlist: int, nprobe: int = 16, pq_m: int = 48, nbits: int = 8):
    """An untrained ivf / ivfpq index (for callers that add vectors in chunks, e.g. a pool larger than memory)."""
    faiss = import_faiss()
    quantizer = faiss.IndexFlatIP(d)
    if kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    elif kind == "ivfpq":
        if d % pq_m:
            raise ValueError(f"pq_m={pq_m} must divide the dimension {d}")
        index = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, nbits, faiss.METRIC_INNER_PRODUCT)
    else:
        raise ValueError(f"not an ivf kind: {kind!r}")
    index.nprobe = min(nprobe, nlist)  # faiss's Python wrapper keeps `quantizer` alive with the index
    return index


def train_ivf(index, x: np.ndarray, train_size: int | None = None, seed: int = 0) -> None:
    """Train `index`'s k-means (and PQ) on `train_size` random rows of `x` (default min(n, 256·nlist))."""
    n = x.shape[0]
    size = min(n, train_size or 256 * index.nlist)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)) if size < n else slice(None)
    index.train(np.ascontiguousarray(x[rows], dtype=np.float32))


def index_from_store(folder: str | Path, kind: str = "flat", *, nprobe: int = 16, pq_m: int = 48,
                     train_size: int | None = None, seed: int = 0):
    """An index of kind `kind` over an embedding store (`retrieval.embeddings`), filled shard by shard (each
    shard verified on read); ivf kinds are trained on `train_size` rows drawn from the first shard."""
    from hybridbatch.retrieval.store_format import read_meta, streamed_shards

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    index = None
    for _, _, shard in streamed_shards(Path(folder)):
        x = np.ascontiguousarray(shard, dtype=np.float32)
        if index is None:
            index = new_index(x.shape[1], kind, int(read_meta(folder)["count"]), nprobe=nprobe, pq_m=pq_m)
            if kind in ("ivf", "ivfpq"):
                train_ivf(index, x, train_size, seed)
        index.add(x)
    if index is None:
        raise ValueError(f"{folder}: the store holds no rows")
    return index


def write_index(index, path: str | Path) -> Path:
    """`index` serialized to `path` atomically (a temporary file renamed over it: never half-written)."""
    faiss = import_faiss()
    with atomic_write(path, "wb", encoding=None) as handle:
        handle.write(faiss.serialize_index(index).tobytes())
    return Path(path)


def read_index(path: str | Path):
    return import_faiss().read_index(str(path))


def search_index(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n_q, k) float32, indices (n_q, k) int64) best first; -1 / -inf pad missing results."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    scores, indices = index.search(q, k)
    scores = np.where(indices < 0, -np.inf, scores).astype(np.float32)
    return scores, indices.astype(np.int64)


def exact_top_k(queries: np.ndarray, emb: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force numpy top k by inner product, `chunk` queries at a time (the reference for recall)."""
    n_q, k = len(queries), min(k, len(emb))
    scores = np.empty((n_q, k), dtype=np.float32)
    indices = np.empty((n_q, k), dtype=np.int64)
    for start in range(0, n_q, chunk):
        s = np.asarray(queries[start:start + chunk], dtype=np.float32) @ np.asarray(emb, dtype=np.float32).T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(s, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        indices[start:start + chunk] = np.take_along_axis(part, order, axis=1)
        scores[start:start + chunk] = np.take_along_axis(part_scores, order, axis=1)
    return scores, indices


def recall_at_k(approx_idx: np.ndarray, exact_idx: np.ndarray, k: int) -> float:
    """Mean over queries of |approx top k ∩ exact top k| / k (padding -1 never counts)."""
    approx, exact = np.asarray(approx_idx)[:, :k], np.asarray(exact_idx)[:, :k]
    if len(approx) != len(exact):
        raise ValueError(f"{len(approx)} approximate rows vs {len(exact)} exact rows")
    if len(exact) == 0:
        return float("nan")
    hits = sum(len(np.intersect1d(a[a >= 0], e)) for a, e in zip(approx, exact, strict=True))
    return hits / (len(exact) * exact.shape[1])
