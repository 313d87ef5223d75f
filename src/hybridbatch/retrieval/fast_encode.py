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
- `"bf16"`: a bfloat16 copy of the transformer; its output is cast back to float32, so pooling and
  normalization run in fp32 and embeddings are float32. Fast only where the CPU has native bf16 (AVX-512
  BF16 or AMX); on AVX2 it is emulated and slower than fp32. On an AMD Zen 5 with `avx512_bf16` (2 cores,
  shared): x3.0 texts/s against torch fp32 at low load, x1.6-3.5 per round under load, cosine to fp32
  >= 0.99995, full XQuAD-R test mAP .8382 / .7011 / .3442 vs fp32 .8378 / .7006 / .3431 (benchmarks/README.md,
  "CPU kinds"); a bf16 copy measured faster than `torch.autocast` (x3.0 vs x2.8 at low load). On idle cores
  (the demo's 4,712 texts, a fine-tuned me5-small) bf16 14.6 s, onnx-int8 14.8 s (plus ~50 s to build the
  int8 graph once per model), fp32 47.5 s: `auto` prefers bf16 there.
- `"fp16"`: all weights cast to float16 (fast only with AVX512-FP16 / AMX-FP16). Measure before use.
- `"auto"`: the fastest kind that met the accuracy bound on this CPU kind (`AUTO_TABLE`, from
  `hybridbatch.hardware.cpu_kind`), fp32 (the model unchanged) where nothing native exists; prints one line
  saying what it chose and why, and records it on the returned model as `fast_path` (evaluation writes it
  to `metrics.json` -> `timing`).

Every lossy kind (onnx-int8, int8, bf16, fp16) is checked on the model it is built for: the built-in check
texts encoded by the copy and by the fp32 model; a copy whose smallest cosine is below `MIN_COSINE` is refused
(`FastPathInaccurate`, exit 2; `auto` then takes its next preference). The int8 calibration holds for
me5-small as released but not after fine-tuning (outlier channels move): measured, not assumed, per model.

"""

from __future__ import annotations

import copy
import warnings
from collections.abc import MutableMapping
from pathlib import Path

import torch

KINDS = ("onnx", "onnx-int8", "int8", "bf16", "fp16", "auto")
DEFAULT_KIND = "onnx"

# `--fast auto`: CPU kind -> paths in order of preference, (kind, why); the first whose runtime is installed and
# whose copy passes the accuracy check (`MIN_COSINE`) is used, else the next, else fp32. Each met mAP within 0.005
# of fp32 in all three settings on full XQuAD-R test (me5-small) on a CPU of that kind (AMX: as reported in
# issue 16); benchmarks/README.md "CPU kinds" has the measurements.
AUTO_TABLE: dict[str, tuple[tuple[str, str], ...]] = {
    "amx": (("bf16", "AMX bf16 tiles: bf16 GEMM several times fp32, x2.9 encoding reported on an AMX Xeon"),),
    "avx512-bf16": (
        ("bf16", "native AVX-512 BF16: x1.8-3.2 encoding measured on idle AMD EPYC cores, as fast as ONNX "
                 "int8 with no per-model build and accurate on fine-tuned models too (cosine to fp32 >= 0.9999)"),
        ("onnx-int8", "AVX-512 VNNI int8: outlier-aware ONNX int8")),
    "vnni": (("onnx-int8", "int8 VNNI dot products without native bf16: outlier-aware ONNX int8"),),
    "avx2": (("onnx-int8", "AVX2 only: outlier-aware ONNX int8 measured x1.85, mAP within 0.005; bf16 is "
                           "emulated"),),
}
LOSSY_KINDS = ("onnx-int8", "int8", "bf16", "fp16")
# A lossy copy is used only if the embedding of every built-in check text (`calibration_texts.py`) keeps at
# least this cosine to the fp32 model's. Measured on me5-small: zero-shot onnx-int8 min 0.9989 (full XQuAD-R
# test mAP within 0.0025 of fp32); fine-tuned 30 steps (the demo's mono / cross runs) onnx-int8 min 0.973 /
# 0.979 (mAP +0.012 monolingual and cross-lingual, -0.003 multilingual: outside the 0.005 bound); torch int8
# 0.967 zero-shot; bf16 >= 0.9999 for all three.
MIN_COSINE = 0.99


class FastPathInaccurate(ValueError):
    """A lossy fast path moved this model's embeddings too far from fp32 (exit 2: choose another `--fast`)."""

    def __init__(self, kind: str, check: dict):
        self.kind, self.check = kind, check
        others = " or ".join(f"--fast {k} ({why})" for k, why in (("bf16", "native bf16 CPUs"), ("onnx", "exact"))
                             if k != kind)
        super().__init__(
            f"--fast {kind} is not accurate for this model: an embedding of the {check['texts']} built-in check "
            f"texts has cosine {check['min_cosine']:.5f} to the fp32 model's (at least {MIN_COSINE} needed); "
            f"use {others}, or no --fast")


