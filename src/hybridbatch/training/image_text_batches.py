"""What an image-text batch holds and what its loss pairs: the X-Y definition of the image-text samplers.

Each image is a `ParallelGroup` whose query and positive in language L are its (first) caption in L. A
planned batch (`batching.plan.PlannedBatch`) gives example i an image (`groups[i]`), a caption language X_i
(`query_langs[i]`) and a second language Y_i (`doc_langs[i]`). What is trained on depends on the batch type:

| batch type | example i | loss (`losses.image_text_loss_terms`) |
|---|---|---|
| `mono` | image i + its caption in X (one X for the whole batch) | caption X <-> image |
| `mixed-same` | image i + its caption in X_i (languages mix in the batch) | caption X <-> image |
| `en-en` | image i + its English caption | caption en <-> image |
| `cross` | image i + its caption in X_i + its caption in Y_i != X_i | caption X <-> image, caption Y <-> image, and caption X <-> caption Y (the cross-lingual positive) |

So `cross` (and the cross batches of `hybrid`, which are mono with probability alpha) holds cross-lingual
pairs, `mixed-same` holds mixed-language batches without any. The default weights (`ImageTextConfig`:
`text_text_weight: 1.0`, `image_second_caption_weight: 1.0`) make the caption pairs part of every cross batch's
loss. Before this definition "cross" batches trained caption X <-> image only (`text_text_weight` was 0): they
were mixed-language batches, equivalent to `mixed-same`.

Every caption goes through the text tower with its "query" prompt (me5: "query: "): captions are short queries
for text -> image, and me5 uses "query: " on both sides of symmetric tasks (caption <-> caption). One prefix
for every caption also keeps evaluation (`ImageTextDualEncoder.encode_texts`) identical to training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from hybridbatch.batching.plan import PlannedBatch
from hybridbatch.data.parallel import ParallelGroup
from hybridbatch.losses import image_text_loss_terms

CROSS_PAIR_TYPES = ("cross",)  # batch types whose examples carry a second caption in another language


def has_cross_pairs(batch: PlannedBatch) -> bool:
    """Whether the batch's loss pairs captions across languages (a `cross` batch)."""
    return batch.type in CROSS_PAIR_TYPES


def batch_captions(batch: PlannedBatch, groups: Sequence[ParallelGroup]) -> tuple[list[str], list[str] | None]:
    """(caption in X per example, caption in Y per example or None when the batch has no cross pairs)."""
    first = [groups[g].queries[lang] for g, lang in zip(batch.groups, batch.query_langs, strict=True)]
    if not has_cross_pairs(batch):
        return first, None
    second = [groups[g].positives[lang] for g, lang in zip(batch.groups, batch.doc_langs, strict=True)]
    return first, second


def image_text_batch_log(batch: PlannedBatch, groups: Sequence[ParallelGroup]) -> dict[str, Any]:
    """The `batches.jsonl` line of an image-text batch: the languages of both captions of every example
    (`second_caption_langs` is null for a batch without cross pairs), how many cross-lingual pairs it has, the
    image ids."""
    cross = has_cross_pairs(batch)
    return {
        "step": batch.global_step,
        "type": batch.type,
        "caption_langs": list(batch.query_langs),
        "second_caption_langs": list(batch.doc_langs) if cross else None,
        "cross_pairs": sum(q != d for q, d in zip(batch.query_langs, batch.doc_langs, strict=True)) if cross else 0,
        "images": [str(groups[i].id) for i in batch.groups],
        "epoch": batch.epoch,
        "epoch_step": batch.step,
    }


def batch_loss_terms(model, batch: PlannedBatch, groups: Sequence[ParallelGroup], raw_features: torch.Tensor,
                     caption_caption_weight: float, image_second_caption_weight: float) -> dict[str, torch.Tensor]:
    """The loss terms of one batch (`losses.image_text_loss_terms`) with the model's features.

    `raw_features` are the image tower's cached outputs, one row per group (locked image tower).
    """
    first, second = batch_captions(batch, groups)
    caption_emb = model.text_features(first)  # (B, d), normalized
    image_emb = F.normalize(model.project_image_features(raw_features[list(batch.groups)]), dim=-1)  # (B, d)
    second_emb = model.text_features(second) if second is not None else None  # (B, d)
    scale = model.logit_scale.exp().clamp(max=100.0)
    terms = image_text_loss_terms(caption_emb, image_emb, scale, second_emb, caption_caption_weight,
                                  image_second_caption_weight)
    terms["logit_scale"] = scale.detach()
    return terms
