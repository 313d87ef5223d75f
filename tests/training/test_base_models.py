"""The paper's other base-model shapes, end to end on tiny random copies: a plain XLM-R checkpoint (mean
pooling added on load), a LaBSE-shaped BERT sentence-transformers folder (CLS + Dense + normalize), and a
Gemma3 encoder (EmbeddingGemma's architecture) with frozen word embeddings."""

from __future__ import annotations

import pytest
import torch

from helpers.training_toys import base_config, toy_groups, write_toy_benchmark
from hybridbatch.models.registry import load_sentence_transformer, resolve_model
from hybridbatch.models.tiny import MULTILINGUAL_SAMPLE, _build_tokenizer, _save_tokenizer
from hybridbatch.training.config import config_from_dict
from hybridbatch.training.trainer import train

MAX_LEN = 32


def _texts() -> list[str]:
    return [t for g in toy_groups() for t in [*g.queries.values(), *g.positives.values()]] + MULTILINGUAL_SAMPLE


def _tokenizer(folder):
    tokenizer = _build_tokenizer(_texts(), 600)
    _save_tokenizer(folder, tokenizer, MAX_LEN)
    return tokenizer


def _save_plain(folder, model) -> None:
    with torch.random.fork_rng(devices=[]):
        model.save_pretrained(str(folder))


@pytest.fixture(scope="module")
def tiny_xlmr(tmp_path_factory):
    """A plain transformers XLM-R folder (config.json + weights + tokenizer, no modules.json)."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    folder = tmp_path_factory.mktemp("m") / "tiny-xlm-roberta"
    folder.mkdir()
    tokenizer = _tokenizer(folder)
    pad = tokenizer.token_to_id("[PAD]")
    config = XLMRobertaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64, pad_token_id=pad,
                              max_position_embeddings=MAX_LEN + pad + 2, type_vocab_size=1)
    torch.manual_seed(0)
    _save_plain(folder, XLMRobertaModel(config, add_pooling_layer=False))
    return folder


@pytest.fixture(scope="module")
def tiny_labse(tmp_path_factory):
    """LaBSE's module layout: BERT -> CLS pooling -> Dense (tanh) -> Normalize, as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    plain = tmp_path_factory.mktemp("m") / "bert"
    plain.mkdir()
    tokenizer = _tokenizer(plain)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=MAX_LEN,
                        pad_token_id=tokenizer.token_to_id("[PAD]"))
    torch.manual_seed(0)
    _save_plain(plain, BertModel(config))
    transformer = Transformer(str(plain), model_kwargs={"local_files_only": True})
    model = SentenceTransformer(modules=[transformer, Pooling(32, pooling_mode="cls"),
                                         Dense(32, 32, activation_function=torch.nn.Tanh()), Normalize()])
    folder = plain.parent / "tiny-labse"
    model.save(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory):
    """A plain Gemma3 text encoder (bidirectional attention, as EmbeddingGemma)."""
    from transformers import Gemma3TextConfig, Gemma3TextModel

    folder = tmp_path_factory.mktemp("m") / "tiny-gemma3"
    folder.mkdir()
    tokenizer = _tokenizer(folder)
    config = Gemma3TextConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                              max_position_embeddings=MAX_LEN * 4, sliding_window=16,
                              pad_token_id=tokenizer.token_to_id("[PAD]"), use_bidirectional_attention=True)
    torch.manual_seed(0)
    _save_plain(folder, Gemma3TextModel(config))
    return folder


def test_plain_checkpoint_gets_mean_pooling_and_normalize(tiny_xlmr):
    resolved = resolve_model(str(tiny_xlmr))
    assert resolved.pooling == "mean" and resolved.is_local
    model = load_sentence_transformer(str(tiny_xlmr))
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Transformer", "Pooling", "Normalize"]
    assert model[1].get_config_dict()["pooling_mode"] == "mean"
    emb = model.encode(["where is the zorbaxkel?", "wo ist das zorbaxkel?"], convert_to_tensor=True)
    assert emb.shape == (2, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("which", ["tiny_xlmr", "tiny_labse", "tiny_gemma3"])
def test_train_a_few_steps_then_evaluate(which, request, tmp_path, toy_data):
    folder = request.getfixturevalue(which)
    bench = write_toy_benchmark(tmp_path / "bench", toy_groups()[:6])
    config = config_from_dict(base_config(folder, toy_data, tmp_path / "run", steps=3,
                                          freeze_word_embeddings=True,
                                          eval={"benchmarks": [str(bench)], "final": True}))
    before = load_sentence_transformer(str(folder))
    embed_before = before.transformers_model.get_input_embeddings().weight.detach().clone()
    run_dir = train(config)

    from hybridbatch.training.rundir import read_metrics

    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if "eval" in r]
    scores = evals[-1]["eval"][str(bench)]
    assert 0 < scores["multilingual_map"] <= 1 and 0 < scores["monolingual_map"] <= 1
    trained = load_sentence_transformer(str(run_dir / "model"))
    assert [type(m).__name__ for m in trained] == [type(m).__name__ for m in before]
    embed_after = trained.transformers_model.get_input_embeddings().weight
    assert torch.equal(embed_before, embed_after)  # frozen (Gemma3: its scaled word embedding too)
    original, now = dict(before.named_parameters()), dict(trained.named_parameters())
    assert any(not torch.equal(original[n], now[n]) for n in now if "embed" not in n)  # the rest trained
    card = (run_dir / "model" / "README.md").read_text(encoding="utf-8")
    assert ("Gemma Terms of Use" in card) == (which == "tiny_gemma3")  # a fine-tuned Gemma keeps its license


def test_float16_is_refused_for_gemma3_models_whatever_their_folder_name(tiny_gemma3, tiny_xlmr):
    from hybridbatch.data.errors import InputError
    from hybridbatch.models.embeddinggemma import check_precision

    gemma = load_sentence_transformer(str(tiny_gemma3))
    with pytest.raises(InputError, match="float16"):
        check_precision("runs/x/model", "fp16", gemma)
    check_precision("runs/x/model", "bf16", gemma)
    check_precision("runs/x/model", "fp16", load_sentence_transformer(str(tiny_xlmr)))