def make_fast(model, kind: str = DEFAULT_KIND, cache: str | Path | None = None):
    """A copy of `model` (a `SentenceTransformer` on CPU) for faster inference; `model` is unchanged.

    - `"onnx"` (default): the transformer exported to ONNX and fused, run by ONNX Runtime in fp32
      (`hybridbatch.retrieval.onnx_encoder`); built once into the cache (or `cache`, a folder);
    - `"onnx-int8"`: the same graph, outlier-aware and int8-quantized: faster, mAP within 0.005 on XQuAD-R;
    - `"int8"`: every `nn.Linear` dynamically quantized to int8 by torch (fbgemm);
    - `"bf16"`: the transformer cast to bfloat16, pooling and normalization in fp32 (native bf16 CPUs);
    - `"fp16"`: all weights cast to float16 (fast only on CPUs with native support);
    - `"auto"`: `choose_fast_kind()` for this CPU (fp32 = `model` itself where nothing native exists); a model
      on a GPU is returned as it is (the paths above are CPU paths; other kinds refuse a GPU model).

    The returned model carries `fast_path` (a dict: the kind and, for auto, why), which evaluation records.

    The copy is in eval mode and meant for inference only (no gradients).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown fast-path kind {kind!r}; expected one of {', '.join(KINDS)}")
    device = torch.device(getattr(model, "device", torch.device("cpu")))
    if device.type != "cpu" and kind == "auto":  # a grid config with `fast: auto` run on a GPU machine
        model.fast_path = {"requested": "auto", "kind": "as loaded",
                           "reason": f"model on {device.type}: the fast paths are CPU paths"}
        return model
    if device.type != "cpu":
        raise ValueError(f"make_fast is a CPU inference path; the model is on {device}")
    if kind == "auto":
        return _auto(model, cache)
    if kind.startswith("onnx"):
        fast = _onnx_copy(model, "int8" if kind == "onnx-int8" else "fp32", cache)
    else:
        fast = copy.deepcopy(model)
        fast.eval()
        if kind == "int8":
            _quantize_linear_int8(fast)
        elif kind == "bf16":
            _bf16_transformer(fast)
        else:
            fast.to(torch.float16)
        for parameter in fast.parameters():
            parameter.requires_grad_(False)
    fast.fast_path = {"kind": kind}
    if kind in LOSSY_KINDS:
        check = accuracy_check(fast, model)
        fast.fast_path["check"] = check
        if not check["min_cosine"] >= MIN_COSINE:
            raise FastPathInaccurate(kind, check)
    return fast


def accuracy_check(fast, model, texts=None) -> dict:
    """{"texts": n, "min_cosine": c}: the smallest cosine between `fast`'s and `model`'s normalized embedding
    of each built-in check text (-1 where `fast` gives a non-finite embedding)."""
    import numpy as np

    from hybridbatch.retrieval.calibration_texts import CALIBRATION_TEXTS

    texts = list(CALIBRATION_TEXTS if texts is None else texts)
    options = {"batch_size": 16, "convert_to_numpy": True, "normalize_embeddings": True, "show_progress_bar": False}
    with torch.inference_mode():
        reference = np.asarray(model.encode(texts, **options), dtype=np.float64)
        got = np.asarray(fast.encode(texts, **options), dtype=np.float64)
    cosine = np.where(np.isfinite(got).all(axis=1), np.sum(reference * got, axis=1), -1.0)
    return {"texts": len(texts), "min_cosine": round(float(cosine.min()), 5)}


def choose_fast_kind(features=None, onnxruntime_available: bool | None = None) -> tuple[str, str]:
    """(kind, why) that `--fast auto` uses on a CPU with `features` (default: this one): an entry of
    `AUTO_TABLE`, or `"fp32"` where the CPU has nothing native or the chosen path's runtime is missing."""
    from hybridbatch.hardware import cpu_features

    features = features or cpu_features()
    kind = features.kind
    if onnxruntime_available is None:
        onnxruntime_available = features.onnxruntime is not None
    if kind not in AUTO_TABLE:
        return "fp32", f"CPU kind {kind!r} (flags: {', '.join(features.flags) or 'none'}): no native bf16 or int8"
    for chosen, why in AUTO_TABLE[kind]:
        if onnxruntime_available or not chosen.startswith("onnx"):
            return chosen, f"CPU kind {kind!r}: {why}"
    return "fp32", f"CPU kind {kind!r} would use {AUTO_TABLE[kind][0][0]}, but onnxruntime is not installed"


