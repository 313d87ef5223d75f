"""Embedding stores: round trips, atomic replacement, and reuse only while the fingerprint matches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybridbatch.data.benchmark import Text
from hybridbatch.retrieval import embeddings as store_module
from hybridbatch.retrieval.embeddings import (
    StoreError,
    encode_to_store,
    load_or_encode,
    read_embeddings,
    read_meta,
    write_embeddings,
)
from hybridbatch.retrieval.encode import encode_texts

TEXTS = [Text(f"t{i}", s, lang) for i, (s, lang) in enumerate([
    ("Where is the station?", "en"), ("Wo ist der Bahnhof?", "de"), ("火车站在哪里？", "zh"),
    ("The river bank", "en"), ("Das Ufer des Flusses ist steil und lang", "de"), ("河岸", "zh"),
    ("Where is the station?", "en")])]  # a repeated text


def _emb(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny models that differ only in their weights (seed)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("models")
    texts = [t.text for t in TEXTS]
    return [SentenceTransformer(str(build_tiny_sentence_transformer(base / f"tiny{s}", texts=texts, seed=s)),
                                device="cpu") for s in (0, 1)]


def test_one_float32_shard_reads_back_as_a_memory_map(tmp_path):
    emb = _emb(5)
    folder = write_embeddings(tmp_path / "s", ["a", "b", "c", "d", "e"], ["en"] * 5, emb, model_name="m",
                              prefix="p: ", fingerprint="f")
    ids, langs, got = read_embeddings(folder)
    assert ids == ["a", "b", "c", "d", "e"] and langs == ["en"] * 5
    assert isinstance(got, np.memmap) and got.dtype == np.float32 and not got.flags.writeable
    np.testing.assert_array_equal(got, emb)
    meta = read_meta(folder)
    assert {k: meta[k] for k in ("model", "prefix", "dtype", "dim", "count", "normalized", "fingerprint")} == {
        "model": "m", "prefix": "p: ", "dtype": "float32", "dim": 8, "count": 5, "normalized": True,
        "fingerprint": "f"}


def test_float16_shards_read_back_as_one_float32_array(tmp_path):
    emb = _emb(10)
    ids = [f"id {i}" for i in range(10)]  # spaces survive: one id per line
    folder = write_embeddings(tmp_path / "s", ids, ["de"] * 10, emb, dtype="float16", shard_size=4)
    assert [s["rows"] for s in read_meta(folder)["shards"]] == [4, 4, 2]
    assert np.load(folder / "emb-00002.npy").dtype == np.float16
    got_ids, _, got = read_embeddings(folder)
    assert got_ids == ids and got.dtype == np.float32 and got.shape == (10, 8)
    np.testing.assert_allclose(got, emb, atol=1e-3)
    np.testing.assert_array_equal(got, emb.astype(np.float16).astype(np.float32))


def test_empty_store(tmp_path):
    ids, langs, emb = read_embeddings(write_embeddings(tmp_path / "s", [], [], np.zeros((0, 4), np.float32)))
    assert ids == [] and langs == [] and emb.shape == (0, 4)


def test_a_failed_write_leaves_the_previous_store(tmp_path):
    folder = write_embeddings(tmp_path / "s", ["a"], ["en"], _emb(1), fingerprint="old")
    with pytest.raises(ValueError, match="line breaks"):
        write_embeddings(folder, ["a\nb"], ["en"], _emb(1), fingerprint="new")
    with pytest.raises(ValueError, match="align"):
        write_embeddings(folder, ["a", "b"], ["en"], _emb(1))
    assert read_meta(folder)["fingerprint"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folders left behind
    write_embeddings(folder, ["b"], ["de"], _emb(1, seed=3), fingerprint="new")  # a store is replaced
    assert read_embeddings(folder)[:2] == (["b"], ["de"]) and read_meta(folder)["fingerprint"] == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_a_folder_that_is_not_a_store_is_never_replaced(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "precious.txt").write_text("keep")
    with pytest.raises(StoreError, match="not an embedding store"):  # an InputError: one line, exit 2
        write_embeddings(tmp_path / "s", ["a"], ["en"], _emb(1))
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["precious.txt"]
    with pytest.raises(FileNotFoundError):
        read_embeddings(tmp_path / "s")


def test_inconsistent_files_are_detected(tmp_path):
    folder = write_embeddings(tmp_path / "s", ["a", "b"], ["en", "en"], _emb(2))
    (folder / "ids.txt").write_text("a\n")
    with pytest.raises(ValueError, match="disagree"):
        read_embeddings(folder)
    folder = write_embeddings(tmp_path / "t", ["a", "b"], ["en", "en"], _emb(2))
    meta = json.loads((folder / "meta.json").read_text())
    meta["dim"] = 9
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="shape"):
        read_embeddings(folder)


def test_encode_to_store_equals_encode_texts(tmp_path, models):
    folder = encode_to_store(models[0], TEXTS, tmp_path / "s", prefix="passage: ", batch_size=2, shard_size=3)
    ids, langs, emb = read_embeddings(folder)
    assert ids == [t.id for t in TEXTS] and langs == [t.lang for t in TEXTS]
    assert len(read_meta(folder)["shards"]) == 3
    # the store encodes shard by shard: the same vectors up to float rounding of other batches
    expected = encode_texts(models[0], [t.text for t in TEXTS], "passage: ", 2, show_progress=False)
    np.testing.assert_allclose(emb, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(emb[0], emb[6], rtol=0, atol=1e-6)  # the repeated text, in another shard
    assert read_meta(folder)["model"].endswith("tiny0")


def test_load_or_encode_reuses_only_a_current_store(tmp_path, models, monkeypatch):
    calls = []
    real = store_module.encode_texts
    monkeypatch.setattr(store_module, "encode_texts", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    folder = tmp_path / "s"

    def encodes(model, texts, **kw) -> bool:
        before = len(calls)
        _, _, emb = load_or_encode(model, texts, folder, **{"prefix": "query: ", **kw})
        assert emb.shape == (len(texts), 32)
        return len(calls) > before

    assert encodes(models[0], TEXTS)  # no store yet
    assert not encodes(models[0], TEXTS)  # current: reused
    edited = [*TEXTS[:-1], Text("t6", "Where is the station now?", "en")]
    assert encodes(models[0], edited)  # a text changed
    assert not encodes(models[0], edited)
    assert encodes(models[0], edited[::-1])  # same texts, other order: ids no longer aligned
    assert encodes(models[0], edited[::-1], prefix="passage: ")  # other prefix
    assert encodes(models[1], edited[::-1], prefix="passage: ")  # other weights
    assert encodes(models[1], edited[::-1], prefix="passage: ", dtype="float16")  # other dtype
    assert not encodes(models[1], edited[::-1], prefix="passage: ", dtype="float16")
    relabeled = [Text(t.id, t.text, "xx") for t in edited[::-1]]
    assert encodes(models[1], relabeled, prefix="passage: ", dtype="float16")  # other language tags
