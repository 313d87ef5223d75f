"""Outlier-aware int8 rewrites of the fused ONNX graph: exact in fp32, and much closer to fp32 after int8 than
plain dynamic quantization when a model has massive activation channels (as real transformers do)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridbatch.models.tiny import MULTILINGUAL_SAMPLE, build_tiny_sentence_transformer

pytest.importorskip("onnxruntime")
TEXTS = [*MULTILINGUAL_SAMPLE, "Which animal is lazy?", "A very long sentence " * 12, "Water"]


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    """A tiny BERT given two massive channels per layer, the pattern measured in me5-small: one GELU channel
    of the feed-forward block always near 40 (its weight in the down projection shrunk to match), and one
    channel of the attention block's layer norm ×25."""
    from sentence_transformers import SentenceTransformer

    folder = build_tiny_sentence_transformer(tmp_path_factory.mktemp("models") / "tiny", texts=TEXTS,
                                             hidden=64, layers=2, heads=2, seed=0)
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    with torch.no_grad():
        for i, layer in enumerate(model[0].auto_model.encoder.layer):
            j = 3 + 5 * i
            layer.intermediate.dense.bias[j] = 40.0
            layer.output.dense.weight[:, j] /= 40.0
            layer.attention.output.LayerNorm.weight[7 + i] *= 25.0
    return model


@pytest.fixture(scope="module")
def graphs(outlier_model, tmp_path_factory):
    from hybridbatch.retrieval.onnx_encoder import _quantize, input_names_of, onnx_model_file

    cache = tmp_path_factory.mktemp("onnx")
    fused = onnx_model_file(outlier_model, "fp32", cache)
    plain = fused.with_name("plain-int8.onnx")
    _quantize(fused, plain)
    return {"fused": fused, "plain": plain, "rewritten": onnx_model_file(outlier_model, "int8", cache),
            "names": input_names_of(outlier_model)}


def _hidden(path, model, names, texts=TEXTS):
    """Last hidden states of the real tokens, one row per token, from the ONNX file at `path`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features = model.preprocess(texts)
    out = session.run(["last_hidden_state"], {n: features[n].numpy().astype(np.int64) for n in names})[0]
    return out[features["attention_mask"].numpy().astype(bool)]


def _mean_error(a, b):
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.mean(1.0 - cosine))


def test_rewrites_leave_the_fp32_function_unchanged(outlier_model, graphs, tmp_path):
    from hybridbatch.retrieval.calibration_texts import CALIBRATION_TEXTS
    from hybridbatch.retrieval.onnx_outliers import channel_ranges, rewrite_for_int8

    ranges = channel_ranges(graphs["fused"], outlier_model, CALIBRATION_TEXTS, graphs["names"])
    rewritten = tmp_path / "rewritten.onnx"
    keep_fp32 = rewrite_for_int8(graphs["fused"], rewritten, ranges)
    assert len(keep_fp32) == 2 * 3  # one side path (MatMul, BiasGelu, MatMul) per layer
    reference = _hidden(graphs["fused"], outlier_model, graphs["names"])
    np.testing.assert_allclose(_hidden(rewritten, outlier_model, graphs["names"]), reference, atol=2e-5, rtol=1e-4)


def test_the_massive_channels_are_found(outlier_model, graphs):
    from hybridbatch.retrieval.onnx_outliers import channel_ranges

    ranges = channel_ranges(graphs["fused"], outlier_model, TEXTS, graphs["names"])
    gelu = [name for name in ranges if "intermediate_act_fn" in name or "Gelu" in name or "gelu" in name]
    assert gelu, sorted(ranges)
    for i, name in enumerate(sorted(gelu)):
        assert int(np.argmax(ranges[name])) == 3 + 5 * i
        assert ranges[name].max() > 35.0


def test_rewritten_int8_is_much_closer_to_fp32_than_plain_int8(outlier_model, graphs):
    names = graphs["names"]
    reference = _hidden(graphs["fused"], outlier_model, names)
    plain = _mean_error(reference, _hidden(graphs["plain"], outlier_model, names))
    rewritten = _mean_error(reference, _hidden(graphs["rewritten"], outlier_model, names))
    print(f"mean 1 - cosine per token: plain int8 {plain:.5f}, rewritten int8 {rewritten:.5f}")
    assert rewritten < plain / 3, (rewritten, plain)


def test_side_paths_stay_fp32_in_the_quantized_file(graphs):
    import onnx

    graph = onnx.load(str(graphs["rewritten"])).graph
    side_weights = {i.name: i.data_type for i in graph.initializer if i.name.startswith("ffn_outliers_")}
    assert len(side_weights) == 2 * 3 and set(side_weights.values()) == {onnx.TensorProto.FLOAT}
    readers = {n.op_type for n in graph.node for name in n.input if name in side_weights}
    assert readers == {"MatMul", "BiasGelu"}  # fp32 kernels read them, not MatMulInteger
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) == 2 * 3  # the main path is int8


def test_channel_ranges_ignore_padding(outlier_model, graphs):
    from hybridbatch.retrieval.onnx_outliers import channel_ranges

    batched = channel_ranges(graphs["fused"], outlier_model, TEXTS, graphs["names"], batch_size=len(TEXTS))
    single = channel_ranges(graphs["fused"], outlier_model, TEXTS, graphs["names"], batch_size=1)
    assert batched.keys() == single.keys()
    for name in batched:
        np.testing.assert_allclose(batched[name], single[name], rtol=1e-4, atol=1e-5)


def test_recipe_tag_changes_with_texts_and_settings():
    from hybridbatch.retrieval.onnx_outliers import recipe_tag

    base = recipe_tag(["a", "b"])
    assert base == recipe_tag(["a", "b"])
    assert len({base, recipe_tag(["a", "c"]), recipe_tag(["ab"]), recipe_tag(["a", "b"], alpha=0.5),
                recipe_tag(["a", "b"], outliers=1)}) == 5