def _auto(model, cache):
    """The first of this CPU's preferences whose copy passes the accuracy check; fp32 (`model` itself) last."""
    import sys

    chosen, why = choose_fast_kind()
    refused: list[dict] = []
    fast = model
    while chosen != "fp32":
        try:
            fast = make_fast(model, chosen, cache)
            break
        except FastPathInaccurate as err:
            refused.append({"kind": chosen, **err.check})
            print(f"hybridbatch --fast auto: {chosen} refused for this model (check texts' min cosine to fp32 "
                  f"{err.check['min_cosine']:.4f} < {MIN_COSINE})", file=sys.stderr, flush=True)
            chosen, why = _next_choice(chosen)
    print(f"hybridbatch --fast auto: {chosen} ({why})", file=sys.stderr, flush=True)
    fast.fast_path = {"requested": "auto", "kind": chosen, "reason": why, **(
        {"check": fast.fast_path["check"]} if chosen in LOSSY_KINDS else {}), **({"refused": refused} if refused else {})}
    return fast


def _next_choice(refused_kind: str) -> tuple[str, str]:
    """The preference after `refused_kind` on this CPU (runtime installed), else fp32."""
    from hybridbatch.hardware import cpu_features

    features = cpu_features()
    preferences = [(k, w) for k, w in AUTO_TABLE.get(features.kind, ())
                   if features.onnxruntime is not None or not k.startswith("onnx")]
    kinds = [k for k, _ in preferences]
    if refused_kind in kinds and kinds.index(refused_kind) + 1 < len(kinds):
        kind, why = preferences[kinds.index(refused_kind) + 1]
        return kind, f"CPU kind {features.kind!r}: {why} ({refused_kind} refused for this model)"
    return "fp32", f"{refused_kind} refused for this model and nothing else native on CPU kind {features.kind!r}"


def _bf16_transformer(model) -> None:
    """Cast `model`'s first module (the transformer) to bfloat16 in place, its tensor outputs back to
    float32, so the model's own pooling and normalization run in fp32 (a whole-model cast otherwise)."""
    first = model[0] if hasattr(model, "__getitem__") and len(model) > 1 else None
    if first is None:
        model.to(torch.bfloat16)
        return
    first.to(torch.bfloat16)
    first.register_forward_hook(_outputs_to_float32)


def _outputs_to_float32(_module, _inputs, output):
    if isinstance(output, MutableMapping):  # a dict or a tokenizer's BatchEncoding
        for key, value in list(output.items()):
            if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
                output[key] = value.float()
    return output


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
