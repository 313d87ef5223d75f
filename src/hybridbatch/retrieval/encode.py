"""Encoding texts with a sentence-transformers model: each distinct text once, batches of similar length.

Sorting by token count (not character count, as `SentenceTransformer.encode` does) keeps padding low for
scripts whose characters carry very different amounts of text (Thai, Chinese, Hindi in one pool).

`model_signature(model)` names everything here that decides the embeddings (embedding stores key on it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def set_threads(threads: int | None = None) -> int:
    """Use every core the process may run on (or `threads`), unless OMP_NUM_THREADS says otherwise."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS")
        threads = int(env) if env and env.isdigit() else len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def encode_texts(model, texts: list[str], prefix: str = "", batch_size: int = 64, normalize: bool = True,
                 show_progress: bool = True, desc: str = "encoding") -> np.ndarray:
    """(len(texts), dim) float32 embeddings of `prefix + text`, in the order of `texts`."""
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    distinct: dict[str, int] = {}
    slot = np.array([distinct.setdefault(prefix + t, len(distinct)) for t in texts], dtype=np.int64)
    unique = list(distinct)
    lengths = _token_lengths(model, unique)
    order = np.argsort(-lengths, kind="stable")  # longest first: the peak memory shows up at once
    dim = model.get_embedding_dimension()
    out = np.empty((len(unique), dim), dtype=np.float32)
    model.eval()
    bar = tqdm(total=len(unique), desc=desc, unit="text", disable=not show_progress, leave=False)
    with torch.inference_mode():
        for start in range(0, len(unique), batch_size):
            idx = order[start:start + batch_size]
            features = model.preprocess([unique[i] for i in idx])
            features = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
            emb = model.forward(features)["sentence_embedding"].float()
            if normalize:
                emb = torch.nn.functional.normalize(emb, dim=-1)
            out[idx] = emb.cpu().numpy()
            bar.update(len(idx))
    bar.close()
    if len(unique) < len(texts):
        log.info("%s: %d texts, %d distinct", desc, len(texts), len(unique))
    return out[slot]


def _token_lengths(model, texts: list[str]) -> np.ndarray:
    tokenizer = model.tokenizer
    max_len = model.max_seq_length or 512
    encoded = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_len,
                        return_attention_mask=False, return_token_type_ids=False)
    return np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)


# Config keys that say where a model came from or which library wrote it, not how it computes.
_UNHASHED_CONFIG_KEYS = ("_name_or_path", "name_or_path", "transformers_version", "_commit_hash", "_attn_implementation")


def model_signature(model) -> str:
    """sha256 over everything of `model` (a `SentenceTransformer`) that decides what `encode_texts` returns.

    Covered: every parameter and buffer byte (with name, shape and dtype; quantized packed weights too), the
    class of every submodule (so an ONNX or int8 copy differs from its source), each module's config
    (pooling mode, normalization, Dense activations; the transformer's Hugging Face config without its path),
    the tokenizer (its serialized `tokenizer.json`: vocabulary, normalizer such as lowercasing, truncation and
    padding side), `max_seq_length`, and a fast-path tag (`model.fast_path["kind"]`) where one is set. The
    prefix is hashed by the store itself (`texts_fingerprint`). Independent of where the model was loaded
    from, so `me5-small` and its cache folder share stores. Cost on me5-small (470 MB of weights, 8 MB
    tokenizer): 0.6-0.9 s on one core of a 2-core AMD EPYC with SHA extensions (loading it takes ~5 s).
    """
    digest = hashlib.sha256(f"max_seq_length={getattr(model, 'max_seq_length', None)}".encode())
    fast_path = getattr(model, "fast_path", None)
    kind = fast_path.get("kind") if isinstance(fast_path, dict) else None
    digest.update(f"fast_path={kind if kind not in (None, 'fp32') else None}".encode())
    for name, module in model.named_modules():
        digest.update(f"module {name} {type(module).__module__}.{type(module).__qualname__}\n".encode())
    for index, module in enumerate(model):
        digest.update(f"config {index} {_json(_module_config(module))}\n".encode())
    _update_tokenizer(digest, getattr(model, "tokenizer", None))
    with torch.no_grad():
        for name, value in model.state_dict().items():
            _update_tensor(digest, name, value)
    return digest.hexdigest()


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=repr, ensure_ascii=False)


def _module_config(module) -> dict:
    config = {}
    if hasattr(module, "get_config_dict"):
        config["module"] = module.get_config_dict()
    hf_config = getattr(getattr(module, "auto_model", None), "config", None)
    if hf_config is not None and hasattr(hf_config, "to_dict"):
        config["hf"] = {k: v for k, v in hf_config.to_dict().items() if k not in _UNHASHED_CONFIG_KEYS}
    return config


def _update_tokenizer(digest, tokenizer) -> None:
    if tokenizer is None:
        digest.update(b"tokenizer None")
        return
    digest.update(f"tokenizer {type(tokenizer).__qualname__} {getattr(tokenizer, 'padding_side', None)} "
                  f"{getattr(tokenizer, 'truncation_side', None)} {getattr(tokenizer, 'model_max_length', None)} "
                  f"{getattr(tokenizer, 'do_lower_case', None)}\n".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(_serialized_without_call_state(backend).encode("utf-8"))
    else:  # a slow tokenizer: its vocabulary and special tokens
        digest.update(_json(sorted(tokenizer.get_vocab().items())).encode("utf-8"))
        digest.update(_json(getattr(tokenizer, "special_tokens_map", {})).encode("utf-8"))


def _serialized_without_call_state(backend) -> str:
    """`tokenizer.json` of a `tokenizers.Tokenizer` without the truncation / padding settings that the last
    call left behind (transformers sets them per call; `max_seq_length` is hashed on its own). They are put
    back as they were; parsing the JSON instead costs seconds for a 250k-piece vocabulary."""
    truncation, padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    try:
        return backend.to_str()
    finally:
        if truncation is not None:
            backend.enable_truncation(**truncation)
        if padding is not None:
            backend.enable_padding(**padding)


def _update_tensor(digest, name: str, value) -> None:
    """Name, shape, dtype and bytes of a tensor; quantized tensors by their integers, scales and zero points;
    tuples and lists (packed quantized weights) element by element."""
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _update_tensor(digest, f"{name}.{i}", item)
        return
    if not isinstance(value, torch.Tensor):
        digest.update(f"{name}={value!r}\n".encode())
        return
    digest.update(f"{name} {tuple(value.shape)} {value.dtype}\n".encode())
    tensor = value.detach().cpu()
    if tensor.is_quantized:
        if tensor.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            digest.update(f"{tensor.q_scale()} {tensor.q_zero_point()}".encode())
        else:
            _update_tensor(digest, f"{name}.scales", tensor.q_per_channel_scales())
            _update_tensor(digest, f"{name}.zero_points", tensor.q_per_channel_zero_points())
        tensor = tensor.int_repr()
    tensor = tensor.contiguous()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: the same 2 bytes per value as int16
        tensor = tensor.view(torch.int16)
    digest.update(np.ascontiguousarray(tensor.numpy()).reshape(-1).view(np.uint8))
