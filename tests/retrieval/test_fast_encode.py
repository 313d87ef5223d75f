"""The opt-in fast CPU path: a quantized (or ONNX Runtime) copy that encodes like the fp32 model, leaving the
model untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridbatch.models.tiny import MULTILINGUAL_SAMPLE, build_tiny_sentence_transformer
from hybridbatch.retrieval.encode import encode_texts
from hybridbatch.retrieval.fast_encode import DEFAULT_KIND, make_fast

QUERIES = [text for text in MULTILINGUAL_SAMPLE if text.rstrip().endswith(("?", "？", "؟"))] + [
    "Which animal is lazy?",
    "What jumps over the dog?",
]
TEXTS = [*MULTILINGUAL_SAMPLE, *QUERIES, "Water", "A very long sentence " * 20]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from sentence_transformers import SentenceTransformer

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = build_tiny_sentence_transformer(tmp_path_factory.mktemp("models") / "tiny", texts=TEXTS,
                                             hidden=64, layers=2, heads=2, seed=0)
    yield SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    torch.set_num_threads(before)


def _state(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_int8_copy_encodes_like_fp32(model):
    fp32 = encode_texts(model, TEXTS, show_progress=False)
    fast = encode_texts(make_fast(model, "int8"), TEXTS, show_progress=False)
    assert fast.dtype == np.float32 and fast.shape == fp32.shape
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(fast * fp32, axis=1)
    assert cosine.min() >= 0.99, cosine.min()


def test_int8_rankings_agree(model):
    fast_model = make_fast(model, "int8")
    rankings = []
    for encoder in (model, fast_model):
        q = encode_texts(encoder, QUERIES, prefix="query: ", show_progress=False)
        c = encode_texts(encoder, MULTILINGUAL_SAMPLE, prefix="passage: ", show_progress=False)
        rankings.append(np.argsort(-(q @ c.T), axis=1, kind="stable"))
    fp32_rank, fast_rank = rankings
    assert np.mean(fp32_rank[:, 0] == fast_rank[:, 0]) >= 0.8
    overlap = [len(set(a[:5]) & set(b[:5])) / 5 for a, b in zip(fp32_rank, fast_rank, strict=True)]
    assert np.mean(overlap) >= 0.8


def test_original_model_is_untouched(model):
    before_state = _state(model)
    before_emb = encode_texts(model, TEXTS, show_progress=False)
    linear_before = sum(isinstance(m, torch.nn.Linear) for m in model.modules())

    fast = make_fast(model, "int8")

    assert fast is not model
    assert sum(isinstance(m, torch.nn.Linear) for m in model.modules()) == linear_before > 0
    assert not any(type(m).__module__.startswith("torch.ao.") for m in model.modules())
    after_state = _state(model)
    assert after_state.keys() == before_state.keys()
    for name, tensor in before_state.items():
        assert torch.equal(after_state[name], tensor), name
    np.testing.assert_array_equal(encode_texts(model, TEXTS, show_progress=False), before_emb)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_int8_copy_quantizes_every_linear(model):
    fast = make_fast(model, "int8")
    assert not any(type(m) is torch.nn.Linear for m in fast.modules())
    quantized = [m for m in fast.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__]
    assert len(quantized) == sum(type(m) is torch.nn.Linear for m in model.modules())
    assert not fast.training
    assert fast.get_embedding_dimension() == model.get_embedding_dimension()


@pytest.mark.parametrize("kind", ["bf16", "fp16"])
def test_half_precision_copies(model, kind):
    fp32 = encode_texts(model, TEXTS, show_progress=False)
    fast_model = make_fast(model, kind)
    fast = encode_texts(fast_model, TEXTS, show_progress=False)
    assert fast.dtype == np.float32
    assert np.sum(fast * fp32, axis=1).min() >= 0.98
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bf16_copy_keeps_pooling_in_fp32_and_stays_close(model):
    """The bf16 encoder (transformer in bf16, its output cast to fp32 before pooling) against fp32:
    cosine >= 0.999 on the tiny model (me5-small on XQuAD-R measured >= 0.99995); an emulated bf16 copy
    whose pooling also ran in bf16 would still pass, so also check where the dtypes change."""
    fast_model = make_fast(model, "bf16")
    assert all(p.dtype == torch.bfloat16 for p in fast_model[0].parameters())
    assert all(p.dtype == torch.float32 for m in list(fast_model)[1:] for p in m.parameters())
    features = fast_model.tokenize(TEXTS[:3])
    with torch.no_grad():
        out = fast_model[0](features)
    assert out["token_embeddings"].dtype == torch.float32
    fp32 = encode_texts(model, TEXTS, show_progress=False)
    fast = encode_texts(fast_model, TEXTS, show_progress=False)
    assert fast.dtype == np.float32
    cosine = np.sum(fast * fp32, axis=1)
    assert cosine.min() >= 0.999, cosine.min()
    assert cosine.min() < 1.0 - 1e-7  # really computed in bf16
    assert fast_model.fast_path["check"]["min_cosine"] >= 0.99
    assert {k: v for k, v in fast_model.fast_path.items() if k != "check"} == {"kind": "bf16"}


def _features(*flags, onnxruntime="1.32.0"):
    from hybridbatch.hardware import cpu_features

    text = "vendor_id\t: X\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 " + " ".join(flags) + "\n"
    features = cpu_features(text, with_libraries=False)
    return type(features)(**{**features.__dict__, "onnxruntime": onnxruntime})


@pytest.mark.parametrize(("flags", "ort", "expected"), [
    (("avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"), "1.32.0", "bf16"),
    (("avx2", "avx512f", "avx512_bf16", "avx512_vnni"), "1.32.0", "bf16"),  # as fast as int8 on idle Zen 5, no build
    (("avx2", "avx512f", "avx512_bf16", "avx512_vnni"), None, "bf16"),  # without onnxruntime: native bf16
    (("avx2", "avx512f", "avx512_vnni"), "1.32.0", "onnx-int8"),
    (("avx2", "avx_vnni"), None, "fp32"),
    (("avx2",), "1.32.0", "onnx-int8"),
    (("avx2",), None, "fp32"),  # AVX2 only and no onnxruntime: nothing native
    ((), "1.32.0", "fp32"),  # no x86 SIMD flags known (e.g. not Linux)
])
def test_auto_choice_per_cpu_kind(flags, ort, expected):
    from hybridbatch.retrieval.fast_encode import choose_fast_kind

    kind, why = choose_fast_kind(_features(*flags, onnxruntime=ort))
    assert kind == expected, why
    assert why and "\n" not in why


def test_auto_returns_the_model_itself_where_nothing_native(model, monkeypatch, capsys):
    import hybridbatch.retrieval.fast_encode as fe

    monkeypatch.setattr(fe, "choose_fast_kind", lambda: ("fp32", "CPU kind 'other': no native bf16 or int8"))
    chosen = make_fast(model, "auto")
    try:
        assert chosen is model
        assert chosen.fast_path["kind"] == "fp32" and chosen.fast_path["requested"] == "auto"
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == ["hybridbatch --fast auto: fp32 (CPU kind 'other': no native bf16 or int8)"]
    finally:
        del model.fast_path


def test_auto_leaves_a_gpu_model_as_it_is_and_other_kinds_refuse_it():
    class OnGpu:  # stands in for a SentenceTransformer on cuda: make_fast reads only `.device` before deciding
        device = torch.device("cuda", 0)

    gpu_model = OnGpu()
    assert make_fast(gpu_model, "auto") is gpu_model
    assert gpu_model.fast_path == {"requested": "auto", "kind": "as loaded",
                                   "reason": "model on cuda: the fast paths are CPU paths"}
    with pytest.raises(ValueError, match="CPU inference path"):
        make_fast(OnGpu(), "bf16")


def test_auto_builds_the_chosen_copy(model, monkeypatch):
    import hybridbatch.retrieval.fast_encode as fe

    monkeypatch.setattr(fe, "choose_fast_kind", lambda: ("bf16", "test"))
    chosen = make_fast(model, "auto")
    check = chosen.fast_path.pop("check")
    assert chosen is not model and chosen.fast_path == {"requested": "auto", "kind": "bf16", "reason": "test"}
    assert next(chosen[0].parameters()).dtype == torch.bfloat16
    assert check["texts"] > 20 and fe.MIN_COSINE <= check["min_cosine"] <= 1.0 + 1e-6


def test_a_lossy_copy_that_fails_the_check_is_refused(model, monkeypatch):
    """A fast copy whose embeddings of the check texts leave MIN_COSINE of fp32 is never used silently."""
    import hybridbatch.retrieval.fast_encode as fe

    exact = make_fast(model, "bf16")
    assert exact.fast_path["check"]["min_cosine"] >= fe.MIN_COSINE
    monkeypatch.setattr(fe, "MIN_COSINE", 1.5)  # no copy can reach it
    with pytest.raises(fe.FastPathInaccurate, match=r"--fast bf16 is not accurate for this model: .* cosine (0\.9|1\.0)\d+ .*use --fast onnx \(exact\)"):
        make_fast(model, "bf16")


def test_accuracy_check_sees_a_wrong_copy(model):
    """The check compares the copy with the model: a copy with scrambled weights scores far below 1."""
    import copy

    import hybridbatch.retrieval.fast_encode as fe

    wrong = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in wrong[0].parameters():
            parameter.copy_(parameter[torch.randperm(parameter.shape[0])] if parameter.dim() else parameter)
    assert fe.accuracy_check(wrong, model)["min_cosine"] < 0.9
    assert fe.accuracy_check(model, model)["min_cosine"] > 0.9999


def test_auto_falls_back_when_its_choice_is_refused(model, monkeypatch, capsys):
    """`auto`: a preference refused by the check -> the next one (here none is left: fp32), both said on stderr."""
    import hybridbatch.retrieval.fast_encode as fe

    monkeypatch.setattr(fe, "choose_fast_kind", lambda: ("int8", "test"))
    monkeypatch.setattr(fe, "MIN_COSINE", 1.5)
    chosen = make_fast(model, "auto")
    try:
        assert chosen is model and chosen.fast_path["kind"] == "fp32"
        assert [r["kind"] for r in chosen.fast_path["refused"]] == ["int8"]
        lines = [line for line in capsys.readouterr().err.splitlines() if "--fast auto" in line]
        assert len(lines) == 2 and "int8 refused for this model" in lines[0] and lines[1].startswith(
            "hybridbatch --fast auto: fp32 (int8 refused")
    finally:
        del model.fast_path


def test_unknown_kind(model):
    with pytest.raises(ValueError, match="unknown fast-path kind"):
        make_fast(model, "int4")


# --- ONNX Runtime copies (the default fast path) ---------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    return tmp_path_factory.mktemp("onnx")


def test_default_kind_is_the_lossless_onnx_graph():
    assert DEFAULT_KIND == "onnx"


def test_onnx_fp32_copy_matches_torch(model, onnx_cache):
    fp32 = encode_texts(model, TEXTS, show_progress=False)
    fast_model = make_fast(model, "onnx", cache=onnx_cache)
    fast = encode_texts(fast_model, TEXTS, show_progress=False)
    assert fast.dtype == np.float32 and fast.shape == fp32.shape
    np.testing.assert_allclose(fast, fp32, atol=2e-5)
    assert type(fast_model[0].auto_model).__name__ == "OnnxTransformer"
    assert type(model[0].auto_model).__name__ != "OnnxTransformer"


def test_onnx_int8_copy_encodes_like_fp32_and_ranks_alike(model, onnx_cache):
    fast_model = make_fast(model, "onnx-int8", cache=onnx_cache)
    fp32 = encode_texts(model, TEXTS, show_progress=False)
    fast = encode_texts(fast_model, TEXTS, show_progress=False)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert np.sum(fast * fp32, axis=1).min() >= 0.99
    assert not np.allclose(fast, fp32, atol=1e-5)  # it really is the quantized graph
    rankings = []
    for encoder in (model, fast_model):
        q = encode_texts(encoder, QUERIES, prefix="query: ", show_progress=False)
        c = encode_texts(encoder, MULTILINGUAL_SAMPLE, prefix="passage: ", show_progress=False)
        rankings.append(np.argsort(-(q @ c.T), axis=1, kind="stable"))
    assert np.mean(rankings[0][:, 0] == rankings[1][:, 0]) >= 0.8


def test_onnx_files_are_built_once_and_reused(model, onnx_cache):
    from hybridbatch.retrieval.calibration_texts import CALIBRATION_TEXTS
    from hybridbatch.retrieval.onnx_encoder import weights_fingerprint
    from hybridbatch.retrieval.onnx_outliers import recipe_tag

    make_fast(model, "onnx-int8", cache=onnx_cache)
    (folder,) = list(onnx_cache.iterdir())  # one folder per model, named by its weights
    assert folder.name == weights_fingerprint(model[0].auto_model)
    files = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert set(files) - {"model.onnx", "model-fused.onnx"} == {
        f"model-int8-{recipe_tag(CALIBRATION_TEXTS)}.onnx"}  # and no temp files left
    make_fast(model, "onnx-int8", cache=onnx_cache)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == files


def test_onnx_copy_leaves_the_model_untouched_and_signs_differently(model, onnx_cache):
    from hybridbatch.retrieval.embeddings import model_signature

    before_state = _state(model)
    signature = model_signature(model)
    fp32_copy = make_fast(model, "onnx", cache=onnx_cache)
    int8_copy = make_fast(model, "onnx-int8", cache=onnx_cache)
    after_state = _state(model)
    for name, tensor in before_state.items():
        assert torch.equal(after_state[name], tensor), name
    # embedding stores keyed by the signature never mix fp32, ONNX fp32 and ONNX int8 embeddings
    assert len({signature, model_signature(fp32_copy), model_signature(int8_copy)}) == 3
    assert model_signature(model) == signature


def test_weights_fingerprint_sees_every_weight(model):
    from hybridbatch.retrieval.onnx_encoder import weights_fingerprint

    hf_model = model[0].auto_model
    before = weights_fingerprint(hf_model)
    assert weights_fingerprint(hf_model) == before
    layer = hf_model.encoder.layer[-1].output.dense.weight
    kept = layer[-1, -1].item()
    with torch.no_grad():
        layer[-1, -1] += 1e-3  # beyond the first values `model_signature` samples
        try:
            assert weights_fingerprint(hf_model) != before
        finally:
            layer[-1, -1] = kept
    assert weights_fingerprint(hf_model) == before


def test_eval_fast_auto_records_cpu_and_choice_in_metrics(model, tmp_path, monkeypatch, capsys):
    """`hybridbatch eval --fast auto`: one stderr line says what was chosen; metrics.json's timing block has
    the CPU features and the fast path."""
    import json

    import hybridbatch.retrieval.fast_encode as fe
    from hybridbatch.cli import main
    from hybridbatch.data.beir_layout import write_generic
    from hybridbatch.data.benchmark import Benchmark, Text

    words = ["house", "water", "tree", "dog"]
    queries = [Text(f"q{i}", f"where is the {w}", "en") for i, w in enumerate(words)]
    corpus = [Text(f"c{i}", f"the {w} is here", "en") for i, w in enumerate(words)]
    write_generic(Benchmark("toy", queries, corpus, {f"q{i}": {f"c{i}": 1} for i in range(4)}), tmp_path / "bench")
    folder = tmp_path / "model"
    model.save(str(folder))
    monkeypatch.setattr(fe, "choose_fast_kind", lambda: ("bf16", "CPU kind 'test': native bf16"))
    assert main(["eval", "--model", str(folder), "--benchmark", str(tmp_path / "bench"),
                 "--out", str(tmp_path / "out"), "--fast", "auto"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "--fast auto" in line]
    assert err == ["hybridbatch --fast auto: bf16 (CPU kind 'test': native bf16)"]
    timing = json.loads((tmp_path / "out" / "metrics.json").read_text())["timing"]
    assert timing["fast_path"].pop("check")["min_cosine"] >= fe.MIN_COSINE
    assert timing["fast_path"] == {"requested": "auto", "kind": "bf16", "reason": "CPU kind 'test': native bf16"}
    assert timing["cpu"]["kind"] in ("amx", "avx512-bf16", "vnni", "avx2", "other")
    assert isinstance(timing["cpu"]["flags"], list)
