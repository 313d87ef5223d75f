"""An opt-in faster CPU inference path for evaluation: a copy of a model with a cheaper runtime or arithmetic.

`make_fast(model, kind)` returns a copy of a `SentenceTransformer` (the original is left untouched) whose
tokenizer, pooling and normalization are the model's own; only the transformer changes. The copy is a normal
`SentenceTransformer`, so `encode_texts`, `evaluate_model` and the embedding stores use it unchanged
(`hybridbatch eval --fast KIND`, `hybridbatch encode --fast KIND`).

Kinds, measured on full XQuAD-R test (11 languages, 6,358 queries, 12,783 texts; me5-small, length 128,
the project's 2-core AVX2 CPU without VNNI / AVX512 / AMX, torch 2.13.0, onnxruntime 1.32.0;
`benchmarks/bench_fast_path.py`, results in benchmarks/results/fast_path_me5-small_<kind>.json):

- `"onnx"` (default): the transformer exported to ONNX, BERT fusions (attention, skip-layer-norm, bias-GELU),
  run by ONNX Runtime in fp32 (`retrieval/onnx_encoder.py`; built once per model into the cache).
  x1.19 texts/s against torch fp32 (800-text sample, best of 3), embeddings equal to ~1e-7, mAP unchanged
  (see the benchmark JSON).
- `"onnx-int8"`: the same graph made outlier-aware (`retrieval/onnx_outliers.py`: the few massive FFN
  activation channels computed in fp32, attention and FFN inputs smoothed, calibrated on built-in texts),
  then int8-quantized (per-channel weights, reduced range, activations per batch at run time).
  **x1.85** on the sample (target x2: missed on this CPU), mAP -0.0012 / -0.0005 / -0.0024 (mono / cross /
  multi; within the 0.005 bound), rank distance 633 vs 625. Plain dynamic int8 of the same graph (no rewrites)
  lost 0.006 / 0.021 / 0.024.
- `"int8"`: torch dynamic quantization of every `nn.Linear` (per-tensor weights): x1.41, mAP -0.016 to
  -0.051 on a 400-query check; superseded by `"onnx-int8"`.
- `"bf16"` / `"fp16"`: the weights cast; fast only on CPUs with native support (AVX512-BF16 / AMX /
  AVX512-FP16), which this one lacks. Measure before use.

"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch

KINDS = ("onnx", "onnx-int8", "int8", "bf16", "fp16")
DEFAULT_KIND = "onnx"


def make_fast(model, kind: str = DEFAULT_KIND, cache: str | Path | None = None):
    """A copy of `model` (a `SentenceTransformer` on CPU) for faster inference; `model` is unchanged.

    - `"onnx"` (default): the transformer exported to ONNX and fused, run by ONNX Runtime in fp32
      (`hybridbatch.retrieval.onnx_encoder`); built once into the cache (or `cache`, a folder);
    - `"onnx-int8"`: the same graph, outlier-aware and int8-quantized: faster, mAP within 0.005 on XQuAD-R;
    - `"int8"`: every `nn.Linear` dynamically quantized to int8 by torch (fbgemm);
    - `"bf16"` / `"fp16"`: all weights cast to bfloat16 / float16 (fast only on CPUs with native support).

    The copy is in eval mode and meant for inference only (no gradients).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown fast-path kind {kind!r}; expected one of {', '.join(KINDS)}")
    device = getattr(model, "device", torch.device("cpu"))
    if torch.device(device).type != "cpu":
        raise ValueError(f"make_fast is a CPU inference path; the model is on {device}")
    if kind.startswith("onnx"):
        return _onnx_copy(model, "int8" if kind == "onnx-int8" else "fp32", cache)
    fast = copy.deepcopy(model)
    fast.eval()
    if kind == "int8":
        _quantize_linear_int8(fast)
    else:
        fast.to(torch.bfloat16 if kind == "bf16" else torch.float16)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    return fast


def _onnx_copy(model, onnx_kind: str, cache):
    """A copy of `model` whose first module runs its transformer in ONNX Runtime."""
    from hybridbatch.retrieval.onnx_encoder import OnnxTransformer, input_names_of, onnx_model_file

    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise ImportError("the ONNX fast path needs onnxruntime: pip install -e '.[fast]'") from err
    transformer = model[0]
    if not hasattr(transformer, "auto_model"):
        raise ValueError(f"the ONNX fast path needs a Transformer first module, not {type(transformer).__name__}")
    path = onnx_model_file(model, onnx_kind, cache)
    hf_model = transformer.auto_model
    # Copy the SentenceTransformer without its Hugging Face model (the ONNX session replaces it).
    memo = {id(hf_model): None}
    fast = copy.deepcopy(model, memo)
    fast[0].model = OnnxTransformer(path, hf_model.config, input_names_of(model))
    fast[0].unpad_inputs = False  # ONNX takes padded batches
    fast.eval()
    return fast


def _quantize_linear_int8(module: torch.nn.Module) -> None:
    """Replace the `nn.Linear` layers of `module` in place by dynamically quantized int8 ones."""
    from torch.ao.quantization import quantize_dynamic

    if not torch.backends.quantized.supported_engines or torch.backends.quantized.engine == "none":
        raise RuntimeError("this torch build has no quantized CPU engine (fbgemm / x86 / qnnpack)")
    with warnings.catch_warnings():
        # torch.ao.quantization's eager API is deprecated in favour of torchao but still works (torch 2.13)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*")
        quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
