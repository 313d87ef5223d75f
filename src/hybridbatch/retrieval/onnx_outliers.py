"""Outlier-aware int8 for a fused BERT-family ONNX graph: per-channel activation ranges from calibration
texts, then two exact rewrites that leave the fp32 function unchanged but make 8-bit activations accurate.

Transformer activations carry a few "massive" channels (me5-small: one GELU output channel reaches 69 where
the median channel's range is 1.7; one layer-norm output channel reaches 44). Dynamic int8 quantizes each
activation tensor with one scale per batch, so those channels set the step for all the others. Measured on
XQuAD-R test with me5-small: plain dynamic int8 loses 0.006 / 0.021 / 0.024 mAP (mono / cross / multi);
with these rewrites 0.0012 / 0.0005 / 0.0024 (`benchmarks/README.md`).

1. **FFN outlier channels in fp32** (LLM.int8()-style, Dettmers et al. 2022): for each feed-forward block
   `MatMul(W1) -> BiasGelu(b1) -> MatMul(W2)`, the `outliers` GELU channels with the largest calibrated range
   are computed by a small fp32 side path `MatMul(x, W1[:, o]) -> BiasGelu(b1[o]) -> MatMul(., W2[o])`, added
   to the block's output, and removed from the main path (`W1[:, o] = 0`, `b1[o] = 0`, so GELU(0) = 0 there,
   and `W2[o] = 0`). No pass over the wide GELU tensor is added.
2. **Smoothing** (SmoothQuant, Xiao et al. 2023) of the inputs of the fused Attention (Q, K, V projection) and
   of the first FFN MatMul: `x W = (x / s)(s W)` with `s_j = max|x_j|^alpha / max|W_j|^(1 - alpha)`, one `Mul`
   on the 384-wide input. (BERT's layer norms are post-norm: their outputs are also the residual stream, so
   the scale cannot be folded into them.)

The attention output projection is left as it is (its error is already small). `quantize_dynamic` then turns
every MatMul / Attention with a constant weight into int8, the side paths included.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

ALPHA = 0.7  # measured on me5-small: 0.5 / 0.7 / 0.85 -> mean 1 - cosine 0.0050 / 0.0018 / 0.0025 (smoothing alone)
OUTLIERS = 4  # top-1 already gives most of the gain (1 - cosine 0.00073 vs 0.00070 with 4)


def recipe_tag(texts, alpha: float = ALPHA, outliers: int = OUTLIERS) -> str:
    """A short hash of everything the rewritten graph depends on besides the weights (names its file)."""
    digest = hashlib.sha256(f"v1|{alpha}|{outliers}|".encode())
    for text in texts:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()[:10]


def channel_ranges(path: str | Path, model, texts, input_names: list[str], batch_size: int = 16) -> dict[str, np.ndarray]:
    """max |x_j| per channel over the real (unpadded) tokens of `texts`, for the input of every Attention and
    MatMul with a constant weight in the graph at `path`. `model` is the SentenceTransformer (its tokenizer)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph_model = onnx.load(str(path))
    constants = {init.name for init in graph_model.graph.initializer}
    watched = sorted({node.input[0] for node in graph_model.graph.node
                      if node.op_type in ("Attention", "MatMul") and node.input[1] in constants})
    outputs = {o.name for o in graph_model.graph.output}
    for name in watched:
        if name not in outputs:
            graph_model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(graph_model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ranges: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), batch_size):
        features = model.preprocess(list(texts[start:start + batch_size]))
        feed = {n: features[n].numpy().astype(np.int64) for n in input_names}
        real = features["attention_mask"].numpy().astype(bool)
        for name, value in zip(watched, session.run(watched, feed), strict=True):
            peak = np.abs(value[real]).max(axis=0)
            ranges[name] = peak if name not in ranges else np.maximum(ranges[name], peak)
    return ranges


