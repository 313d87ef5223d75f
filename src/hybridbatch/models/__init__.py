"""Text encoders by short name: offline builds of real models, hub fallbacks, and tiny test models.

Importing this package is cheap: torch, transformers and sentence-transformers load only when a
function needs them.
"""

from hybridbatch.models.offline import (
    OfflinePackageMissing,
    VocabularyMismatch,
    build_me5_small,
    is_complete,
    minilm_en_path,
)
from hybridbatch.models.registry import (
    MODELS,
    ModelSpec,
    ResolvedModel,
    UnknownModelError,
    build_named_models,
    load_sentence_transformer,
    resolve_model,
)
from hybridbatch.models.tiny import build_tiny_sentence_transformer

__all__ = [
    "MODELS",
    "ModelSpec",
    "OfflinePackageMissing",
    "ResolvedModel",
    "UnknownModelError",
    "VocabularyMismatch",
    "build_me5_small",
    "build_named_models",
    "build_tiny_sentence_transformer",
    "is_complete",
    "load_sentence_transformer",
    "minilm_en_path",
    "resolve_model",
]
