"""One batch -> one loss: texts from the plan, encoding, cross-process gathering, InfoNCE.

Every process holds the same global `PlannedBatch` and encodes its contiguous `shard`. Query, positive
and hard-negative embeddings are all-gathered so that each query is scored against every candidate of
the global batch; the local slice of the gathered tensor is the local tensor itself, so gradients flow
into what this process encoded. Every process then computes the same global loss. Because DDP averages
gradients over processes, the trainer back-propagates `world_size * loss`: the summed per-process
gradients then equal the gradient a single process would get on the whole batch.

Language tags select texts here and are never passed to the tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from hybridbatch.batching.plan import PlannedBatch, shard
from hybridbatch.data.parallel import ParallelGroup
from hybridbatch.losses import info_nce


@dataclass(frozen=True)
class BatchTexts:
    """Model inputs of a (sharded) batch: prefixed queries, positives, then hard negatives in example order."""

    queries: list[str]
    positives: list[str]
    negatives: list[str]


@dataclass(frozen=True)
class LossSettings:
    query_prefix: str = ""
    passage_prefix: str = ""
    temperature: float = 0.05
    symmetric: bool = False
    mask_false_negatives: bool = False
    chunk_size: int = 16  # texts per length-sorted forward chunk; 0 = all texts in one chunk


def batch_texts(batch: PlannedBatch, groups: Sequence[ParallelGroup], query_prefix: str = "",
                passage_prefix: str = "") -> BatchTexts:
    queries, positives, negatives = [], [], []
    for gi, q_lang, d_lang, neg in zip(batch.groups, batch.query_langs, batch.doc_langs, batch.negatives,
                                       strict=True):
        group = groups[gi]
        queries.append(query_prefix + group.queries[q_lang])
        positives.append(passage_prefix + group.positives[d_lang])
        pool = group.negatives.get(d_lang, ())
        negatives.extend(passage_prefix + pool[k] for k in neg)
    return BatchTexts(queries, positives, negatives)


def false_negative_mask(batch: PlannedBatch, groups: Sequence[ParallelGroup]) -> Tensor:
    """(B, B + N) bool: candidate j is query i's own answer (same text in j's language) but not its positive.

    In XQuAD-R several questions share an answer sentence, and a group's hard negatives are the other
    sentences of its paragraph, which may answer another question of the batch. Such a candidate is not
    a negative for that query, so it is removed from its softmax (`mask_same_group`).
    """
    candidates = [(lang, groups[gi].positives[lang]) for gi, lang in zip(batch.groups, batch.doc_langs, strict=True)]
    for gi, lang, neg in zip(batch.groups, batch.doc_langs, batch.negatives, strict=True):
        pool = groups[gi].negatives.get(lang, ())
        candidates.extend((lang, pool[k]) for k in neg)
    mask = torch.zeros(len(batch), len(candidates), dtype=torch.bool)
    for i, gi in enumerate(batch.groups):
        answers = groups[gi].positives
        for j, (lang, text) in enumerate(candidates):
            mask[i, j] = j != i and answers.get(lang) == text
    return mask


class ChunkEncoder(torch.nn.Module):
    """Encodes a list of feature chunks in ONE forward call, so DDP sees one forward per backward."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, chunks: list[dict[str, Tensor]]) -> list[Tensor]:
        return [self.model(features)["sentence_embedding"] for features in chunks]


def length_chunks(features: dict[str, Tensor], chunk_size: int) -> tuple[list[dict[str, Tensor]], Tensor]:
    """Split padded features into chunks of similar length, each cut to its own longest text.

    XQuAD-R passages pad to about twice their mean length in a batch; encoding length-sorted chunks
    halves the work. Returns the chunks and `order` (chunk rows are texts `order[0], order[1], ...`).
    """
    mask = features["attention_mask"]
    n, width = mask.shape
    lengths = mask.sum(dim=1)
    order = torch.argsort(-lengths, stable=True)
    size = chunk_size or n
    chunks = []
    for start in range(0, n, size):
        rows = order[start:start + size]
        longest = int(lengths[rows].max())
        chunk = {}
        for key, value in features.items():
            if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == n:
                value = value[rows]
                if value.dim() >= 2 and value.shape[1] == width:
                    value = value[:, :longest]
            chunk[key] = value
        chunks.append(chunk)
    return chunks, order


def encode(encoder: torch.nn.Module, model, texts: list[str], device: torch.device,
           chunk_size: int = 16) -> Tensor:
    """(len(texts), dim) embeddings, in the order of `texts`, through one call of `encoder`."""
    chunks, order = length_chunks(tokenize(model, texts, device), chunk_size)
    embeddings = torch.cat(encoder(chunks))  # rows in `order`
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    return embeddings[inverse]


def tokenize(model, texts: list[str], device: torch.device) -> dict[str, Tensor]:
    """The SentenceTransformer's own preprocessing (its tokenizer, its max_seq_length)."""
    features = model.preprocess(texts)
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in features.items()}


def gather_rows(local: Tensor, sizes: Sequence[int], rank: int) -> Tensor:
    """Concatenate every process's rows (process r has `sizes[r]`), keeping `local` itself in slot `rank`.

    The other processes' rows carry no gradient; ours do. Sizes come from the shared plan, so no extra
    collective is needed to learn them; rows are padded to the largest size for `all_gather`.
    """
    world = len(sizes)
    if world == 1:
        return local
    most = max(sizes)
    if most == 0:
        return local
    padded = local.new_zeros((most, *local.shape[1:]))
    padded[: local.shape[0]] = local.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    pieces = [part[:n] for part, n in zip(parts, sizes, strict=True)]
    pieces[rank] = local
    return torch.cat(pieces)


def global_batch_loss(encoder: torch.nn.Module, model, batch: PlannedBatch, groups: Sequence[ParallelGroup],
                      settings: LossSettings, rank: int = 0, world_size: int = 1,
                      device: torch.device | None = None) -> Tensor:
    """InfoNCE of the global `batch`, computed from this process's shard plus gathered embeddings.

    `encoder` is the (possibly DDP-wrapped) `ChunkEncoder` around `model`, the SentenceTransformer used
    for tokenizing. Candidates are ordered [B positives, then the hard negatives in example order],
    which is also what one process computing the whole batch would build.
    """
    device = device or torch.device("cpu")
    parts = [shard(batch, r, world_size) for r in range(world_size)]
    mine = parts[rank]
    texts = batch_texts(mine, groups, settings.query_prefix, settings.passage_prefix)
    b = len(texts.queries)
    embeddings = encode(encoder, model, texts.queries + texts.positives + texts.negatives, device,
                        settings.chunk_size)
    q_emb, d_emb = embeddings[:b], embeddings[b:]
    per_rank = [len(p) for p in parts]
    negs_per_rank = [sum(len(n) for n in p.negatives) for p in parts]
    queries = gather_rows(q_emb, per_rank, rank)  # (B, d)
    positives = gather_rows(d_emb[:b], per_rank, rank)  # (B, d)
    negatives = gather_rows(d_emb[b:], negs_per_rank, rank)  # (N_neg, d)
    docs = torch.cat([positives, negatives])  # (B + N_neg, d)
    target = torch.arange(len(batch), device=docs.device)  # (B,)
    mask = false_negative_mask(batch, groups).to(docs.device) if settings.mask_false_negatives else None
    return info_nce(queries, docs, target, settings.temperature, mask, settings.symmetric)