def rewrite_for_int8(source: str | Path, target: str | Path, ranges: dict[str, np.ndarray],
                     alpha: float | None = ALPHA, outliers: int = OUTLIERS) -> list[str]:
    """Write the graph at `source`, rewritten as the module says, to `target`; the fp32 function is unchanged.
    `alpha=None` skips smoothing, `outliers=0` the fp32 side paths. Returns the names of the side paths'
    nodes, which must stay fp32 (`quantize_dynamic(..., nodes_to_exclude=...)`)."""
    import onnx
    from onnx import helper, numpy_helper

    graph_model = onnx.load(str(source))
    graph = graph_model.graph
    constants = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def weight(name: str) -> np.ndarray:
        return numpy_helper.to_array(constants[name]).astype(np.float32)

    def store(name: str, value: np.ndarray) -> None:
        constants[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

    def add_constant(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def weighted_matmul(node) -> bool:
        return node is not None and node.op_type == "MatMul" and node.input[1] in constants

    before: dict[int, list] = {}
    after: dict[int, list] = {}
    counts = {"ffn_side_paths": 0, "smoothed_inputs": 0}
    # 1. FFN outlier channels through an fp32 side path (W1, b1 and W2 read before any smoothing)
    if outliers > 0:
        for i, down in enumerate(graph.node):
            gelu = producer.get(down.input[0]) if weighted_matmul(down) else None
            if gelu is None or gelu.op_type != "BiasGelu" or gelu.input[1] not in constants:
                continue
            up = producer.get(gelu.input[0])
            if not weighted_matmul(up) or down.input[0] not in ranges:
                continue
            chosen = np.argsort(ranges[down.input[0]])[::-1][:outliers].astype(np.int64)
            w1, b1, w2 = weight(up.input[1]), weight(gelu.input[1]), weight(down.input[1])
            p = f"ffn_outliers_{i}"
            side = [helper.make_node("MatMul", [up.input[0], add_constant(p + "_w1", w1[:, chosen])], [p + "_h"],
                                     name=p + "_up"),
                    helper.make_node("BiasGelu", [p + "_h", add_constant(p + "_b1", b1[chosen])], [p + "_a"],
                                     domain="com.microsoft", name=p + "_gelu"),
                    helper.make_node("MatMul", [p + "_a", add_constant(p + "_w2", w2[chosen])], [p + "_y"],
                                     name=p + "_down")]
            w1[:, chosen], b1[chosen], w2[chosen] = 0.0, 0.0, 0.0
            store(up.input[1], w1)
            store(gelu.input[1], b1)
            store(down.input[1], w2)
            output = down.output[0]
            down.output[0] = p + "_main"
            before.setdefault(id(down), []).extend(side)
            after.setdefault(id(down), []).append(helper.make_node("Add", [p + "_main", p + "_y"], [output],
                                                                   name=p + "_add"))
            counts["ffn_side_paths"] += 1
    # 2. smoothing of the attention input and of the first FFN MatMul's input
    if alpha is not None:
        for i, node in enumerate(graph.node):
            first_ffn = weighted_matmul(node) and any(c.op_type == "BiasGelu" for c in consumers.get(node.output[0], []))
            attention = node.op_type == "Attention" and node.input[1] in constants
            if not (first_ffn or attention) or node.input[0] not in ranges:
                continue
            w = weight(node.input[1])
            s = np.maximum(ranges[node.input[0]], 1e-5) ** alpha / np.maximum(np.abs(w).max(axis=1), 1e-5) ** (1 - alpha)
            s = np.clip(s, 1e-5, None).astype(np.float32)
            store(node.input[1], w * s[:, None])
            p = f"smooth_{i}"
            before.setdefault(id(node), []).append(helper.make_node(
                "Mul", [node.input[0], add_constant(p + "_inverse", (1.0 / s).astype(np.float32))], [p + "_x"], name=p))
            node.input[0] = p + "_x"
            counts["smoothed_inputs"] += 1
    nodes = []
    for node in list(graph.node):
        nodes += before.get(id(node), []) + [node] + after.get(id(node), [])
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(graph_model, str(target))
    logger.info("int8 rewrites: %s", counts)
    return [node.name for side in before.values() for node in side if node.name.startswith("ffn_outliers_")]


__all__ = ["ALPHA", "OUTLIERS", "channel_ranges", "recipe_tag", "rewrite_for_int8"]
