"""Matryoshka truncation of sentence embeddings (`--dim N`): the first N values, re-normalized."""

from __future__ import annotations

import torch

from hybridbatch.data.errors import InputError


class MatryoshkaTruncation(torch.nn.Module):
    """Keep the first `dim` values of the sentence embedding and L2-normalize them.

    The width is also a frozen parameter, so it enters `retrieval.embeddings.model_signature` and an
    embedding store written at another width is never reused."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)
        self.width = torch.nn.Parameter(torch.tensor([float(dim)]), requires_grad=False)

    def forward(self, features: dict) -> dict:
        emb = features["sentence_embedding"][..., : self.dim]
        features["sentence_embedding"] = torch.nn.functional.normalize(emb, dim=-1)
        return features

    def get_embedding_dimension(self) -> int:
        return self.dim


def truncate_embeddings(model, dim: int | None):
    """Append a `MatryoshkaTruncation(dim)` to a SentenceTransformer (in place; returns it). For any model;
    EmbeddingGemma is trained for 512/256/128 (its card), others may lose more accuracy."""
    if dim is None:
        return model
    full = model.get_embedding_dimension()
    if full is None or not 0 < dim <= full:
        raise InputError(f"--dim {dim}: must be between 1 and the model's output dimension ({full})")
    if dim < full:
        model.append(MatryoshkaTruncation(dim))
    return model
