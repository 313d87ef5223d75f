"""ONNX Runtime inference for a SentenceTransformer's transformer: export, fuse, quantize, run.

`onnx_model_file(model, kind)` builds (once, into the cache) an ONNX file of the model's transformer:

1. export: `torch.onnx.export` of the Hugging Face model with eager attention (the graph ONNX Runtime's
   transformer optimizer recognizes), dynamic batch and sequence axes, opset 17;
2. fuse: `onnxruntime.transformers.optimizer` (BERT-family fusions: EmbedLayerNormalization, Attention,
   SkipLayerNormalization, BiasGelu);
3. for `kind="int8"`: per-channel activation ranges measured on built-in calibration texts
   (`calibration_texts.py`), the exact outlier rewrites of `onnx_outliers.py` (FFN outlier channels in fp32,
   smoothed attention and FFN inputs), then `onnxruntime.quantization.quantize_dynamic` with per-channel
   weights and reduced range (7-bit weights: AVX2 CPUs without VNNI multiply u8 x s8 pairs into saturating
   int16 sums, and the reduced range keeps those sums exact). Activations are quantized per batch at run time.

Files live under `cache_dir("onnx", <fingerprint>)`, the fingerprint being sha256 over the model's class,
config and every weight byte, so a fine-tuned model never reuses another's file. Each step writes to a temp
file and renames.

`OnnxTransformer` stands in for the Hugging Face model inside the SentenceTransformer's first module: the
tokenizer, pooling and normalization stay the model's own; only the transformer runs in ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

ONNX_KINDS = ("fp32", "int8")
OPSET = 17


def weights_fingerprint(hf_model: torch.nn.Module) -> str:
    """sha256 over the model's class, config and every parameter and buffer byte (about 1 s per 500 MB)."""
    digest = hashlib.sha256(type(hf_model).__name__.encode())
    config = getattr(hf_model, "config", None)
    if config is not None:
        digest.update(config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for name, tensor in list(hf_model.state_dict().items()):
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:24]


def input_names_of(model) -> list[str]:
    """The tokenizer outputs the transformer takes (input_ids, attention_mask and, for BERT, token_type_ids)."""
    features = model.preprocess(["a"])
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in features]


def onnx_model_file(model, kind: str = "int8", cache: str | Path | None = None) -> Path:
    """The ONNX file of `model`'s transformer (a SentenceTransformer), built into the cache if missing:
    `<cache or ~/.cache/hybridbatch/onnx>/<weights fingerprint>/model[-fused|-int8-<recipe>].onnx`, the recipe
    tag hashing the calibration texts and the rewrite settings."""
    if kind not in ONNX_KINDS:
        raise ValueError(f"unknown ONNX kind {kind!r}; expected one of {', '.join(ONNX_KINDS)}")
    from hybridbatch.paths import cache_dir

    hf_model = model[0].auto_model
    fingerprint = weights_fingerprint(hf_model)
    # `cache` is a root like the default one: each model's files sit in a folder named by its weights' hash
    folder = Path(cache) / fingerprint if cache is not None else cache_dir("onnx", fingerprint)
    folder.mkdir(parents=True, exist_ok=True)
    names = input_names_of(model)
    from hybridbatch.retrieval.calibration_texts import CALIBRATION_TEXTS
    from hybridbatch.retrieval.onnx_outliers import recipe_tag

    exported, fused = folder / "model.onnx", folder / "model-fused.onnx"
    quantized = folder / f"model-int8-{recipe_tag(CALIBRATION_TEXTS)}.onnx"
    if not exported.exists():
        _atomic(exported, lambda tmp: _export(hf_model, model, names, tmp))
    if not fused.exists():
        _atomic(fused, lambda tmp: _fuse(exported, tmp, hf_model.config))
    if kind == "fp32":
        return fused
    if not quantized.exists():
        _atomic(quantized, lambda tmp: _rewrite_and_quantize(fused, tmp, model, names, CALIBRATION_TEXTS))
    return quantized


class OnnxTransformer(torch.nn.Module):
    """Runs an ONNX file of a transformer with ONNX Runtime; called like the Hugging Face model it replaces
    (keyword tensors in, `{"last_hidden_state": tensor}` out). Inference only."""

    def __init__(self, path: str | Path, config, input_names: list[str], threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = Path(path)
        self.config = config
        self.input_names = list(input_names)
        # Not a weight: it makes `model_signature` (embedding-store fingerprints) tell this file apart.
        digest = hashlib.sha256(f"{self.path.parent.name}/{self.path.name}".encode()).digest()
        self.onnx_signature = torch.nn.Parameter(torch.tensor(list(digest), dtype=torch.float32),
                                                 requires_grad=False)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **_ignored):
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feed = {}
        for name in self.input_names:
            value = given[name]
            if value is None and name == "token_type_ids":
                value = torch.zeros_like(input_ids)
            feed[name] = value.detach().cpu().numpy().astype(np.int64, copy=False)
        hidden = self.session.run(["last_hidden_state"], feed)[0]
        return {"last_hidden_state": torch.from_numpy(hidden)}


def _export(hf_model, model, names: list[str], target: Path) -> None:
    import copy

    export_model = copy.deepcopy(hf_model).eval()
    if hasattr(export_model, "set_attn_implementation"):
        export_model.set_attn_implementation("eager")
    else:  # pragma: no cover - older transformers
        export_model.config._attn_implementation = "eager"

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *tensors):
            return self.inner(**dict(zip(names, tensors, strict=True))).last_hidden_state

    features = model.preprocess(["an example sentence to trace", "another one"])
    args = tuple(features[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(Wrapped(export_model), args, str(target), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)


def _fuse(source: Path, target: Path, config) -> None:
    from onnxruntime.transformers import optimizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = optimizer.optimize_model(str(source), model_type="bert", num_heads=config.num_attention_heads,
                                         hidden_size=config.hidden_size)
    logger.info("ONNX fusions: %s", {k: v for k, v in fused.get_fused_operator_statistics().items() if v})
    fused.save_model_to_file(str(target))


def _rewrite_and_quantize(source: Path, target: Path, model, names: list[str], texts) -> None:
    from hybridbatch.retrieval.onnx_outliers import channel_ranges, rewrite_for_int8

    ranges = channel_ranges(source, model, texts, names)
    rewritten = target.with_name(target.name + ".rewritten.onnx")  # removed by _atomic with the temp file
    keep_fp32 = rewrite_for_int8(source, rewritten, ranges)
    _quantize(rewritten, target, keep_fp32)


def _quantize(source: Path, target: Path, keep_fp32: list[str] | None = None) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def not_preprocessing_advice(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(not_preprocessing_advice)  # ORT's generic advice, logged on the root logger
    try:
        quantize_dynamic(str(source), str(target), per_channel=True, reduce_range=True,
                         weight_type=QuantType.QInt8, nodes_to_exclude=keep_fp32 or [],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.removeFilter(not_preprocessing_advice)


def _atomic(target: Path, build) -> None:
    """Build `target` through a temp file in its folder, then rename (no half-written model files)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        build(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        for extra in target.parent.glob(f"{tmp.name}*"):  # external-data side files, if any
            extra.unlink(missing_ok=True)
    logger.info("wrote %s (%.1f MB)", target, target.stat().st_size / 1e6)


__all__ = ["ONNX_KINDS", "OnnxTransformer", "input_names_of", "onnx_model_file", "weights_fingerprint"]
