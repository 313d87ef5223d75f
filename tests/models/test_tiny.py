"""The tiny test encoder: builds fast, loads like a real model, and is the same every time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer

from hybridbatch.models.offline import COMPLETE_MARKER
from hybridbatch.models.tiny import build_tiny_sentence_transformer

TEXTS = ["Where is the station?", "Wo ist der Bahnhof?", "车站在哪里？", "Где вокзал?", "محطة القطار"]


def load(path) -> SentenceTransformer:
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def test_builds_and_encodes(tmp_path):
    path = build_tiny_sentence_transformer(tmp_path / "tiny")
    assert (path / COMPLETE_MARKER).is_file()
    model = load(path)
    embeddings = model.encode(TEXTS)
    assert embeddings.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert len({tuple(np.round(e, 5)) for e in embeddings}) == len(TEXTS)


def test_tokenizer_loads_with_auto_tokenizer(tmp_path):
    path = build_tiny_sentence_transformer(tmp_path / "tiny", texts=["zebra crossing"], max_seq_length=64)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    encoded = tokenizer("zebra crossing 车站")
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens == ["[CLS]", "zebra", "crossing", "车", "站", "[SEP]"]
    assert tokenizer.pad_token == "[PAD]" and tokenizer.mask_token == "[MASK]"
    assert tokenizer.model_max_length == 64
    assert load(path).max_seq_length == 64


def test_deterministic_given_seed(tmp_path):
    a = load(build_tiny_sentence_transformer(tmp_path / "a", seed=3)).encode(TEXTS)
    b = load(build_tiny_sentence_transformer(tmp_path / "b", seed=3)).encode(TEXTS)
    c = load(build_tiny_sentence_transformer(tmp_path / "c", seed=4)).encode(TEXTS)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_global_rng_untouched(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_sentence_transformer(tmp_path / "tiny")
    assert torch.equal(torch.rand(3), expected)


def test_sizes_and_prompts(tmp_path):
    prompts = {"query": "query: ", "passage": "passage: "}
    path = build_tiny_sentence_transformer(tmp_path / "t", hidden=48, layers=1, heads=3, prompts=prompts)
    model = load(path)
    assert model.get_embedding_dimension() == 48
    assert model[0].model.config.num_hidden_layers == 1
    assert model.prompts["query"] == "query: " and model.prompts["document"] == "passage: "
    plain = model.encode(["passage: hello"])
    np.testing.assert_allclose(model.encode_document(["hello"]), plain, atol=1e-6)


def test_reuses_same_build_and_replaces_other(tmp_path):
    dest = tmp_path / "tiny"
    build_tiny_sentence_transformer(dest, seed=0)
    marker = (dest / COMPLETE_MARKER).stat().st_mtime_ns
    build_tiny_sentence_transformer(dest, seed=0)
    assert (dest / COMPLETE_MARKER).stat().st_mtime_ns == marker
    before = load(dest).encode(TEXTS)
    build_tiny_sentence_transformer(dest, seed=1)
    assert not np.allclose(load(dest).encode(TEXTS), before)
    assert not [p for p in tmp_path.iterdir() if p.name != "tiny"]  # no temp folders left behind


def test_does_not_replace_a_foreign_complete_folder(tmp_path):
    dest = tmp_path / "other"
    dest.mkdir()
    (dest / COMPLETE_MARKER).write_text('{"kind": "something-else"}')
    with pytest.raises(FileExistsError):
        build_tiny_sentence_transformer(dest)
