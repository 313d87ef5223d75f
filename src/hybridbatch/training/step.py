"""One batch -> one loss: texts from the plan, encoding, cross-process gathering, InfoNCE.

Every process holds the same global `PlannedBatch` and encodes its contiguous `shard`. Query, positive
and hard-negative embeddings are all-gathered so that each query is scored against every candidate of
the global batch; the local slice of the gathered tensor is the local tensor itself, so gradients flow
into what this process encoded. Every process then computes the same global loss. Because DDP averages
gradients over processes, the trainer back-propagates `world_size * loss`: the summed per-process
gradients then equal the gradient a single process would get on the whole batch.

With `grad_cache_chunk` > 0 the step is gradient-cached (GradCache, Gao et al. 2021; sentence-transformers'
CachedMultipleNegativesRankingLoss): a no-grad forward over mini-batches gives every embedding, the loss
and its gradient w.r.t. the (gathered) embeddings are computed once, and `backward()` on the returned
loss re-encodes one mini-batch at a time with grad and back-propagates the cached embedding gradients.
Each mini-batch's random state is saved before its first forward and replayed for the re-forward, so
dropout masks are the same in both passes. Peak activation memory is that of one mini-batch instead of
the whole batch; the price is a second forward. Under DDP, only the last mini-batch goes through the
wrapper (the others call the wrapped module directly, like `no_sync`), so every process makes exactly
one synchronizing forward/backward per step and the all-reduce sees the accumulated gradient.

Language tags select texts here and are never passed to the tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

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
    grad_cache_chunk: int = 0  # > 0: gradient-cached step with mini-batches of this many texts


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
    which is also what one process computing the whole batch would build. With
    `settings.grad_cache_chunk` > 0 and grad enabled, the step is gradient-cached (see the module doc):
    the returned loss carries no graph of the model, and its `backward()` does the re-forward.
    """
    device = device or torch.device("cpu")
    parts = [shard(batch, r, world_size) for r in range(world_size)]
    texts = batch_texts(parts[rank], groups, settings.query_prefix, settings.passage_prefix)
    all_texts = texts.queries + texts.positives + texts.negatives
    if settings.grad_cache_chunk and torch.is_grad_enabled():
        return _cached_loss(encoder, model, all_texts, batch, parts, groups, settings, rank, device)
    embeddings = encode(encoder, model, all_texts, device, settings.chunk_size)
    return _loss_of_local(embeddings, batch, parts, groups, settings, rank)


def _loss_of_local(embeddings: Tensor, batch: PlannedBatch, parts: Sequence[PlannedBatch],
                   groups: Sequence[ParallelGroup], settings: LossSettings, rank: int) -> Tensor:
    """The global loss from this process's embeddings (queries, positives, negatives) and the others'."""
    b = len(parts[rank])
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


# --------------------------------------------------------------------------------------------- GradCache
class RandomState:
    """The CPU and device random states at a point, replayable (sentence-transformers' `RandContext`).

    The autocast state of the tensors' device is kept too: the re-forward runs inside `backward()`, outside
    any `torch.autocast` block the first forward ran in, and must compute in the same precision.
    """

    def __init__(self, *tensors: Tensor):
        from torch.utils.checkpoint import get_device_states

        self.cpu = torch.get_rng_state()
        self.devices, self.device_states = get_device_states(*tensors)
        self.device_type = tensors[0].device.type if tensors else "cpu"
        self.autocast = torch.is_autocast_enabled(self.device_type)
        self.autocast_dtype = torch.get_autocast_dtype(self.device_type)

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Run a block with the saved states; the caller's streams are restored afterwards."""
        from torch.utils.checkpoint import set_device_states

        with torch.random.fork_rng(devices=self.devices), torch.autocast(
                self.device_type, dtype=self.autocast_dtype, enabled=self.autocast):
            torch.set_rng_state(self.cpu)
            set_device_states(self.devices, self.device_states)
            yield


def _unwrapped(encoder: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (a forward through it does not prepare a gradient all-reduce)."""
    return encoder.module if isinstance(encoder, torch.nn.parallel.DistributedDataParallel) else encoder


def _cached_loss(encoder: torch.nn.Module, model, texts: list[str], batch: PlannedBatch,
                 parts: Sequence[PlannedBatch], groups: Sequence[ParallelGroup], settings: LossSettings,
                 rank: int, device: torch.device) -> Tensor:
    chunks, order = length_chunks(tokenize(model, texts, device), settings.grad_cache_chunk)
    plain = _unwrapped(encoder)
    states, outputs = [], []
    with torch.no_grad():
        for k, chunk in enumerate(chunks):  # the same chunks, in the same order, as the plain step: same draws
            states.append(RandomState(*(v for v in chunk.values() if isinstance(v, Tensor))))
            last = k == len(chunks) - 1  # through the same callable as its re-forward (a wrapper may autocast)
            outputs.append((encoder if last else plain)([chunk])[0])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    embeddings = torch.cat(outputs)[inverse].detach().requires_grad_()  # rows in `texts` order
    with torch.enable_grad():
        loss = _loss_of_local(embeddings, batch, parts, groups, settings, rank)
        (embedding_grad,) = torch.autograd.grad(loss, embeddings)
    cached = embedding_grad[order]  # rows in chunk order
    out = loss.detach().requires_grad_()
    out.register_hook(partial(_replay_backward, encoder, chunks, states, cached))
    return out


def _replay_backward(encoder: torch.nn.Module, chunks: list[dict[str, Tensor]], states: list[RandomState],
                     cached: Tensor, grad_output: Tensor) -> None:
    """Hook on the cached loss: re-encode each mini-batch with grad and push `cached * grad_output` in."""
    plain = _unwrapped(encoder)
    start = 0
    for k, (chunk, state) in enumerate(zip(chunks, states, strict=True)):
        last = k == len(chunks) - 1
        with state.replay(), torch.enable_grad():  # a backward hook runs with grad mode off
            (emb,) = (encoder if last else plain)([chunk])
            rows = cached[start:start + emb.shape[0]]
            surrogate = torch.dot(emb.flatten(), (rows * grad_output).flatten())
        start += emb.shape[0]
        surrogate.backward()
