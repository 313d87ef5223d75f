"""An opt-in faster CPU inference path for evaluation: a copy of a model with cheaper arithmetic.

`make_fast(model)` returns a copy of a `SentenceTransformer` whose `nn.Linear` layers are dynamically
quantized to int8 (`torch.ao.quantization.quantize_dynamic`: int8 weights, activations quantized per
batch at run time, fbgemm/x86 kernels); the original model is left untouched. The copy is a normal
`SentenceTransformer`, so `encode_texts` and `evaluate_model` use it unchanged.

Measured (the project's 2-core AVX2 CPU, torch 2.13.0, idle; `benchmarks/bench_fast_path.py --benchmark
'xquad-r:test@en,de' --limit 200`, results in benchmarks/results/fast_path_me5-small_quick.json):

- int8 me5-small: 43.8 vs 31.1 texts/s, **x1.41** (target 2x: not reached), embeddings at cosine 0.958-0.98
  to fp32; and it **fails the accuracy bound**: mAP -0.024 monolingual, -0.016 cross-lingual, -0.051
  multilingual on 400 queries (bound 0.005). me5-small here is already 4-bit-dequantized and its pooled
  setting is sensitive to small shifts between languages. So int8 stays opt-in and is not used by default;
  a better fast path (ONNX Runtime with int8 per-channel, or quantizing only the feed-forward layers) is open.
- a 384 -> 1536 -> 384 Linear/GELU block alone (one thread) ran 1.27x faster in int8 than fp32.
- On a tiny random BERT (the unit test) int8 embeddings keep cosine >= 0.99 to fp32 and the same rankings.
- bf16 / fp16 (`kind="bf16"`, `"fp16"`: the weights cast) need native support (AVX512-BF16 / AMX /
  AVX512-FP16) to be fast; this CPU has none of them. Measure before use.

Only weights and matrix products change: tokenization, pooling and normalization are the model's own, and
embeddings come back as float32.
"""

from __future__ import annotations

import copy
import warnings

import torch

KINDS = ("int8", "bf16", "fp16")


def make_fast(model, kind: str = "int8"):
    """A copy of `model` (a `SentenceTransformer` on CPU) for faster inference; `model` is unchanged.

    - `"int8"`: every `nn.Linear` dynamically quantized to int8 (the default; the measured fast path);
    - `"bf16"` / `"fp16"`: all weights cast to bfloat16 / float16 (fast only on CPUs with native support).

    The copy is in eval mode and meant for inference only (quantized layers have no gradients).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown fast-path kind {kind!r}; expected one of {', '.join(KINDS)}")
    device = getattr(model, "device", torch.device("cpu"))
    if torch.device(device).type != "cpu":
        raise ValueError(f"make_fast is a CPU inference path; the model is on {device}")
    fast = copy.deepcopy(model)
    fast.eval()
    if kind == "int8":
        _quantize_linear_int8(fast)
    else:
        fast.to(torch.bfloat16 if kind == "bf16" else torch.float16)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
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
