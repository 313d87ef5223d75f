"""Encoding texts with a sentence-transformers model: each distinct text once, batches of similar length.

Sorting by token count (not character count, as `SentenceTransformer.encode` does) keeps padding low for
scripts whose characters carry very different amounts of text (Thai, Chinese, Hindi in one pool).
"""

from __future__ import annotations

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
