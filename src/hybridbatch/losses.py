"""In-batch contrastive loss (InfoNCE) for dual encoders, testable on plain tensors.

The candidates of a batch are the B positives followed by any hard negatives (N >= B); each query is
scored against all N. The functions take whatever tensors they are given, so a trainer can pass
embeddings all-gathered across processes (the global batch) and every process computes the same loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce(query_emb: Tensor, doc_emb: Tensor, positive_index: Tensor, temperature: float = 0.05,
             mask: Tensor | None = None, symmetric: bool = False) -> Tensor:
    """Mean cross-entropy of cosine similarities / temperature against each query's positive.

    `mask[i, j] = True` removes candidate j from query i's softmax (a false negative, e.g. a translation of
    its positive); masking the positive itself is an error. With `symmetric`, the passage -> query
    direction is added over the B positives (passage `positive_index[i]` must pick query i among the B
    queries, with the same mask transposed) and the two directions are averaged.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, n = query_emb.shape[0], doc_emb.shape[0]
    if query_emb.dim() != 2 or doc_emb.dim() != 2 or query_emb.shape[1] != doc_emb.shape[1]:
        raise ValueError(f"expected (B, d) queries and (N, d) documents, got {tuple(query_emb.shape)} "
                         f"and {tuple(doc_emb.shape)}")
    if positive_index.shape != (b,):
        raise ValueError(f"positive_index must have shape ({b},), got {tuple(positive_index.shape)}")
    queries = F.normalize(query_emb, dim=-1)  # (B, d)
    docs = F.normalize(doc_emb, dim=-1)  # (N, d)
    logits = queries @ docs.T / temperature  # (B, N)
    if mask is not None:
        if mask.shape != (b, n) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor of shape ({b}, {n}), got {mask.dtype} "
                             f"{tuple(mask.shape)}")
        if mask.gather(1, positive_index[:, None]).any():
            raise ValueError("mask removes a query's own positive")
        logits = logits.masked_fill(mask, float("-inf"))
    loss = F.cross_entropy(logits, positive_index)
    if not symmetric:
        return loss
    doc_logits = logits[:, positive_index].T  # (B, B): row i = positive of query i against all queries
    targets = torch.arange(b, device=positive_index.device)  # (B,)
    return (loss + F.cross_entropy(doc_logits, targets)) / 2


def same_group_mask(query_groups: Tensor, doc_groups: Tensor, positive_index: Tensor,
                    doc_is_hard_negative_of: Tensor | None = None) -> Tensor:
    """(B, N) bool: True where candidate j belongs to query i's group but is neither its positive nor a
    hard negative drawn for that group (i.e. a false negative: another language's copy of the answer).

    `query_groups` (B,) and `doc_groups` (N,) are integer group labels; -1 in `doc_groups` marks a
    candidate of no group (never masked). `doc_is_hard_negative_of` (N,) gives, for a hard negative, the
    group it was drawn for and -1 for positives; a hard negative of the query's own group stays a negative.
    Labels may be answer keys instead of group ids (e.g. one label per answer sentence) to also catch
    different questions that share an answer passage.
    """
    n = doc_groups.shape[0]
    same = query_groups[:, None] == doc_groups[None, :]  # (B, N)
    same &= doc_groups[None, :] >= 0
    columns = torch.arange(n, device=doc_groups.device)  # (N,)
    same &= columns[None, :] != positive_index[:, None]
    if doc_is_hard_negative_of is not None:
        if doc_is_hard_negative_of.shape != (n,):
            raise ValueError(f"doc_is_hard_negative_of must have shape ({n},), "
                             f"got {tuple(doc_is_hard_negative_of.shape)}")
        same &= doc_is_hard_negative_of[None, :] != query_groups[:, None]
    return same


class InfoNCELoss(torch.nn.Module):
    """`info_nce` as a module holding its temperature and direction (for the trainer's config)."""

    def __init__(self, temperature: float = 0.05, symmetric: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, query_emb: Tensor, doc_emb: Tensor, positive_index: Tensor,
                mask: Tensor | None = None) -> Tensor:
        return info_nce(query_emb, doc_emb, positive_index, self.temperature, mask, self.symmetric)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, symmetric={self.symmetric}"


def clip_loss(text_emb: Tensor, image_emb: Tensor, logit_scale: Tensor | float) -> Tensor:
    """CLIP's symmetric InfoNCE: text i's positive is image i and image i's is text i, over the batch.

    `logit_scale` is the multiplier of the cosine similarities (CLIP learns its log; pass `scale.exp()`), so
    this is `info_nce(..., temperature=1 / logit_scale, symmetric=True)` with the identity as positives.
    """
    b = text_emb.shape[0]
    if image_emb.shape[0] != b:
        raise ValueError(f"expected as many images as texts, got {image_emb.shape[0]} and {b}")
    positives = torch.arange(b, device=text_emb.device)
    return info_nce(text_emb, image_emb, positives, temperature=1.0 / logit_scale, symmetric=True)


def image_text_loss_terms(caption_emb: Tensor, image_emb: Tensor, logit_scale: Tensor | float,
                          second_caption_emb: Tensor | None = None, caption_caption_weight: float = 1.0,
                          image_second_caption_weight: float = 1.0) -> dict[str, Tensor]:
    """The loss of one image-text batch and its terms, over row-aligned `(B, d)` tensors.

    Example i is caption i (language X_i) of image i; `second_caption_emb` (cross batches) holds, per example,
    a caption of the same image in another language Y_i. Terms (each a CLIP symmetric InfoNCE, `clip_loss`):

    - `image_caption`: caption X <-> image.
    - `image_second_caption`: caption Y <-> image (cross batches only).
    - `caption_caption`: caption X <-> caption Y of the same image, the other captions of the batch as negatives
      (the cross-lingual pair; cross batches only).

    `total = (image_caption + w_iy * image_second_caption) / (1 + w_iy) + w_cc * caption_caption`: the
    image-text part keeps the scale of a batch without second captions, the caption pairs are added on top.
    Without `second_caption_emb`, `total = image_caption` and the other two terms are absent.
    """
    if caption_caption_weight < 0 or image_second_caption_weight < 0:
        raise ValueError(f"weights must be >= 0, got {caption_caption_weight} and {image_second_caption_weight}")
    terms = {"image_caption": clip_loss(caption_emb, image_emb, logit_scale)}
    if second_caption_emb is None:
        terms["total"] = terms["image_caption"]
        return terms
    if second_caption_emb.shape != caption_emb.shape:
        raise ValueError(f"second captions {tuple(second_caption_emb.shape)} do not match the captions "
                         f"{tuple(caption_emb.shape)}")
    terms["image_second_caption"] = clip_loss(second_caption_emb, image_emb, logit_scale)
    terms["caption_caption"] = clip_loss(caption_emb, second_caption_emb, logit_scale)
    w_iy, w_cc = float(image_second_caption_weight), float(caption_caption_weight)
    image_text = (terms["image_caption"] + w_iy * terms["image_second_caption"]) / (1.0 + w_iy)
    terms["total"] = image_text + w_cc * terms["caption_caption"]
    return terms
