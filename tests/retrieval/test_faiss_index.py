"""faiss indexes against brute force: flat is exact, ivf / hnsw keep recall@10 >= 0.9 on clustered data."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from hybridbatch.retrieval.faiss_index import (
    build_index,
    default_nlist,
    exact_top_k,
    import_faiss,
    recall_at_k,
    search_index,
)

pytest.importorskip("faiss")


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int = 4000, n_queries: int = 200, d: int = 32, clusters: int = 40, seed: int = 0):
    """Points around `clusters` random directions (noise of norm ~0.6: cosine ~0.85 to the center, as
    embeddings cluster by topic); queries drawn the same way."""
    rng = np.random.default_rng(seed)
    centers = _normalize(rng.normal(size=(clusters, d)))

    def draw(size: int) -> np.ndarray:
        return _normalize(centers[rng.integers(clusters, size=size)] + rng.normal(scale=0.6 / d**0.5, size=(size, d)))

    return draw(n), draw(n_queries)


@pytest.fixture(autouse=True)
def one_faiss_thread():
    faiss = import_faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def test_exact_top_k_is_the_full_sort():
    pool, queries = _clustered(500, 30)
    scores, idx = exact_top_k(queries, pool, 10, chunk=7)
    full = queries @ pool.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(idx, expected)  # continuous random data: no ties
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-6)


def test_flat_equals_brute_force():
    pool, queries = _clustered(2000, 100)
    scores, idx = search_index(build_index(pool, "flat"), queries, 10)
    ref_scores, ref_idx = exact_top_k(queries, pool, 10)
    assert idx.dtype == np.int64 and scores.dtype == np.float32 and idx.shape == (100, 10)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    # the same items unless two scores are closer than float rounding (ties may swap)
    near_tie = np.abs(np.diff(ref_scores, axis=1)).min(axis=1) < 1e-5
    assert (idx[~near_tie] == ref_idx[~near_tie]).all()
    assert recall_at_k(idx, ref_idx, 10) >= 0.999


@pytest.mark.parametrize("kind, params", [("ivf", {"nprobe": 8}), ("hnsw", {"m": 16, "ef_search": 64}),
                                          ("ivfpq", {"pq_m": 8, "nbits": 6, "nprobe": 8})])
def test_approximate_kinds_keep_recall(kind, params):
    pool, queries = _clustered()
    _, exact = exact_top_k(queries, pool, 10)
    scores, idx = search_index(build_index(pool, kind, **params), queries, 10)
    recall = recall_at_k(idx, exact, 10)
    if kind == "ivfpq":  # 8 bytes per 32-d vector: a coarse approximation, still far above chance (10/4000)
        assert recall >= 0.4, recall
    else:
        assert recall >= 0.9, recall
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_ivf_lists_and_probes():
    pool, queries = _clustered(1000, 50)
    index = build_index(pool, "ivf", nlist=10, nprobe=10)  # every list probed: exact
    assert index.nlist == 10 and index.nprobe == 10 and index.ntotal == 1000
    _, exact = exact_top_k(queries, pool, 10)
    assert recall_at_k(search_index(index, queries, 10)[1], exact, 10) >= 0.999
    assert default_nlist(1_000_000) == 4000 and default_nlist(100) == 2 and default_nlist(10) == 1


def test_fewer_items_than_k_are_padded():
    pool, queries = _clustered(5, 3, clusters=2)
    scores, idx = search_index(build_index(pool, "flat"), queries, 8)
    assert (idx[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
    assert sorted(idx[0, :5]) == [0, 1, 2, 3, 4]


def test_recall_at_k_by_hand():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    approx = np.array([[3, 9, 1], [-1, -1, 4]])
    assert recall_at_k(approx, exact, 3) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert recall_at_k(approx, exact, 1) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        recall_at_k(approx[:1], exact, 3)


def test_bad_arguments_and_missing_faiss(monkeypatch):
    pool, _ = _clustered(100, 1, d=12, clusters=3)
    with pytest.raises(ValueError, match="kind"):
        build_index(pool, "lsh")
    with pytest.raises(ValueError, match="divide"):
        build_index(pool, "ivfpq", pq_m=5)
    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        build_index(pool, "flat")


def test_an_index_built_from_a_sharded_store_finds_what_brute_force_finds(tmp_path):
    """`encode --index`'s path: the store is read shard by shard, row i of the index is row i of the store;
    the index file is written whole or not at all."""
    from hybridbatch.retrieval.embeddings import write_embeddings
    from hybridbatch.retrieval.faiss_index import index_from_store, read_index, write_index

    pool, queries = _clustered(n=3000, n_queries=50)
    ids = [f"d{i}" for i in range(len(pool))]
    write_embeddings(tmp_path / "corpus", ids, ["en"] * len(ids), pool, shard_size=1000)  # three shards
    exact_scores, exact = exact_top_k(queries, pool, 10)
    flat = index_from_store(tmp_path / "corpus", "flat")
    assert flat.ntotal == len(pool)
    scores, found = search_index(flat, queries, 10)
    np.testing.assert_array_equal(found, exact)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    for kind in ("ivf", "hnsw"):
        approximate = index_from_store(tmp_path / "corpus", kind)
        assert approximate.ntotal == len(pool)
        assert recall_at_k(search_index(approximate, queries, 10)[1], exact, 10) >= 0.9
    path = write_index(flat, tmp_path / "corpus.flat.faiss")
    np.testing.assert_array_equal(search_index(read_index(path), queries, 10)[1], exact)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    with pytest.raises(ValueError, match="kind must be one of"):
        index_from_store(tmp_path / "corpus", "lsh")
